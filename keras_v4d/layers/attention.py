"""The F4D attention modules (F4D §3.5), each with the inner residual ``F' = M ⊗ F + F``."""

import math

import keras
from keras import ops

from keras_v4d.layers._checks import check_rank


def _dilated_pair(make_conv, dilations, name):
    return [make_conv(d, f"{name}_d{d}") for d in dilations]


@keras.saving.register_keras_serializable(package="keras_v4d")
class TemporalAttention(keras.layers.Layer):
    """Temporal attention in the 4D view (F4D eq. 4–6).

    Input and output ``(B, U, T, H, W, C)``. Average and max over (H, W, C) give two
    descriptors per frame, which are summed; two dilated 1-D convolutions (kernel 3, dilation 2
    and 3, 'same'), summed, and a sigmoid give the map ``(B, U, T, 1, 1, 1)``.

    Our reading of "temporal": the 1-D convolutions run over the ``U·T`` frame sequence in
    unit-major order, so the map relates frames within and across action units (the paper's
    map is ``1×U×T×1×1`` and its stated aim is "the long-term temporal evolution of all units").
    """

    def __init__(self, kernel_size=3, dilations=(2, 3), **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = kernel_size
        self.dilations = tuple(dilations)
        self.convs = _dilated_pair(
            lambda d, n: keras.layers.Conv1D(1, kernel_size, dilation_rate=d, padding="same", name=n),
            self.dilations, "temporal_conv")

    def build(self, input_shape):
        check_rank(input_shape, 6, "TemporalAttention", "(batch, U, T, H, W, channels)")
        for conv in self.convs:
            conv.build((None, None, 1))

    def call(self, inputs):
        shape = ops.shape(inputs)
        frames = ops.reshape(inputs, (-1, shape[1] * shape[2], shape[3] * shape[4] * shape[5]))
        descriptor = ops.mean(frames, axis=-1, keepdims=True) + ops.max(frames, axis=-1, keepdims=True)
        attention = ops.sigmoid(sum(conv(descriptor) for conv in self.convs))  # (B, U·T, 1)
        return ops.reshape(frames * attention + frames, shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def count_macs(self, input_shape):
        """Multiply-accumulates of one call on ``input_shape`` ``(B, U, T, H, W, C)``: its 1-D convs over
        the ``U·T`` frames."""
        return len(self.convs) * math.prod(input_shape[:3]) * self.kernel_size

    def unit_radius(self, frames_per_unit):
        """Units on each side that one unit's map depends on: the 1-D convs reach
        ``max(dilation)·(kernel // 2)`` frames of the unit-major ``U·T`` sequence."""
        return math.ceil(max(self.dilations) * (self.kernel_size // 2) / frames_per_unit)

    def get_config(self):
        config = super().get_config()
        config.update(kernel_size=self.kernel_size, dilations=self.dilations)
        return config


@keras.saving.register_keras_serializable(package="keras_v4d")
class ChannelAttention(keras.layers.Layer):
    """CBAM channel attention in the 3D view (F4D eq. 7–9, read as the CBAM form they intend).

    Input and output ``(N, T, H, W, C)``. A shared MLP ``C → C/reduction → C`` (ReLU between)
    maps the average- and max-pooled (over T, H, W) descriptors; their sum through a sigmoid is
    the map ``(N, 1, 1, 1, C)``.
    """

    def __init__(self, reduction=16, **kwargs):
        super().__init__(**kwargs)
        self.reduction = reduction

    def build(self, input_shape):
        input_shape = check_rank(input_shape, 5, "ChannelAttention", "(batch, T, H, W, channels)")
        channels = input_shape[-1]
        self.hidden_units = max(channels // self.reduction, 1)
        self.squeeze = keras.layers.Dense(self.hidden_units, activation="relu", name="mlp_squeeze")
        self.excite = keras.layers.Dense(channels, name="mlp_excite")
        self.squeeze.build((None, channels))
        self.excite.build((None, self.hidden_units))

    def call(self, inputs):
        average = ops.mean(inputs, axis=(1, 2, 3))
        maximum = ops.max(inputs, axis=(1, 2, 3))
        logits = self.excite(self.squeeze(average)) + self.excite(self.squeeze(maximum))
        attention = ops.sigmoid(logits)[:, None, None, None, :]
        return inputs * attention + inputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def count_macs(self, input_shape):
        """Multiply-accumulates of one call on ``input_shape`` ``(N, T, H, W, C)``: the shared MLP on the
        average- and the max-pooled channels."""
        channels = input_shape[-1]
        return 2 * input_shape[0] * 2 * channels * self.hidden_units

    def get_config(self):
        config = super().get_config()
        config.update(reduction=self.reduction)
        return config


@keras.saving.register_keras_serializable(package="keras_v4d")
class SpatioTemporalAttention(keras.layers.Layer):
    """Spatio-temporal attention in the 3D view (F4D eq. 10–12).

    Input and output ``(N, T, H, W, C)``. Channel-wise average and max, concatenated (2
    channels) → two-path dilated 3×3 spatial conv (dilation 2 and 3, summed) → ReLU → two-path
    dilated temporal conv (kernel 3, dilation 2 and 3, summed) → sigmoid → map ``(N, T, H, W, 1)``.
    The paper leaves the convs' widths open; like CBAM's spatial attention they have 1 filter.
    """

    def __init__(self, kernel_size=3, dilations=(2, 3), **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = kernel_size
        self.dilations = tuple(dilations)
        k = kernel_size
        self.spatial_convs = _dilated_pair(
            lambda d, n: keras.layers.Conv3D(1, (1, k, k), dilation_rate=(1, d, d), padding="same", name=n),
            self.dilations, "spatial_conv")
        self.temporal_convs = _dilated_pair(
            lambda d, n: keras.layers.Conv3D(1, (k, 1, 1), dilation_rate=(d, 1, 1), padding="same", name=n),
            self.dilations, "temporal_conv")

    def build(self, input_shape):
        check_rank(input_shape, 5, "SpatioTemporalAttention", "(batch, T, H, W, channels)")
        for conv in self.spatial_convs:
            conv.build((None, None, None, None, 2))
        for conv in self.temporal_convs:
            conv.build((None, None, None, None, 1))

    def call(self, inputs):
        descriptor = ops.concatenate(
            [ops.mean(inputs, axis=-1, keepdims=True), ops.max(inputs, axis=-1, keepdims=True)], axis=-1)
        spatial = ops.relu(sum(conv(descriptor) for conv in self.spatial_convs))
        attention = ops.sigmoid(sum(conv(spatial) for conv in self.temporal_convs))
        return inputs * attention + inputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def count_macs(self, input_shape):
        """Multiply-accumulates of one call on ``input_shape`` ``(N, T, H, W, C)``: its one-filter convs
        at every position."""
        positions = math.prod(input_shape[:-1])
        k = self.kernel_size
        return len(self.dilations) * positions * (k * k * 2 + k)

    def get_config(self):
        config = super().get_config()
        config.update(kernel_size=self.kernel_size, dilations=self.dilations)
        return config
