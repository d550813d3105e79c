"""The V4D residual 4D block (V4D eq. 3)."""

import keras
from keras import ops

from keras_v4d.layers._checks import check_rank, normalize_tuple
from keras_v4d.layers.block4d import Block4D
from keras_v4d.layers.conv4d import Conv4D
from keras_v4d.layers.normalization import batch_norm

NORMS = ("none", "batchnorm")


@keras.saving.register_keras_serializable(package="keras_v4d")
class Residual4D(Block4D):
    """``Y = X + F4D(X)``: a 4D convolution in a residual branch (V4D eq. 3).

    Input and output ``(B, U, T, H, W, C)``; the 4D kernel is ``(k_u, k_t, k_h, k_w, C, C)``
    without bias.

    ``norm="none"`` is the released code's block: the convolution alone, kernel zero-initialised,
    so the block starts as the identity and V4D starts as TSN + I3D-S (V4D §3.5).
    ``norm="batchnorm"`` is the paper text's form ``Y = X + ReLU(BN(F4D(X)))``; there the kernel
    gets a normal init and the BN scale starts at zero, which again makes the block the identity.
    """

    def __init__(self, kernel_size=(3, 3, 1, 1), norm="none", kernel_initializer=None,
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if norm not in NORMS:
            raise ValueError(f"Residual4D: `norm` must be one of {NORMS}, got {norm!r}.")
        self.kernel_size = normalize_tuple(kernel_size, 4, "kernel_size", "Residual4D", odd=True)
        self.norm = norm
        if kernel_initializer is None:
            kernel_initializer = "zeros" if norm == "none" else "he_normal"
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.norm_layer = batch_norm(name="bn", zero_gamma=True) if norm == "batchnorm" else None

    def build(self, input_shape):
        input_shape = check_rank(input_shape, 6, "Residual4D", "(batch, U, T, H, W, channels)")
        self.conv = Conv4D(
            input_shape[-1],
            self.kernel_size,
            use_bias=False,
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
            name="conv4d",
        )
        self.conv.build(input_shape)
        if self.norm_layer is not None:
            self.norm_layer.build(input_shape)

    def call(self, inputs, training=None):
        return inputs + self._branch_activation(self.conv(inputs), training)

    def unit_output(self, inputs, index, training=None):
        """``self(inputs)[:, index:index + 1]`` at one unit's cost (Algorithm 1 needs only one
        unit of each window): ``(B, U, T, H, W, C)`` → ``(B, 1, T, H, W, C)``."""
        inputs = ops.convert_to_tensor(inputs)
        branch = self._branch_activation(self.conv.unit_output(inputs, index), training)
        return inputs[:, index:index + 1] + branch

    def _branch_activation(self, branch, training):
        """``ReLU(BN(·))`` of the paper form; the released form adds the convolution as it is."""
        if self.norm_layer is None:
            return branch
        return ops.relu(self.norm_layer(branch, training=training))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def count_macs(self, input_shape):
        """Multiply-accumulates of one call on ``input_shape`` ``(B, U, T, H, W, C)``: its ``Conv4D``."""
        return self.conv.count_macs(input_shape)

    def unit_radius(self, frames_per_unit):
        """How many neighbouring units on each side one output unit depends on (``k_u // 2``)."""
        del frames_per_unit
        return self.kernel_size[0] // 2

    def get_config(self):
        config = super().get_config()
        config.update(
            kernel_size=self.kernel_size,
            norm=self.norm,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
        )
        return config
