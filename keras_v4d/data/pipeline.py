"""``video_dataset``: tf.data pipelines of whole-video samples ``(B, U, T, H, W, 3)``."""

import logging
import threading

import numpy as np
import tensorflow as tf
from official.vision.ops import preprocess_ops_3d

from keras_v4d.data.sampling import segment_indices
from keras_v4d.data.sources import TFRecordFiles, resolve_source
from keras_v4d.data.tfrecord import parse_example
from keras_v4d.data.transforms import eval_transform, train_transform
from keras_v4d.data.video_io import VideoReadError, count_frames, read_frames

logger = logging.getLogger("keras_v4d.data")
AUTOTUNE = tf.data.AUTOTUNE


class BadVideoError(ValueError):
    """A sample that cannot be used; the message names the video."""


class SkipLog:
    """Counts and logs the samples a pipeline skipped, with the video and the reason.

    In strict mode it raises ``BadVideoError`` instead of skipping.
    """

    def __init__(self, strict=False):
        self.strict = strict
        self.entries = []
        self._lock = threading.Lock()

    @property
    def count(self):
        return len(self.entries)

    def reject(self, video, reason):
        message = f"{video}: {reason}"
        if self.strict:
            raise BadVideoError(message)
        with self._lock:
            self.entries.append((video, reason))
        logger.warning("skipped %s (%d skipped so far)", message, self.count)

    def summary(self):
        return f"{self.count} video(s) skipped" + "".join(f"\n  {v}: {r}" for v, r in self.entries)


def _decode_error_message(error):
    return str(error).split("BadVideoError: ")[-1].strip()


def read_video_units(path, num_units, frames_per_unit, stride, training=False):
    """The frames of U units sampled from the video file at ``path``: ``(U·T, H, W, 3)`` uint8.

    Raises ``VideoReadError`` naming ``path`` when the file cannot be decoded or has no frames.
    """
    num_frames = count_frames(path)
    if num_frames == 0:
        raise VideoReadError(f"{path}: the video has no frames")
    indices = segment_indices(num_frames, num_units, frames_per_unit, stride, training)
    return read_frames(path, indices.numpy())


def load_video_views(path, num_units=4, frames_per_unit=4, stride=8, crop_size=224, short_side=256,
                     num_crops=1):
    """One video file as evaluation views ``(num_crops, U, T, S, S, 3)`` float32 (centred units,
    the same preprocessing as ``video_dataset(training=False)``). Raises ``VideoReadError``."""
    frames = read_video_units(path, num_units, frames_per_unit, stride)
    views = eval_transform(tf.convert_to_tensor(frames), crop_size, short_side, num_crops)
    return tf.reshape(views, (num_crops, num_units, frames_per_unit, crop_size, crop_size, 3))


def _video_file_loader(num_units, frames_per_unit, stride, training, skip_log):
    """A py_function body: path → (sampled frames (U·T, H, W, 3) uint8, ok flag)."""
    empty = np.zeros((num_units * frames_per_unit, 1, 1, 3), np.uint8)

    def load(path, video_id):
        path, video_id = path.numpy().decode(), video_id.numpy().decode()
        try:
            return read_video_units(path, num_units, frames_per_unit, stride, training), True
        except VideoReadError as error:
            skip_log.reject(video_id, str(error))
            return empty, False

    return load


def _check_labels(videos, num_classes, skip_log):
    keep = []
    for i, label in enumerate(videos.labels):
        if label < 0 or (num_classes is not None and label >= num_classes):
            skip_log.reject(videos.ids[i], f"label {label} outside [0, {num_classes})")
        else:
            keep.append(i)
    return keep


def _from_video_files(videos, num_classes, training, sample_args, skip_log, shuffle_buffer, seed):
    keep = _check_labels(videos, num_classes, skip_log)
    if not keep:
        raise ValueError(f"video_dataset: no usable videos ({skip_log.summary()})")
    dataset = tf.data.Dataset.from_tensor_slices((
        [videos.paths[i] for i in keep],
        np.array([videos.labels[i] for i in keep], np.int32),
        [videos.ids[i] for i in keep],
    ))
    if training:
        dataset = dataset.shuffle(len(keep), seed=seed, reshuffle_each_iteration=True)
    load = _video_file_loader(*sample_args, training, skip_log)

    def decode(path, label, video_id):
        frames, ok = tf.py_function(load, [path, video_id], Tout=(tf.uint8, tf.bool))
        frames.set_shape((sample_args[0] * sample_args[1], None, None, 3))
        return frames, label, video_id, ok

    dataset = dataset.map(decode, num_parallel_calls=AUTOTUNE, deterministic=not training)
    return dataset.filter(lambda frames, label, video_id, ok: ok).map(
        lambda frames, label, video_id, ok: (frames, label, video_id))


