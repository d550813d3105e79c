"""Per-video preprocessing on ``(frames, H, W, 3)`` uint8 tensors (training and evaluation).

Decoding, resizing, cropping and flipping reuse the TF Model Garden's ``preprocess_ops_3d``;
the ImageNet normalisation is the models' own ``keras_v4d.preprocess_input``.
"""

import tensorflow as tf
from official.vision.ops import preprocess_ops_3d

from keras_v4d.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD, preprocess_input  # noqa: F401


def normalize_imagenet(frames):
    """uint8 RGB → float32 ``(x / 255 - mean) / std`` with ImageNet statistics (``preprocess_input``)."""
    return preprocess_input(frames)


def train_transform(frames, crop_size, short_side=256, area_range=(0.25, 1.0),
                    aspect_ratio=(0.75, 4 / 3), seed=None):
    """Short side → ``short_side``, multi-scale random crop resized to ``crop_size``, random flip.

    One crop and one flip for all frames of the video, so units stay spatially aligned.
    Returns float32 ``(frames, crop_size, crop_size, 3)``, ImageNet-normalised.
    """
    num_frames = frames.shape[0]
    frames = preprocess_ops_3d.resize_smallest(frames, short_side)
    frames = preprocess_ops_3d.random_crop_resize(
        frames, crop_size, crop_size, num_frames, 3, aspect_ratio=aspect_ratio, area_range=area_range)
    frames = preprocess_ops_3d.random_flip_left_right(frames, seed=seed)
    return normalize_imagenet(frames)


def eval_transform(frames, crop_size, short_side=256, num_crops=1):
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
