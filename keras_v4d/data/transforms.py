"""Per-video preprocessing on ``(frames, H, W, 3)`` uint8 tensors (training and evaluation).

Decoding, resizing, cropping and flipping reuse the TF Model Garden's ``preprocess_ops_3d``;
the ImageNet normalisation is the models' own ``keras_v4d.preprocess_input``.
"""

import tensorflow as tf
from official.vision.ops import preprocess_ops_3d

from keras_v4d.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD, preprocess_input  # noqa: F401  (re-exported: the pipeline normalises with these)


def normalize_imagenet(frames):
    """uint8 RGB → float32 ``(x / 255 - mean) / std`` with ImageNet statistics (``preprocess_input``)."""
    return preprocess_input(frames)


def _stateless_crop_resize(frames, crop_size, num_frames, aspect_ratio, area_range, seed):
    """``preprocess_ops_3d.random_crop_resize`` with its box drawn by the stateless op from ``seed``."""
    shape = tf.shape(frames)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape[1:], bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]), seed=seed,
        min_object_covered=0.1, aspect_ratio_range=aspect_ratio, area_range=area_range, max_attempts=100,
        use_image_if_no_bounding_boxes=True)
    frames = tf.slice(frames, tf.stack([0, begin[0], begin[1], 0]), tf.stack([shape[0], size[0], size[1], shape[3]]))
    frames = tf.cast(tf.image.resize(frames, (crop_size, crop_size)), frames.dtype)
    frames.set_shape((num_frames, crop_size, crop_size, 3))
    return frames


def train_transform(frames, crop_size, short_side, area_range, aspect_ratio=(0.75, 4 / 3), seed=None):
    """Short side → ``short_side``, multi-scale random crop resized to ``crop_size``, random flip.

    ``area_range``: the crop's area as a fraction of the frame (a ``VideoSampling``'s ``area_range``).
    One crop and one flip for all frames of the video, so units stay spatially aligned.
    ``seed``: None draws the crop and the flip with the Model Garden's (stateful) ops; an int or a
    shape-[2] int tensor draws both with stateless ops, so the same seed gives the same crop and flip.
    Returns float32 ``(frames, crop_size, crop_size, 3)``, ImageNet-normalised.
    """
    num_frames = frames.shape[0]
    frames = preprocess_ops_3d.resize_smallest(frames, short_side)
    if seed is None:
        frames = preprocess_ops_3d.random_crop_resize(
            frames, crop_size, crop_size, num_frames, 3, aspect_ratio=aspect_ratio, area_range=area_range)
        frames = preprocess_ops_3d.random_flip_left_right(frames)
    else:
        seed = tf.cast(tf.stack([seed, 0]) if isinstance(seed, int) else seed, tf.int64)
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        frames = _stateless_crop_resize(frames, crop_size, num_frames, aspect_ratio, area_range, crop_seed)
        flip = tf.random.stateless_uniform((), flip_seed, maxval=2, dtype=tf.int32)
        frames = tf.cond(tf.equal(flip, 1), lambda: tf.image.flip_left_right(frames), lambda: frames)
    return normalize_imagenet(frames)


def eval_transform(frames, crop_size, short_side, num_crops=1):
    """Short side → ``short_side``; 1 centre crop or 3 crops covering the long side.

    Returns float32 ``(num_crops, frames, crop_size, crop_size, 3)``, ImageNet-normalised.
    """
    if num_crops not in (1, 3):
        raise ValueError(f"`num_crops` must be 1 or 3, got {num_crops!r}.")
    num_frames = frames.shape[0]
    frames = preprocess_ops_3d.resize_smallest(frames, short_side)
    crops = preprocess_ops_3d.crop_image(frames, crop_size, crop_size, num_crops=num_crops)
    crops = tf.reshape(crops, (num_crops, num_frames, crop_size, crop_size, 3))
    return normalize_imagenet(crops)
