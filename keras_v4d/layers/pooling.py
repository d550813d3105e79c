"""Frame-wise spatial max pooling: a ``1×k×k`` MaxPooling3D computed as a 2D pooling on the frames.

Same values as ``MaxPooling3D((1, k, k))``; it exists because TFLite has no MAX_POOL_3D builtin.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_v4d")
class SpatialMaxPooling(keras.layers.Layer):
    """``(N, T, H, W, C)`` → ``(N, T, H', W', C)``, 'valid' pooling of every frame."""

    def __init__(self, pool_size=3, strides=2, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = int(pool_size)
        self.strides = int(strides)

    def call(self, inputs):
        shape = ops.shape(inputs)
        frames = ops.reshape(inputs, (-1, shape[2], shape[3], shape[4]))
        pooled = ops.max_pool(frames, self.pool_size, self.strides, padding="valid")
        out = ops.shape(pooled)
        return ops.reshape(pooled, (-1, shape[1], out[1], out[2], out[3]))

    def compute_output_shape(self, input_shape):
        def size(n):
            return None if n is None else (n - self.pool_size) // self.strides + 1

        return (input_shape[0], input_shape[1], size(input_shape[2]), size(input_shape[3]), input_shape[4])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides}
