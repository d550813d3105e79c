"""The (3+1)D factorisation of a 4D convolution (F4D §3.3)."""

import keras
from keras import ops

from keras_v4d.layers._checks import check_rank, normalize_tuple
from keras_v4d.layers.conv4d import Conv4D
from keras_v4d.layers.normalization import batch_norm


def factorized_width(kernel_size, input_channels, filters):
    """F4D's intermediate width ``M = floor(u·t·h·w·N_in·N / (u·h·w·N_in + t·N))``.

    With this width the factorised pair has about as many parameters as the full 4D kernel.
    """
    u, t, h, w = kernel_size
    return (u * t * h * w * input_channels * filters) // (u * h * w * input_channels + t * filters)


@keras.saving.register_keras_serializable(package="keras_v4d")
class Factorized4D(keras.layers.Layer):
    """(3+1)D convolution: ``Conv4D(u,1,h,w; M) → BN → ReLU → Conv4D(1,t,1,1; N)``.

    Input ``(B, U, T, H, W, N_in)`` → output ``(B, U, T, H, W, filters)``. ``M`` follows
    :func:`factorized_width`, so the parameter count matches the 4D kernel it replaces.
    """

    def __init__(self, filters, kernel_size=(3, 3, 1, 1), use_bias=False,
                 kernel_initializer="he_normal", kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = normalize_tuple(kernel_size, 4, "kernel_size", "Factorized4D", odd=True)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.norm = batch_norm(name="bn")

    def build(self, input_shape):
        input_shape = check_rank(input_shape, 6, "Factorized4D", "(batch, U, T, H, W, channels)")
        u, t, h, w = self.kernel_size
        self.intermediate_filters = factorized_width(self.kernel_size, input_shape[-1], self.filters)
        common = dict(use_bias=self.use_bias, kernel_initializer=self.kernel_initializer,
                      kernel_regularizer=self.kernel_regularizer)
        self.spatial_conv = Conv4D(self.intermediate_filters, (u, 1, h, w), name="unit_spatial_conv", **common)
        self.temporal_conv = Conv4D(self.filters, (1, t, 1, 1), name="temporal_conv", **common)
        self.spatial_conv.build(input_shape)
        mid_shape = tuple(input_shape[:-1]) + (self.intermediate_filters,)
        self.norm.build(mid_shape)
        self.temporal_conv.build(mid_shape)

    def call(self, inputs, training=None):
        x = self.spatial_conv(inputs)
        x = ops.relu(self.norm(x, training=training))
        return self.temporal_conv(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def count_macs(self, input_shape):
        """Multiply-accumulates of one call on ``input_shape`` ``(B, U, T, H, W, C)``: its two ``Conv4D``s."""
        mid_shape = tuple(input_shape[:-1]) + (self.intermediate_filters,)
        return self.spatial_conv.count_macs(input_shape) + self.temporal_conv.count_macs(mid_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
        )
        return config
