"""The callbacks of a training run: per-epoch checkpoints written atomically, a stop at the first
non-finite loss, ``history.csv``, a progress display, TensorBoard logs and, per epoch, what the input
pipelines skipped or repaired."""

import contextlib
import csv
import json
import math
import os

import keras
import numpy as np
from keras import ops

from keras_v4d._compat import learning_rate_keeping_tensorboard, set_progress_target
from keras_v4d.records.atomic import NotWrittenError, write_atomically, write_failure
from keras_v4d.records.run_files import (
    BEST_CHECKPOINT_FILE,
    BEST_RECORD_FILE,
    CHECKPOINT_NAME,
    HISTORY_FILE,
    LAST_MODEL_FILE,
    SKIPPED_FILE,
    TENSORBOARD_FOLDER,
)
from keras_v4d.training.run_folder import prune_checkpoints


class EpochProgress(keras.callbacks.ProgbarLogger):
    """Keras' progress display with the expected steps of an epoch as its target from the first epoch
    on (the source's size; a filtered ``tf.data`` pipeline has no known length). An epoch that ends
    early because videos were skipped is shown with the steps it really ran. ``verbose=1``: a bar per
    epoch; ``verbose=2``: one line per epoch."""

    def __init__(self, steps_per_epoch):
        super().__init__()
        self.expected_steps = steps_per_epoch

    def set_params(self, params):
        super().set_params(params)
        set_progress_target(self, self.expected_steps)

    def on_epoch_begin(self, epoch, logs=None):
        set_progress_target(self, self.expected_steps)
        super().on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        set_progress_target(self, self.expected_steps, ended_early=True)
        super().on_epoch_end(epoch, logs)


def skip_counts(skip_log):
    """``(skipped, repaired)`` counts of a pipeline's ``SkipLog``."""
    skipped, repaired = skip_log.rows()
    return len(skipped), len(repaired)


class DataReport(keras.callbacks.Callback):
    """What the input pipelines lost or repaired, per epoch, where a long run can be watched.

    At the end of every epoch it adds to the logs (so ``history.csv`` and TensorBoard record them)
    ``skipped`` and ``repaired`` (videos of this epoch's training data, and ``val_skipped`` /
    ``val_repaired`` with validation data) and ``learning_rate`` (the rate of the epoch's first step);
    prints a line when something was skipped or repaired, or when the epoch ran fewer steps than
    expected (skipped videos make an epoch end early; it is not repeated or padded); and appends the
    epoch's new skip-log entries to ``skipped.csv`` (``epoch, data, status, video, reason``) under
    ``output_dir``. The pipelines log every entry as it happens too (logger ``keras_v4d.data``).
    ``lost_videos``: with the tf.data service, a callable giving the videos of the epoch just ended that
    no worker delivered (``ServiceReader.lost``); counted as ``lost`` and listed with status ``lost``.
    """

    def __init__(self, skip_log=None, val_skip_log=None, steps_per_epoch=None, output_dir=None, lost_videos=None):
        super().__init__()
        self.lost_videos = lost_videos
        self.skip_logs = {"": skip_log, "val_": val_skip_log}
        self.steps_per_epoch = steps_per_epoch
        self.path = os.path.join(output_dir, SKIPPED_FILE) if output_dir else None
        self._start = {}
        self._steps = 0
        self._learning_rate = None

    def _lists(self):
        return {prefix: log.rows() for prefix, log in self.skip_logs.items() if log is not None}

    def on_epoch_begin(self, epoch, logs=None):
        self._start = {prefix: (len(skipped), len(repaired)) for prefix, (skipped, repaired) in self._lists().items()}
        self._steps = 0
        rate = getattr(self.model.optimizer, "learning_rate", None)
        self._learning_rate = float(ops.convert_to_numpy(rate)) if rate is not None else None

    def on_train_batch_end(self, batch, logs=None):
        # Counted here, not from optimizer.iterations: Keras also counts the call that finds a dataset of
        # unknown length exhausted.
        self._steps = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if self._learning_rate is not None:
            logs["learning_rate"] = self._learning_rate
        notes, rows = [], []
        for prefix, (skipped, repaired) in self._lists().items():
            old_skipped, old_repaired = self._start.get(prefix, (0, 0))
            skipped, repaired = skipped[old_skipped:], repaired[old_repaired:]
            logs[f"{prefix}skipped"], logs[f"{prefix}repaired"] = len(skipped), len(repaired)
            data = "validation" if prefix else "training"
            if skipped or repaired:
                notes.append(f"{data}: {len(skipped)} video(s) skipped, {len(repaired)} repaired")
            rows += [(epoch + 1, data, "skipped", video, reason) for video, reason in skipped]
            rows += [(epoch + 1, data, "repaired", video, reason) for video, reason in repaired]
        if self.lost_videos is not None:
            lost = list(self.lost_videos())
            logs["lost"] = len(lost)
            if lost:
                notes.append(f"training: {len(lost)} video(s) lost to a tf.data service worker that stopped")
            rows += [(epoch + 1, "training", "lost", video, "its tf.data service worker stopped before delivering it")
                     for video in lost]
        if self.steps_per_epoch and self._steps < self.steps_per_epoch:
            reason = "training was stopped" if self.model.stop_training else (
                "the data ran out: videos were skipped" + (" or lost" if self.lost_videos is not None else ""))
            notes.insert(0, f"ended after {self._steps} of {self.steps_per_epoch} expected steps ({reason})")
        if notes:
            where = f" (listed in {self.path})" if self.path and rows else ""
            print(f"epoch {epoch + 1}: " + "; ".join(notes) + where, flush=True)
        if self.path and rows:
            new = not os.path.exists(self.path)
            with open(self.path, "a", newline="") as handle:
                writer = csv.writer(handle)
                if new:
                    writer.writerow(["epoch", "data", "status", "video", "reason"])
                writer.writerows(rows)


