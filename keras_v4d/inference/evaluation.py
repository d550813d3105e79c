"""Evaluation the way the papers do it: video-level inference over U_infer units (Algorithm 1)
and multi-crop testing, with top-1 / top-5 / mean-class accuracy.

``evaluate(model, "val.txt", sampling, output="runs/v4d/eval")`` writes ``metrics.json``,
``per_class.csv`` (accuracy of every class), ``predictions.csv``, ``unreadable.csv`` (the videos
that could not be read, with the reason) and ``repaired.csv`` under ``output``; the command-line tool is
``keras-v4d evaluate``.

Damaged data does not stop an evaluation: every readable video is evaluated (a video that decodes
only partly is sampled over the frames that decoded and counted as *repaired*), the unreadable
ones are listed, and the metrics say over how many videos they were computed
(``videos_evaluated``, ``videos_unreadable``, ``videos_repaired``). ``strict=True`` stops at the
first unreadable video instead, with a ``BadVideoError`` naming it.
"""

import csv
import json
import logging
import math
import os

import numpy as np
import tensorflow as tf
from keras import ops
from tqdm import tqdm

from keras_v4d.data import (
    MAX_FRAME_PIXELS,
    BadVideoError,
    DataOptions,
    bad_video_message,
    resolve_source,
    video_dataset,
)
from keras_v4d.inference.algorithm1 import check_unit_combinations
from keras_v4d.inference.metrics import accuracy_metrics
from keras_v4d.inference.video_level import VideoLevelPredictor, video_level_predict
from keras_v4d.records.atomic import open_atomically
from keras_v4d.records.sampling import resolve_sampling

logger = logging.getLogger("keras_v4d.evaluate")


def video_level_scores(model, dataset, train_units, mode="combinations", progress=True, total=None):
    """Video-level scores of every video of an evaluation ``dataset``: ``(labels, scores, ids)``."""
    predictor = VideoLevelPredictor(model)
    labels, scores, ids = [], [], []
    for views, y, video_ids in tqdm(dataset, total=total, unit="batch", disable=not progress, desc="evaluate"):
        scores.append(ops.convert_to_numpy(video_level_predict(model, views, train_units, mode, predictor)))
        labels.append(y.numpy())
        ids.extend(v.decode() for v in video_ids.numpy())
    num_classes = model.outputs[0].shape[-1]
    if not scores:
        return np.zeros((0,), np.int32), np.zeros((0, num_classes), np.float32), []
    return np.concatenate(labels), np.concatenate(scores), ids


def _check_source(source, num_classes, class_names, data):
    if source.class_names and len(source.class_names) != num_classes:
        raise ValueError(f"{data} has {len(source.class_names)} classes but the model has {num_classes} outputs")
    if class_names and source.class_names and list(source.class_names) != list(class_names):
        raise ValueError(f"{data}: its class names differ from the model's (first: {source.class_names[0]!r} vs "
                         f"{class_names[0]!r}); labels would not line up")
    labels = getattr(source, "labels", None)
    if labels and max(labels) >= num_classes:
        raise ValueError(f"{data} has labels up to {max(labels)} but the model has {num_classes} outputs "
                         f"(labels 0..{num_classes - 1})")


def protocol_settings(sampling):
    """The test protocol of ``sampling`` as ``metrics.json`` records it (the names of ``evaluate``'s flags)."""
    return dict(train_units=sampling.train_units, num_units=sampling.test_num_units,
                frames_per_unit=sampling.frames_per_unit, stride=sampling.stride, crop_size=sampling.test_crop,
                short_side=sampling.short_side, num_crops=sampling.test_num_crops)


