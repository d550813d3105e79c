"""Moving between the 3D view (units folded into the batch) and the 4D view of a video batch.

Layout (V4D §3.1, Figure 1): the model input is ``(B, U, T, H, W, C)``; 3D layers see the folded
``(B*U, T, H, W, C)`` tensor, video-major (the U units of one video are consecutive).
"""

import keras
from keras import ops


def fold_units(x):
    """``(B, U, *rest)`` → ``(B*U, *rest)``."""
    shape = ops.shape(x)
    return ops.reshape(x, (-1,) + tuple(shape[2:]))


def unfold_units(x, num_units):
    """``(B*U, *rest)`` → ``(B, U, *rest)``; ``num_units`` may be a Python int or a scalar tensor."""
    shape = ops.shape(x)
    return ops.reshape(x, (-1, num_units) + tuple(shape[1:]))


def _product(a, b):
    return None if a is None or b is None else a * b


@keras.saving.register_keras_serializable(package="keras_v4d")
class FoldUnits(keras.layers.Layer):
    """Folds the unit axis into the batch: ``(B, U, *rest)`` → ``(B*U, *rest)``."""

    def call(self, inputs):
        return fold_units(inputs)

    def compute_output_shape(self, input_shape):
        return (_product(input_shape[0], input_shape[1]),) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package="keras_v4d")
class UnfoldUnits(keras.layers.Layer):
    """Unfolds the unit axis: ``[(B*U, *rest), reference (B, U, ...)]`` → ``(B, U, *rest)``.

    The number of units is read from axis 1 of ``reference`` at run time (usually the model's
    video input), so a model built with ``U=None`` accepts any number of units.
    """

    def call(self, inputs):
        x, reference = inputs
        return unfold_units(x, ops.shape(reference)[1])

    def compute_output_shape(self, input_shape):
        x_shape, reference_shape = input_shape
        return (reference_shape[0], reference_shape[1]) + tuple(x_shape[1:])
