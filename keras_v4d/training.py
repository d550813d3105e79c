"""The V4D training recipe (V4D §4.2 and the released code): SGD, piecewise learning rate,
L2 weight decay without BN and biases, global gradient-norm clipping, video-level metrics,
per-epoch checkpoints and resumption after an interruption; a progress display, TensorBoard logs
and, per epoch, what the input pipelines skipped or repaired (``training_callbacks``)."""

import csv
import ctypes
import ctypes.util
import os
import platform

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_v4d.evaluate import skip_log_lists

PAPER_DECAY_EPOCHS = (35, 60, 80)  # lr ÷ 10 at these epochs of 100 (V4D §4.2)
NO_DECAY = ["gamma", "beta", "bias"]  # BN scales/offsets and biases are not decayed (released code)


def paper_learning_rate(steps_per_epoch, base_lr=0.01, decay_epochs=PAPER_DECAY_EPOCHS, factor=0.1):
    """Piecewise-constant schedule: ``base_lr``, divided by 10 at each of ``decay_epochs``."""
    # PiecewiseConstantDecay switches *after* a boundary step: the new rate starts at epoch e's first step.
    boundaries = [int(e * steps_per_epoch) - 1 for e in decay_epochs]
    values = [base_lr * factor**i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def read_after(variable, dependency):
    """``variable``'s value, read only once ``dependency`` has been computed.

    TensorFlow's graph executor runs an op as soon as its inputs exist, so a product of a weight
    that depends on nothing else (``λ·w``) would be computed for every weight at the start of the
    training step and held through forward and backward: a copy of the whole model (0.13 GB for
    V4D-R18) on top of the activations. Other backends keep program order.
    """
    if keras.backend.backend() == "tensorflow":
        with tf.control_dependencies([dependency]):
            return tf.identity(variable)
    return ops.convert_to_tensor(variable)


@keras.saving.register_keras_serializable(package="keras_v4d")
class SGDWithL2(keras.optimizers.SGD):
    """SGD with L2 weight decay added to the gradient, as ``torch.optim.SGD(weight_decay=λ)`` in the
    released code: ``d = g + λ·w`` (``g`` after global-norm clipping), then Keras' momentum step
    ``m ← μ·m − lr·d``, ``w ← w + m``.

    That equals PyTorch's ``b ← μ·b + d``, ``w ← w − lr·b`` while the rate is constant (``m = −lr·b``);
    across a drop of the rate, the momentum carried over keeps the old rate and fades at ``μ`` per
    step. Variables whose name contains one of ``no_decay`` (BN scales and offsets, biases) are not
    decayed. Keras' own ``weight_decay`` is decoupled (``w ← w − lr·λ·w``), about ``1 / (1 − μ)``
    = 10× weaker than the coupled form at the same λ, so it is not the recipe's.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, l2=0.0, no_decay=(), name="sgd_with_l2", **kwargs):
        super().__init__(learning_rate=learning_rate, momentum=momentum, name=name, **kwargs)
        self.l2 = float(l2)
        self.no_decay = tuple(no_decay)

    def decays(self, variable):
        """Whether ``variable`` gets the L2 term."""
        return bool(self.l2) and not any(part in variable.name for part in self.no_decay)

    def update_step(self, gradient, variable, learning_rate):
        if self.decays(variable):
            gradient = ops.cast(gradient, variable.dtype)
            gradient = ops.add(gradient, ops.multiply(read_after(variable, gradient),
                                                      ops.cast(self.l2, variable.dtype)))
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2, "no_decay": list(self.no_decay)}


def paper_optimizer(steps_per_epoch, base_lr=0.01, momentum=0.9, weight_decay=1e-5,
                    clip_norm=20.0, decay_epochs=PAPER_DECAY_EPOCHS):
    """The released code's optimizer: SGD with momentum, the paper's schedule, L2 weight decay on
    conv/dense kernels only (``SGDWithL2``) and clipping of the global gradient norm (20)."""
    return SGDWithL2(learning_rate=paper_learning_rate(steps_per_epoch, base_lr, decay_epochs),
                     momentum=momentum, l2=weight_decay or 0.0, no_decay=NO_DECAY, global_clipnorm=clip_norm)


@keras.saving.register_keras_serializable(package="keras_v4d")
class MeanClassAccuracy(keras.metrics.Metric):
    """Accuracy averaged over classes (each class weighs the same, whatever its size)."""

    def __init__(self, num_classes, name="mean_class_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.correct = self.add_variable((num_classes,), initializer="zeros", name="correct")
        self.seen = self.add_variable((num_classes,), initializer="zeros", name="seen")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        hits = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), self.dtype)
        one_hot = ops.one_hot(y_true, self.num_classes, dtype=self.dtype)
        self.seen.assign_add(ops.sum(one_hot, axis=0))
        self.correct.assign_add(ops.sum(one_hot * hits[:, None], axis=0))

    def result(self):
        present = self.seen > 0
        per_class = ops.where(present, self.correct / ops.maximum(self.seen, 1.0), 0.0)
        return ops.sum(per_class) / ops.maximum(ops.sum(ops.cast(present, self.dtype)), 1.0)

    def reset_state(self):
        self.correct.assign(ops.zeros(self.correct.shape, self.dtype))
        self.seen.assign(ops.zeros(self.seen.shape, self.dtype))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


def video_metrics(num_classes):
    """Top-1, top-5 (top-k for fewer classes) and mean-class accuracy."""
    k = min(5, num_classes)
    return [keras.metrics.SparseCategoricalAccuracy(name="top1"),
            keras.metrics.SparseTopKCategoricalAccuracy(k=k, name=f"top{k}"),
            MeanClassAccuracy(num_classes)]


def default_jit_compile():
    """``False`` for TensorFlow on CPU: XLA's CPU Conv3D made a V4D-R18 training step about 5×
    slower (SPEC §10: 13.2 s vs 2.7 s); Keras' ``"auto"`` on a GPU and on the JAX and torch
    backends (JAX always compiles; no GPU measurement here decides otherwise)."""
    if keras.backend.backend() != "tensorflow":
        return "auto"
    return "auto" if tf.config.list_physical_devices("GPU") else False


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)


def use_low_memory_allocator(mmap_threshold=64 * 1024):
    """Trades training speed for memory on CPU (TensorFlow backend, Linux with glibc).

    TensorFlow's oneDNN build allocates tensors from a pool that keeps the blocks it frees, and
    glibc keeps freed blocks below its (adaptive) mmap threshold. This makes TensorFlow use the
    system allocator (``TF_ONEDNN_USE_SYSTEM_ALLOCATOR``) and fixes glibc's threshold at
    ``mmap_threshold`` bytes (``mallopt(M_MMAP_THRESHOLD)``), so every larger tensor goes back to
    the system as soon as it is freed. V4D-R18 at batch 2 × 4×4×160²: peak resident memory 0.30 GB
    lower, training step about 30% slower (benchmarks/README.md, ``benchmarks/training.py --low_memory``).

    Call it before TensorFlow allocates its first tensor (before building a model): TensorFlow
    picks its allocator once. Raises ``RuntimeError`` when that is too late, on another backend or
    without glibc. With oneDNN off (``TF_ENABLE_ONEDNN_OPTS=0``) TensorFlow has no pool and already
    allocates from the system: only the mmap threshold is set, at any time.
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"use_low_memory_allocator: TensorFlow's allocator only; the backend is "
                           f"{keras.backend.backend()!r}")
    if platform.libc_ver()[0] != "glibc":
        raise RuntimeError("use_low_memory_allocator: needs Linux with glibc (it sets glibc's mmap threshold)")
    before = os.environ.get("TF_ONEDNN_USE_SYSTEM_ALLOCATOR")
    os.environ["TF_ONEDNN_USE_SYSTEM_ALLOCATOR"] = "1"
    probe = tf.zeros((1 << 18,))  # 1 MiB: counted by the pool's statistics if the pool serves it
    try:
        in_pool = tf.config.experimental.get_memory_info("CPU:0")["current"]
    except ValueError:  # "Allocator stats not available": no oneDNN pool, TensorFlow's allocator is the system's
        in_pool = 0
    del probe
    if in_pool:
        if before is None:  # leave no setting behind for processes started later
            del os.environ["TF_ONEDNN_USE_SYSTEM_ALLOCATOR"]
        else:
            os.environ["TF_ONEDNN_USE_SYSTEM_ALLOCATOR"] = before
        raise RuntimeError("use_low_memory_allocator: TensorFlow already allocates from its oneDNN pool; call it "
                           "before building a model or running any TensorFlow op")
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) != 1:
        raise RuntimeError(f"use_low_memory_allocator: glibc refused mmap_threshold={mmap_threshold!r}")