def write_report(output, metrics, rows, ids, y_true, scores, unreadable=(), repaired=()):
    """Writes ``metrics.json``, ``per_class.csv``, ``predictions.csv``, ``unreadable.csv`` (``video,
    reason`` per video that could not be read; only the header when all were read) and ``repaired.csv``
    (``video, reason`` per video evaluated on the frames that decoded) under ``output``."""
    os.makedirs(output, exist_ok=True)
    predicted = scores.argmax(-1)
    with open_atomically(os.path.join(output, "metrics.json"), "w", encoding="utf-8") as handle:
        # Strict JSON: no video evaluated gives accuracies of null, not a bare NaN.
        json.dump({k: None if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()}, handle,
                  indent=2, allow_nan=False)
    with open_atomically(os.path.join(output, "per_class.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "name", "videos", "correct", "top1"])
        writer.writerows([(c, n, v, r, f"{a:.2f}") for c, n, v, r, a in rows])
    with open_atomically(os.path.join(output, "predictions.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "label", "predicted", "score"])
        writer.writerows([(i, int(t), int(p), f"{s[p]:.4f}") for i, t, p, s in zip(ids, y_true, predicted, scores)])
    with open_atomically(os.path.join(output, "unreadable.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "reason"])
        writer.writerows(unreadable)
    with open_atomically(os.path.join(output, "repaired.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "reason"])
        writer.writerows(repaired)


def evaluate(model, data, sampling=None, *, mode="combinations", batch_size=2, class_names=None, output=None,
             progress=True, metadata=None, strict=False, max_frame_pixels=MAX_FRAME_PIXELS):
    """Video-level evaluation of ``model`` on the test source ``data``.

    Every readable video is evaluated; a video that cannot be read is left out of the metrics,
    logged, listed in ``unreadable.csv`` and counted in ``videos_unreadable`` (``strict=True`` stops
    at the first one instead).

    Args:
        model: a model of this package.
        data: annotation list, rawframe list, class folders or TFRecords (see ``video_dataset``).
        sampling: the model's ``VideoSampling`` (its test protocol: U_infer, T, τ, short side, test
            crop, crops; and ``train_units``, Algorithm 1's sections), e.g. from
            ``keras_v4d.records.sampling.resolve_sampling`` or a weights preset; default: the model's fixed
            U/T and the defaults.
        mode: ``"combinations"`` (Algorithm 1) or ``"all_units"``.
        class_names: the model's class names (checked against the source's when both are known).
        output: folder for ``metrics.json``, ``per_class.csv``, ``predictions.csv``,
            ``unreadable.csv`` and ``repaired.csv`` (optional).
        metadata: extra entries for ``metrics.json`` (e.g. the checkpoint's path).
        strict: raise ``BadVideoError`` at the first video that cannot be read.
        max_frame_pixels: a video whose frames have more pixels (width × height, read from its
            header before decoding) is unreadable; None: no limit (see ``video_dataset``).
    Returns:
        The metrics dict as written to ``metrics.json`` (``videos_evaluated`` (= ``videos``),
        ``videos_unreadable``, ``videos_repaired``, ``top1``, ``top5``, ``mean_class_accuracy`` — over
        the evaluated videos — and the settings), plus ``unreadable`` and ``repaired``: lists of
        ``(video, reason)``, which are not in ``metrics.json``.
    Raises:
        ValueError when the source does not fit the model or U_infer makes more unit combinations than
        ``MAX_UNIT_COMBINATIONS`` (``check_unit_combinations``); with ``strict``, ``BadVideoError`` naming
        the first video that cannot be read.
    """
    sampling = sampling or resolve_sampling(model)
    if mode == "combinations":  # before any video is read
        check_unit_combinations(sampling.test_num_units, sampling.train_units)
    num_classes = model.outputs[0].shape[-1]
    source = resolve_source(data, class_names=class_names)
    _check_source(source, num_classes, class_names, data)
    class_names = class_names or source.class_names
    dataset, info = video_dataset(source, sampling, training=False, batch_size=batch_size, num_classes=num_classes,
                                  options=DataOptions(strict=strict, max_frame_pixels=max_frame_pixels), with_info=True)
    total = math.ceil(info.num_videos / batch_size) if info.num_videos else None  # known without decoding
    try:
        y_true, scores, ids = video_level_scores(model, dataset, sampling.train_units, mode, progress, total)
    except (tf.errors.OpError, ValueError) as error:
        message = bad_video_message(error)
        if message is None or isinstance(error, BadVideoError):
            raise
        raise BadVideoError(message) from None
    unreadable, repaired = info.skip_log.rows()
    metrics, rows = accuracy_metrics(y_true, scores, num_classes, class_names)
    metrics.update(videos_evaluated=len(ids), videos_unreadable=len(unreadable), videos_repaired=len(repaired))
    metrics.update(data=os.fspath(data) if isinstance(data, (str, os.PathLike)) else str(data), mode=mode,
                   **protocol_settings(sampling), **(metadata or {}))
    if unreadable:
        logger.warning("%d video(s) could not be read and were not evaluated; the metrics are over the %d "
                       "readable ones", len(unreadable), len(ids))
    if output is not None:
        write_report(output, metrics, rows, ids, y_true, scores, unreadable, repaired)
    return {**metrics, "unreadable": unreadable, "repaired": repaired}
