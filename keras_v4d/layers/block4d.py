"""``Block4D``: what a 4D block of a video model answers, beyond being a Keras layer.

A 4D block maps ``(B, U, T, H, W, C)`` to the same shape and mixes neighbouring units (V4D §3.2,
F4D §3). Video-level inference (V4D Algorithm 1) runs each block for one unit of a window at a
time, so it needs to know how far a unit's output reaches (``unit_radius``) and how to compute
one unit's output alone (``unit_output``); the MAC counter asks ``count_macs``. ``VideoModel.parts()``,
the MAC counter and the converters find 4D blocks as instances of this class.
"""

import keras


class Block4D(keras.layers.Layer):
    """Base class of the 4D blocks (``Residual4D``, ``F4DBlock``): subclasses define the three methods."""

    def unit_output(self, inputs, index, training=None):
        """``self(inputs)[:, index:index + 1]`` at one unit's cost: ``(B, U, T, H, W, C)`` →
        ``(B, 1, T, H, W, C)``."""
        raise NotImplementedError(f"{type(self).__name__} must define unit_output")

    def unit_radius(self, frames_per_unit):
        """How many neighbouring units on each side one output unit depends on, for units of
        ``frames_per_unit`` frames."""
        raise NotImplementedError(f"{type(self).__name__} must define unit_radius")

    def count_macs(self, input_shape):
        """Multiply-accumulates of one call on a fully known ``input_shape`` ``(B, U, T, H, W, C)``."""
        raise NotImplementedError(f"{type(self).__name__} must define count_macs")
