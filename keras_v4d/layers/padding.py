"""Symmetric zero padding of ``(N, T, H, W, C)`` written as concatenation with zeros.

The stride-2 convolutions need PyTorch's symmetric padding (Keras' 'same' pads (0, 1) on even
sizes), so they read an explicitly padded tensor. Expressed as a ``Pad`` op, TensorFlow's grappler
remapper fuses it into the following ``Conv3D`` and then fails on the training graph, whose
gradient still reads the pad's output ("remapper failed: INVALID_ARGUMENT: Mutation::Apply error:
fanout … exist for missing node …_pad/Pad"), printing an error line on every run and giving up
the remapper's other fusions. Concatenating zero blocks gives the same values with no ``Pad`` op.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_v4d")
class SymmetricZeroPadding3D(keras.layers.Layer):
    """``(N, T, H, W, C)`` → ``(N, T + 2p_t, H + 2p_h, W + 2p_w, C)``, zeros on both sides."""

    def __init__(self, padding=(1, 1, 1), **kwargs):
        super().__init__(**kwargs)
        self.padding = tuple(int(p) for p in padding)
        if len(self.padding) != 3 or min(self.padding) < 0:
            raise ValueError(f"SymmetricZeroPadding3D: `padding` must be 3 ints >= 0, got {padding!r}.")

    def call(self, inputs):
        x = inputs
        for axis, pad in zip((1, 2, 3), self.padding):
            if pad:
                shape = list(ops.shape(x))
                shape[axis] = pad
                zeros = ops.zeros(shape, dtype=x.dtype)
                x = ops.concatenate([zeros, x, zeros], axis=axis)
        return x

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for axis, pad in zip((1, 2, 3), self.padding):
            if shape[axis] is not None:
                shape[axis] += 2 * pad
        return tuple(shape)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}
