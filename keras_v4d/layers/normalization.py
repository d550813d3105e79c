"""Batch normalisation with the settings that match PyTorch checkpoints (PyTorch's ``BatchNorm3d``
defaults: ε 1e-5, momentum 0.1), fused on TensorFlow."""

import keras

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # Keras momentum 0.9 == PyTorch momentum 0.1


@keras.saving.register_keras_serializable(package="keras_v4d")
class BatchNorm(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` over the channels (last axis) of 4-D or 5-D input.

    On the TensorFlow backend a float32 call runs TensorFlow's fused batch-norm kernel
    (``FusedBatchNormV3`` and its fused gradient) on the ``(N, T·H, W, C)`` view of a 5-D tensor,
    instead of Keras' separate moments, normalisation and their gradients — the same values
    (moving statistics updated with the biased batch variance, as Keras does) in one pass over
    memory. Other backends, dtypes and settings use the Keras implementation unchanged.
    """

    def _fusable(self, inputs, mask):
        return (keras.backend.backend() == "tensorflow" and mask is None and not self.synchronized
                and len(inputs.shape) in (4, 5) and self.axis in (-1, len(inputs.shape) - 1)
                and self.center and self.scale and inputs.dtype == "float32"
                and self.compute_dtype == "float32" and self.variable_dtype == "float32")

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # this path runs on the TensorFlow backend only

        shape = tf.shape(inputs)
        channels = inputs.shape[-1]
        x = tf.reshape(inputs, tf.stack([shape[0], -1, shape[-2], channels])) if len(inputs.shape) == 5 else inputs
        training = bool(training) and self.trainable
        if training:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, self.gamma, self.beta, epsilon=self.epsilon, is_training=True, data_format="NHWC")
            count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), variance.dtype)
            variance = variance * (count - 1.0) / tf.maximum(count, 1.0)  # the kernel returns it Bessel-corrected
            for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
                moving.assign(moving * self.momentum + batch * (1.0 - self.momentum))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, self.gamma, self.beta, mean=self.moving_mean, variance=self.moving_variance,
                epsilon=self.epsilon, is_training=False, data_format="NHWC")
        return tf.reshape(y, shape) if len(inputs.shape) == 5 else y


def batch_norm(name=None, zero_gamma=False, **kwargs):
    """A ``BatchNorm`` over the last axis with PyTorch's eps and momentum."""
    return BatchNorm(
        axis=-1,
        epsilon=BN_EPSILON,
        momentum=BN_MOMENTUM,
        gamma_initializer="zeros" if zero_gamma else "ones",
        name=name,
        **kwargs,
    )
