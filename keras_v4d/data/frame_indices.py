"""Action-unit sampling across a whole video (V4D §3.1), as a pure tensor function.

The Model Garden's ``preprocess_ops_3d.sample_segment_sequence`` is TSN-style: one *frame* per
segment. V4D needs one *unit* of T frames at stride τ per section, so this sampler is ours.
"""

import tensorflow as tf

from keras_v4d.records.sampling import check_positive_int


def unit_span(frames_per_unit, stride):
    """Number of frames one action unit covers: ``(T - 1)·τ + 1``."""
    return (frames_per_unit - 1) * stride + 1


def segment_indices(num_frames, num_units, frames_per_unit, stride, training, seed=None):
    """Frame indices of ``num_units`` action units spread over a whole video.

    Each unit is ``frames_per_unit`` frames at ``stride``, spanning ``span = (T-1)·τ + 1`` frames.
    Training: the frames are split into U equal sections ``[⌊i·n/U⌋, ⌊(i+1)·n/U⌋)``; the unit
    starts at a uniformly random frame of its section such that it stays inside the section (if
    the section is shorter than the unit, it starts anywhere in its section). Evaluation: the
    centring of the V4D release's (TSN-derived) test loader: ``tick = (n - span + 1) / U`` in
    float64, unit u starts at ``int(tick/2 + tick·u)``; a video shorter than a unit (tick < 0)
    starts every unit at frame 0. Indices outside the video are clamped to its first/last frame,
    so short videos repeat their end frames instead of failing.

    Args:
        num_frames: int or scalar int tensor, frames in the video (0 gives all-zero indices).
        num_units: Python int U.
        frames_per_unit: Python int T.
        stride: Python int τ.
        training: Python bool.
        seed: optional int or shape-[2] int tensor for stateless, reproducible draws.

    Returns:
        int32 tensor ``(U, T)``.
    """
    for value, name in ((num_units, "num_units"), (frames_per_unit, "frames_per_unit"), (stride, "stride")):
        check_positive_int(value, name, "segment_indices")
    n = tf.cast(num_frames, tf.int32)
    bounds = (tf.range(num_units + 1, dtype=tf.int32) * n) // num_units
    first, end = bounds[:-1], bounds[1:]
    length = end - first
    span = unit_span(frames_per_unit, stride)
    if training:
        last_start = tf.maximum(tf.where(length >= span, end - span, end - 1), first)
        if seed is None:
            draw = tf.random.uniform((num_units,))
        else:
            seed = tf.stack([seed, 0]) if isinstance(seed, int) else seed
            draw = tf.random.stateless_uniform((num_units,), seed=seed)
        choices = tf.cast(last_start - first + 1, tf.float32)
        starts = first + tf.minimum(tf.cast(draw * choices, tf.int32), last_start - first)
    else:
        tick = tf.maximum(tf.cast(n - span + 1, tf.float64) / float(num_units), 0.0)
        units = tf.range(num_units, dtype=tf.float64)
        starts = tf.cast(tf.math.floor(tick / 2.0 + tick * units), tf.int32)
    indices = starts[:, None] + tf.range(frames_per_unit, dtype=tf.int32)[None, :] * stride
    return tf.clip_by_value(indices, 0, tf.maximum(n - 1, 0))