class TrainingDiverged(RuntimeError):
    """The loss or a weight became NaN or infinite; the message names the epoch, the step and the
    last finite checkpoint."""


class RunCheckpoints(keras.callbacks.Callback):
    """Saves a run's checkpoints at the end of every epoch whose weights are finite, and stops the
    run at the first non-finite loss.

    ``epoch-NNN.weights.h5`` (weights and optimizer state: the resume point) and ``last.keras`` (the
    whole model), each written to a temporary name and renamed, so a kill while saving leaves the
    previous files whole. Then the epoch checkpoints beyond the newest ``keep`` are deleted (None:
    none are), and with ``best_metric`` in the epoch's logs (validation) a better epoch becomes
    ``best.weights.h5`` (a hard link to its checkpoint, or a copy) and ``best.json`` names it. A NaN
    or infinite loss (checked after every step) or weight (checked before saving) stops training at
    once and nothing is saved: the last checkpoint stays the last finite one, and ``diverged`` says
    where (``train`` raises ``TrainingDiverged`` with it). A file that cannot be written raises
    ``NotWrittenError`` naming it and why.
    ``checkpoint_dir``: where the resume points go (``output_dir`` unless a non-chief worker writes
    its copies elsewhere).
    """

    def __init__(self, output_dir, checkpoint_dir=None, *, keep=None, best_metric=None):
        super().__init__()
        self.output_dir = output_dir
        self.checkpoint_dir = checkpoint_dir or output_dir
        self.keep, self.best_metric = keep, best_metric
        self.diverged = None
        self._epoch = 0
        self.last_saved = None
        self.best = _read_best(os.path.join(self.checkpoint_dir, BEST_RECORD_FILE), best_metric)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.diverged is None and loss is not None and not math.isfinite(float(loss)):
            self.diverged = f"the training loss became {float(loss)} at epoch {self._epoch + 1}, step {batch + 1}"
            self.model.stop_training = True

    def _non_finite_weight(self):
        for variable in self.model.weights:
            if not np.isfinite(ops.convert_to_numpy(variable)).all():
                return variable.path
        return None

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged is None:
            name = self._non_finite_weight()
            if name is not None:
                self.diverged = f"the weight {name} became non-finite in epoch {epoch + 1}"
                self.model.stop_training = True
        if self.diverged is not None:
            return
        path = os.path.join(self.checkpoint_dir, CHECKPOINT_NAME.format(epoch=epoch + 1))
        _written(path, self.model.save_weights)
        self.last_saved = path
        _written(os.path.join(self.output_dir, LAST_MODEL_FILE), self.model.save)
        self._keep_best(epoch + 1, path, logs or {})
        if self.keep is not None:
            prune_checkpoints(self.checkpoint_dir, self.keep)

    def _better(self, value):
        if self.best is None:
            return True
        return value < self.best["value"] if self.best_metric.endswith("loss") else value > self.best["value"]

    def _keep_best(self, epoch, checkpoint, logs):
        value = logs.get(self.best_metric) if self.best_metric else None
        if value is None or not math.isfinite(float(value)) or not self._better(float(value)):
            return
        best = os.path.join(self.checkpoint_dir, BEST_CHECKPOINT_FILE)
        _written(best, lambda temporary: _link_or_copy(checkpoint, temporary))
        self.best = {"epoch": epoch, "metric": self.best_metric, "value": float(value)}
        _written(os.path.join(self.checkpoint_dir, BEST_RECORD_FILE), lambda temporary: _write_json(temporary,
                                                                                                     self.best))