def compile_for_training(model, steps_per_epoch, optimizer=None, jit_compile=None, **optimizer_args):
    """Compiles ``model`` with the paper's optimizer (unless given), cross-entropy and the metrics.

    ``jit_compile``: default ``default_jit_compile()`` (never XLA on CPU).
    """
    num_classes = model.outputs[0].shape[-1]
    from_logits = getattr(getattr(model.layers[-1], "activation", None), "__name__", "") != "softmax"
    model.compile(
        optimizer=optimizer or paper_optimizer(steps_per_epoch, **optimizer_args),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=video_metrics(num_classes),
        jit_compile=default_jit_compile() if jit_compile is None else jit_compile,
    )
    return model


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
        self.target = self.expected_steps or self.target

    def on_epoch_begin(self, epoch, logs=None):
        self.target = self.expected_steps or self.target
        super().on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.progbar is not None and self.seen and self.target and self.seen < self.target:
            self.target = self.progbar.target = self.seen
        super().on_epoch_end(epoch, logs)


def skip_counts(skip_log):
    """``(skipped, repaired)`` counts of a pipeline's ``SkipLog``."""
    skipped, repaired = skip_log_lists(skip_log)
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
    """

    def __init__(self, skip_log=None, val_skip_log=None, steps_per_epoch=None, output_dir=None):
        super().__init__()
        self.skip_logs = {"": skip_log, "val_": val_skip_log}
        self.steps_per_epoch = steps_per_epoch
        self.path = os.path.join(output_dir, "skipped.csv") if output_dir else None
        self._start = {}
        self._steps = 0
        self._learning_rate = None

    def _lists(self):
            return {prefix: skip_log_lists(log) for prefix, log in self.skip_logs.items() if log is not None}

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
        if self.steps_per_epoch and self._steps < self.steps_per_epoch:
            reason = "training was stopped" if self.model.stop_training else "the data ran out: videos were skipped"
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


class _TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback that keeps a ``learning_rate`` already in the logs (``DataReport``'s:
    the rate the epoch trained with, not the one after its last step)."""

    def _collect_learning_rate(self, logs):
        return logs if "learning_rate" in logs else super()._collect_learning_rate(logs)


