"""What a pipeline could not use, and why: ``SkipLog``, ``BadVideoError`` and the label rule
shared by the local pipeline and the tf.data service."""

import logging
import threading

logger = logging.getLogger("keras_v4d.data")


class BadVideoError(ValueError):
    """A sample that cannot be used; the message names the video."""


class SkipLog:
    """Counts and logs what a pipeline skipped or repaired, with the video (or shard) and why.

    ``entries``: ``(video, reason)`` for every sample skipped (a damaged TFRecord shard is one
    entry named by the shard's path). ``repaired``: ``(video, frames_decoded, frames_claimed)`` for
    every partly decodable video that was re-sampled over its decodable frames and used. Each
    pass over the dataset (epoch) logs again what it meets. In strict mode ``reject`` raises
    ``BadVideoError`` instead of skipping (a repair is not an error and never raises).
    """

    def __init__(self, strict=False):
        self.strict = strict
        self.entries = []
        self.repaired = []
        self._lock = threading.Lock()

    @property
    def count(self):
        """How many samples were skipped so far."""
        return len(self.entries)

    def counts(self):
        """``{"skipped": n, "repaired": m}`` so far."""
        with self._lock:
            return {"skipped": len(self.entries), "repaired": len(self.repaired)}

    def reject(self, video, reason):
        """Records ``video`` as skipped for ``reason`` and logs it; in strict mode raises ``BadVideoError``."""
        message = f"{video}: {reason}"
        if self.strict:
            raise BadVideoError(message)
        with self._lock:
            self.entries.append((video, reason))
            count = len(self.entries)
        logger.warning("skipped %s (%d skipped so far)", message, count)

    def repair(self, video, decoded, claimed):
        """Records ``video`` as used over its ``decoded`` frames of the ``claimed`` ones, and logs it."""
        with self._lock:
            self.repaired.append((video, int(decoded), int(claimed)))
        logger.warning("repaired %s: only %d of the %d frames it claims decode; units sampled over those",
                       video, decoded, claimed)

    def rows(self):
        """``(skipped, repaired)``: lists of ``(video, reason)`` so far."""
        with self._lock:
            entries, repaired = list(self.entries), list(self.repaired)
        return ([(str(video), str(reason)) for video, reason in entries],
                [(str(video), f"only {decoded} of the {claimed} frames it claims decode; units sampled over those")
                 for video, decoded, claimed in repaired])

    def summary(self):
        """How many were skipped and repaired, then one line per video with its reason (text)."""
        with self._lock:
            entries, repaired = list(self.entries), list(self.repaired)
        text = f"{len(entries)} video(s) skipped, {len(repaired)} repaired"
        text += "".join(f"\n  {v}: {r}" for v, r in entries)
        if repaired:
            text += "\n  repaired (frames decoded / claimed):"
            text += "".join(f"\n  {v}: {d} / {c}" for v, d, c in repaired)
        return text


def bad_video_message(error):
    """The message of a ``BadVideoError`` raised inside a ``tf.data`` pipeline (TensorFlow wraps it in
    an ``OpError`` followed by a node trace), or ``None`` when ``error`` is not one."""
    text = str(error)
    if "BadVideoError" not in text and type(error).__name__ != "BadVideoError":
        return None
    message = text.split("BadVideoError: ")[-1].strip()
    return message.split("\n")[0].split(" [[{{node")[0].strip() or text


INT32_LABELS = 2**31  # labels travel as int32: a larger one would wrap around to another class


def label_problem(label, num_classes):
    """Why ``label`` is no class index (outside ``[0, num_classes)``, or beyond int32), or None."""
    if num_classes is not None and not 0 <= label < num_classes:
        return f"label {label} outside [0, {num_classes})"
    if not 0 <= label < INT32_LABELS:
        return f"label {label} outside [0, {INT32_LABELS - 1}], the int32 range of class indices"
    return None


def check_labels(videos, num_classes, skip_log):
    """Indices of the entries of ``videos`` (a ``VideoFiles`` or ``RawFrames``) that can be sampled: the
    others (a label outside ``[0, num_classes)`` or int32, a folder of no frames) go to ``skip_log``."""
    keep = []
    counts = getattr(videos, "num_frames", None)
    for i, label in enumerate(videos.labels):
        problem = label_problem(label, num_classes)
        if problem is not None:
            skip_log.reject(videos.ids[i], problem)
        elif counts is not None and counts[i] < 1:
            skip_log.reject(videos.ids[i], f"total_frames is {counts[i]}: the folder has no frames to sample")
        else:
            keep.append(i)
    return keep