def _from_tfrecords(records, num_classes, training, sample_args, skip_log, shuffle_buffer, seed):
    if not records.files:
        raise ValueError("video_dataset: the TFRecord source has no files")
    num_units, frames_per_unit, stride = sample_args
    files = tf.data.Dataset.from_tensor_slices(records.files)
    if training:
        files = files.shuffle(len(records.files), seed=seed, reshuffle_each_iteration=True)
    dataset = files.interleave(tf.data.TFRecordDataset, cycle_length=min(8, len(records.files)),
                               num_parallel_calls=AUTOTUNE, deterministic=not training)
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(parse_example, num_parallel_calls=AUTOTUNE)
    upper = num_classes if num_classes is not None else np.iinfo(np.int32).max

    def report(video_id, label, num_frames):
        video_id = video_id.numpy().decode() or "<record without video/id>"
        reason = ("the video has no frames" if num_frames.numpy() == 0 else
                  f"label {label.numpy()} outside [0, {num_classes})")
        skip_log.reject(video_id, reason)
        return False

    def usable(example):
        num_frames = tf.shape(example["frames"])[0]
        ok = (num_frames > 0) & (example["label"] >= 0) & (example["label"] < upper)
        return tf.cond(ok, lambda: True, lambda: tf.py_function(
            report, [example["video_id"], example["label"], num_frames], Tout=tf.bool))

    def decode(example):
        indices = segment_indices(tf.shape(example["frames"])[0], num_units, frames_per_unit, stride, training)
        # Only the sampled frames' JPEGs are decoded.
        jpegs = tf.gather(example["frames"], tf.reshape(indices, (-1,)))
        frames = preprocess_ops_3d.decode_jpeg(jpegs, channels=3)
        frames.set_shape((num_units * frames_per_unit, None, None, 3))
        return frames, example["label"], example["video_id"]

    return dataset.filter(usable).map(decode, num_parallel_calls=AUTOTUNE, deterministic=not training)


def video_dataset(source, *, training, num_units=4, frames_per_unit=4, stride=8, crop_size=224,
                  batch_size=8, num_classes=None, short_side=256, num_crops=1, root=None,
                  class_names=None, strict=None, shuffle_buffer=256, seed=None, drop_remainder=None,
                  area_range=(0.25, 1.0)):
    """A ``tf.data.Dataset`` of whole-video samples with U action units each (V4D §3.1).

    Args:
        source: an annotation list (``path label`` per line), a folder per class, a folder or
            glob of TFRecord shards, a list of TFRecord files, or a ``VideoFiles`` /
            ``TFRecordFiles`` object.
        training: training mode (random unit offsets, shuffling, multi-scale random crop,
            flip) or evaluation (centred units, ``num_crops`` fixed crops).
        num_units, frames_per_unit, stride: U, T, τ of the sampler.
        crop_size: output spatial size (training crop, or evaluation crop: 256 for the papers'
            fully convolutional 3-crop testing).
        batch_size: videos per batch (training drops the last partial batch by default, so every
            replica's batch holds whole videos).
        num_classes: labels outside ``[0, num_classes)`` are bad samples; defaults to the number of
            class names when known.
        short_side: frames are resized so that their short side is this before cropping.
        num_crops: evaluation only: 1 (centre) or 3 (covering the long side).
        area_range: training only: range of the random crop's area, as a fraction of the frame.
        root, class_names: for annotation lists: path root and class names (list or file).
        strict: raise ``BadVideoError`` naming the video at the first bad sample instead of
            skipping it; defaults to ``not training`` (evaluation never drops a video silently).
    Returns:
        Training: elements ``(videos (B, U, T, S, S, 3) float32, labels (B,) int32)``.
        Evaluation: ``(views (B, V, U, T, S, S, 3), labels (B,), video_ids (B,) string)`` with
        V = ``num_crops`` views per video (see ``single_view`` for ``model.evaluate``).
        The returned dataset has a ``skip_log`` attribute (``SkipLog``): what was skipped and why.
    """
    if crop_size > short_side:
        raise ValueError(f"video_dataset: `crop_size`={crop_size} is larger than `short_side`={short_side}.")
    if training and num_crops != 1:
        raise ValueError(f"video_dataset: `num_crops`={num_crops} applies to evaluation only.")
    for value, name in ((batch_size, "batch_size"), (num_units, "num_units"),
                        (frames_per_unit, "frames_per_unit"), (stride, "stride")):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"video_dataset: `{name}` must be a positive int, got {value!r}.")
    resolved = resolve_source(source, root, class_names)
    if num_classes is None and resolved.class_names:
        num_classes = len(resolved.class_names)
    skip_log = SkipLog(strict=not training if strict is None else strict)
    sample_args = (num_units, frames_per_unit, stride)
    build = _from_tfrecords if isinstance(resolved, TFRecordFiles) else _from_video_files
    dataset = build(resolved, num_classes, training, sample_args, skip_log, shuffle_buffer, seed)

    if training:
        def transform(frames, label, video_id):
            frames = train_transform(frames, crop_size, short_side, area_range=area_range)
            return tf.reshape(frames, (num_units, frames_per_unit, crop_size, crop_size, 3)), label
    else:
        def transform(frames, label, video_id):
            views = eval_transform(frames, crop_size, short_side, num_crops)
            return tf.reshape(views, (num_crops, num_units, frames_per_unit, crop_size, crop_size, 3)), label, video_id

    dataset = dataset.map(transform, num_parallel_calls=AUTOTUNE, deterministic=not training)
    dataset = dataset.batch(batch_size, drop_remainder=training if drop_remainder is None else drop_remainder)
    dataset = dataset.prefetch(AUTOTUNE)
    dataset.skip_log = skip_log
    dataset.class_names = resolved.class_names
    return dataset


def single_view(dataset):
    """Evaluation elements ``(views, labels, ids)`` → ``(first view (B, U, T, S, S, 3), labels)``."""
    return dataset.map(lambda views, labels, ids: (views[:, 0], labels))