def training_callbacks(output_dir, *, steps_per_epoch=None, skip_log=None, val_skip_log=None, tensorboard=True):
    """The callbacks of a training run under ``output_dir``.

    Per-epoch weights (``epoch-NNN.weights.h5``), the latest full model (``last.keras``),
    ``BackupAndRestore`` state under ``output_dir/backup`` for resuming, ``history.csv``; a progress
    display whose target is ``steps_per_epoch`` (when given); ``DataReport`` (skipped/repaired videos
    per epoch of the pipelines' ``skip_log`` / ``val_skip_log`` in the logs, ``history.csv``,
    ``skipped.csv`` and TensorBoard, plus the learning rate); TensorBoard event files under
    ``output_dir/tensorboard`` (``tensorboard=False`` to leave them out): loss, top-1, top-5,
    mean-class accuracy, learning rate and the skip counts per epoch.
    """
    os.makedirs(output_dir, exist_ok=True)
    callbacks = [EpochProgress(steps_per_epoch)] if steps_per_epoch else []
    callbacks += [
        DataReport(skip_log, val_skip_log, steps_per_epoch, output_dir),
        keras.callbacks.ModelCheckpoint(os.path.join(output_dir, "epoch-{epoch:03d}.weights.h5"),
                                        save_weights_only=True),
        keras.callbacks.ModelCheckpoint(os.path.join(output_dir, "last.keras")),
        keras.callbacks.BackupAndRestore(os.path.join(output_dir, "backup")),
        keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv"), append=True),
    ]
    if tensorboard:
        callbacks.append(_TensorBoard(os.path.join(output_dir, "tensorboard"), write_graph=False))
    return callbacks


def completed_epochs(output_dir):
    """Epochs recorded in ``output_dir/history.csv`` (0 when none)."""
    path = os.path.join(output_dir, "history.csv")
    if not os.path.exists(path):
        return 0
    with open(path) as handle:
        return max(0, len([line for line in handle if line.strip()]) - 1)


def make_strategy(kind="default"):
    """``"default"``, ``"mirrored"`` (all local devices) or ``"multiworker"`` (TF_CONFIG)."""
    strategies = {"default": tf.distribute.get_strategy, "mirrored": tf.distribute.MirroredStrategy,
                  "multiworker": tf.distribute.MultiWorkerMirroredStrategy}
    if kind not in strategies:
        raise ValueError(f"`strategy` must be one of {sorted(strategies)}, got {kind!r}.")
    return strategies[kind]()


def accuracy_table(y_true, probabilities):
    """Top-1 and mean-class accuracy (in %) of ``probabilities`` (N, classes) against ``y_true``."""
    y_true = np.asarray(y_true)
    predicted = np.asarray(probabilities).argmax(-1)
    classes = np.unique(y_true)
    per_class = {int(c): float((predicted[y_true == c] == c).mean()) for c in classes}
    return 100 * float((predicted == y_true).mean()), 100 * float(np.mean(list(per_class.values()))), per_class
