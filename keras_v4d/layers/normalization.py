"""Batch normalisation with the settings that match PyTorch checkpoints (SPEC §3)."""

import keras

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # Keras momentum 0.9 == PyTorch momentum 0.1


def batch_norm(name=None, zero_gamma=False, **kwargs):
    """A ``BatchNormalization`` over the last axis with PyTorch's eps and momentum."""
    return keras.layers.BatchNormalization(
        axis=-1,
        epsilon=BN_EPSILON,
        momentum=BN_MOMENTUM,
        gamma_initializer="zeros" if zero_gamma else "ones",
        name=name,
        **kwargs,
    )
