"""Evaluation the way the papers do it: video-level inference over U_infer units (Algorithm 1)
and multi-crop testing, with top-1 / top-5 / mean-class accuracy.

``evaluate(model, "val.txt", train_units=4, output="runs/v4d/eval")`` writes ``metrics.json``,
``per_class.csv`` (accuracy of every class), ``predictions.csv``, ``unreadable.csv`` (the videos
that could not be read, with the reason) and ``repaired.csv`` under ``output``; the command-line tool is
``python -m keras_v4d.cli.evaluate``.

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

from keras_v4d.data import BadVideoError, resolve_source, video_dataset
from keras_v4d.inference import VideoLevelPredictor, video_level_predict

logger = logging.getLogger("keras_v4d.evaluate")


def per_class_rows(labels, predictions, num_classes, class_names):
    """``(class, name, videos, correct, top-1 %)`` for every class that has test videos."""
    rows = []
    for c in range(num_classes):
        mask = labels == c
        if mask.any():
            correct = int((predictions[mask] == c).sum())
            name = class_names[c] if class_names else str(c)
            rows.append((c, name, int(mask.sum()), correct, 100.0 * correct / int(mask.sum())))
    return rows


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


def accuracy_metrics(y_true, scores, num_classes, class_names=None):
    """``(metrics dict, per-class rows)``: top-1, top-k (k = min(5, classes)), mean-class accuracy in %."""
    predicted = scores.argmax(-1)
    k = min(5, num_classes)
    top_k = np.argsort(-scores, axis=-1)[:, :k]
    rows = per_class_rows(y_true, predicted, num_classes, class_names)
    metrics = {
        "videos": int(len(y_true)),
        "top1": 100.0 * float((predicted == y_true).mean()) if len(y_true) else float("nan"),
        f"top{k}": 100.0 * float((top_k == y_true[:, None]).any(-1).mean()) if len(y_true) else float("nan"),
        "mean_class_accuracy": float(np.mean([row[4] for row in rows])) if rows else float("nan"),
    }
    return metrics, rows


def bad_video_message(error):
    """The message of a ``BadVideoError`` raised inside a ``tf.data`` pipeline (TensorFlow wraps it in
    an ``OpError`` followed by a node trace), or ``None`` when ``error`` is not one."""
    text = str(error)
    if "BadVideoError" not in text and type(error).__name__ != "BadVideoError":
        return None
    message = text.split("BadVideoError: ")[-1].strip()
    return message.split("\n")[0].split(" [[{{node")[0].strip() or text


def _repair_reason(entry):
    if isinstance(entry, (list, tuple)) and len(entry) == 3:  # (video, frames decoded, frames claimed)
        return str(entry[0]), f"only {entry[1]} of the {entry[2]} frames it claims decode; units sampled over those"
    if isinstance(entry, (list, tuple)):
        return str(entry[0]), " ".join(str(x) for x in entry[1:])
    return str(entry), ""


def skip_log_lists(skip_log):
    """``(skipped, repaired)``: lists of ``(video, reason)`` from a pipeline's ``SkipLog`` (``entries``
    and, for partly decodable videos that were used, ``repaired``)."""
    skipped = [(str(entry[0]), str(entry[1])) for entry in list(skip_log.entries)]
    repaired = getattr(skip_log, "repaired", None)
    repaired = [_repair_reason(entry) for entry in list(repaired)] if isinstance(repaired, (list, tuple)) else []
    return skipped, repaired


def write_report(output, metrics, rows, ids, y_true, scores, unreadable=(), repaired=()):
    """Writes ``metrics.json``, ``per_class.csv``, ``predictions.csv``, ``unreadable.csv`` (``video,
    reason`` per video that could not be read; only the header when all were read) and ``repaired.csv``
    (``video, reason`` per video evaluated on the frames that decoded) under ``output``."""
    os.makedirs(output, exist_ok=True)
    predicted = scores.argmax(-1)
    with open(os.path.join(output, "metrics.json"), "w") as handle:
        json.dump(metrics, handle, indent=2)
    with open(os.path.join(output, "per_class.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "name", "videos", "correct", "top1"])
        writer.writerows([(c, n, v, r, f"{a:.2f}") for c, n, v, r, a in rows])
    with open(os.path.join(output, "predictions.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "label", "predicted", "score"])
        writer.writerows([(i, int(t), int(p), f"{s[p]:.4f}") for i, t, p, s in zip(ids, y_true, predicted, scores)])
    with open(os.path.join(output, "unreadable.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "reason"])
        writer.writerows(unreadable)
    with open(os.path.join(output, "repaired.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "reason"])
        writer.writerows(repaired)


def evaluate(model, data, *, train_units, sampling, mode="combinations", batch_size=2, class_names=None,
             output=None, progress=True, metadata=None, strict=False):
    """Video-level evaluation of ``model`` on the test source ``data``.

    Every readable video is evaluated; a video that cannot be read is left out of the metrics,
    logged, listed in ``unreadable.csv`` and counted in ``videos_unreadable`` (``strict=True`` stops
    at the first one instead).

    Args:
        model: a model of this package.
        data: annotation list, rawframe list, class folders or TFRecords (see ``video_dataset``).
        train_units: U the model was trained with (Algorithm 1's sections).
        sampling: ``video_dataset`` sampling keywords (``num_units``, ``frames_per_unit``, ``stride``,
            ``crop_size``, ``short_side``, ``num_crops``), e.g. from ``settings.inference_settings``.
        mode: ``"combinations"`` (Algorithm 1) or ``"all_units"``.
        class_names: the model's class names (checked against the source's when both are known).
        output: folder for ``metrics.json``, ``per_class.csv``, ``predictions.csv``,
            ``unreadable.csv`` and ``repaired.csv`` (optional).
        metadata: extra entries for ``metrics.json`` (e.g. the checkpoint's path).
        strict: raise ``BadVideoError`` at the first video that cannot be read.
    Returns:
        The metrics dict as written to ``metrics.json`` (``videos_evaluated`` (= ``videos``),
        ``videos_unreadable``, ``videos_repaired``, ``top1``, ``top5``, ``mean_class_accuracy`` — over
        the evaluated videos — and the settings), plus ``unreadable`` and ``repaired``: lists of
        ``(video, reason)``, which are not in ``metrics.json``.
    Raises:
        ValueError when the source does not fit the model; with ``strict``, ``BadVideoError`` naming
        the first video that cannot be read.
    """
    num_classes = model.outputs[0].shape[-1]
    source = resolve_source(data, class_names=class_names)
    _check_source(source, num_classes, class_names, data)
    class_names = class_names or source.class_names
    dataset = video_dataset(source, training=False, batch_size=batch_size, num_classes=num_classes, strict=strict,
                            **sampling)
    num_videos = getattr(dataset, "num_videos", None)  # known without decoding (list entries, framed records)
    total = math.ceil(num_videos / batch_size) if num_videos else None
    try:
        y_true, scores, ids = video_level_scores(model, dataset, train_units, mode, progress, total)
    except (tf.errors.OpError, ValueError) as error:
        message = bad_video_message(error)
        if message is None or isinstance(error, BadVideoError):
            raise
        raise BadVideoError(message) from None
    unreadable, repaired = skip_log_lists(dataset.skip_log)
    counts = dataset.skip_log.counts() if hasattr(dataset.skip_log, "counts") else {}
    metrics, rows = accuracy_metrics(y_true, scores, num_classes, class_names)
    metrics.update(videos_evaluated=len(ids), videos_unreadable=len(unreadable),
                   videos_repaired=int(counts.get("repaired", len(repaired))))
    metrics.update(data=os.fspath(data) if isinstance(data, (str, os.PathLike)) else str(data), mode=mode,
                   train_units=train_units, **sampling, **(metadata or {}))
    if unreadable:
        logger.warning("%d video(s) could not be read and were not evaluated; the metrics are over the %d "
                       "readable ones", len(unreadable), len(ids))
    if output is not None:
        write_report(output, metrics, rows, ids, y_true, scores, unreadable, repaired)
    return {**metrics, "unreadable": unreadable, "repaired": repaired}