def _written(path, write):
    """``write_atomically(path, write)``; a failed write raises ``NotWrittenError`` naming ``path``."""
    try:
        write_atomically(path, write)
    except OSError as error:
        raise NotWrittenError(path, write_failure(error)) from None


def _link_or_copy(source, destination):
    """``destination`` as a hard link to ``source`` (no more disk), or a copy where links fail."""
    try:
        os.link(source, destination)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.remove(destination)
        with open(source, "rb") as reader, open(destination, "wb") as writer:
            while chunk := reader.read(1 << 24):
                writer.write(chunk)


def _write_json(path, value):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2)


def _read_best(path, metric):
    """The ``best.json`` record of ``metric`` in ``path``, or None (none yet, another metric, unreadable)."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("metric") != metric or not isinstance(record.get("value"),
                                                                                         (int, float)):
        return None
    return record


def training_callbacks(output_dir, *, steps_per_epoch=None, skip_log=None, val_skip_log=None, tensorboard=True,
                       checkpoint_dir=None, lost_videos=None, keep_checkpoints=None, best_metric="val_top1"):
    """The callbacks of a training run under ``output_dir``.

    ``RunCheckpoints`` (per-epoch ``epoch-NNN.weights.h5`` with the optimizer state, the latest full
    model ``last.keras``, both written atomically; the newest ``keep_checkpoints`` kept (None: all)
    and the best by ``best_metric`` as ``best.weights.h5``; a stop at the first non-finite loss),
    ``history.csv``; a progress display whose target is ``steps_per_epoch`` (when given);
    ``DataReport`` (skipped/repaired videos per epoch of the pipelines' ``skip_log`` /
    ``val_skip_log`` in the logs, ``history.csv``, ``skipped.csv`` and TensorBoard, plus the learning
    rate); TensorBoard event files under ``output_dir/tensorboard`` (``tensorboard=False`` to leave
    them out): loss, top-1, top-5, mean-class accuracy, learning rate and the skip counts per epoch;
    ``lost_videos`` (the tf.data service's ``ServiceReader.lost``) adds ``lost`` to them.
    """
    os.makedirs(output_dir, exist_ok=True)
    callbacks = [EpochProgress(steps_per_epoch)] if steps_per_epoch else []
    callbacks += [
        DataReport(skip_log, val_skip_log, steps_per_epoch, output_dir, lost_videos),
        # The row before the checkpoint: a kill between the two leaves a row that resuming trims, never
        # a checkpoint without its row.
        keras.callbacks.CSVLogger(os.path.join(output_dir, HISTORY_FILE), append=True),
        RunCheckpoints(output_dir, checkpoint_dir, keep=keep_checkpoints, best_metric=best_metric),
    ]
    if tensorboard:
        callbacks.append(learning_rate_keeping_tensorboard(os.path.join(output_dir, TENSORBOARD_FOLDER),
                                                           write_graph=False))
    return callbacks
