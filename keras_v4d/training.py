"""The V4D training recipe (V4D §4.2 and the released code): SGD, piecewise learning rate,
weight decay without BN and biases, global gradient-norm clipping, video-level metrics,
per-epoch checkpoints and resumption after an interruption."""

import os

import keras
import numpy as np
from keras import ops

PAPER_DECAY_EPOCHS = (35, 60, 80)  # lr ÷ 10 at these epochs of 100 (V4D §4.2)
NO_DECAY = ["gamma", "beta", "bias"]  # BN scales/offsets and biases are not decayed (released code)


def paper_learning_rate(steps_per_epoch, base_lr=0.01, decay_epochs=PAPER_DECAY_EPOCHS, factor=0.1):
    """Piecewise-constant schedule: ``base_lr``, divided by 10 at each of ``decay_epochs``."""
    # PiecewiseConstantDecay switches *after* a boundary step: the new rate starts at epoch e's first step.
    boundaries = [int(e * steps_per_epoch) - 1 for e in decay_epochs]
    values = [base_lr * factor**i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def paper_optimizer(steps_per_epoch, base_lr=0.01, momentum=0.9, weight_decay=1e-5,
                    clip_norm=20.0, decay_epochs=PAPER_DECAY_EPOCHS):
    """SGD with momentum, the paper's schedule, decoupled weight decay on conv/dense kernels only
    and clipping of the global gradient norm (20, as the released code)."""
    optimizer = keras.optimizers.SGD(
        learning_rate=paper_learning_rate(steps_per_epoch, base_lr, decay_epochs),
        momentum=momentum, weight_decay=weight_decay or None, global_clipnorm=clip_norm)
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    return optimizer


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
        self.correct.assign(ops.zeros_like(self.correct))
        self.seen.assign(ops.zeros_like(self.seen))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


def video_metrics(num_classes):
    """Top-1, top-5 (top-k for fewer classes) and mean-class accuracy."""
    k = min(5, num_classes)
    return [keras.metrics.SparseCategoricalAccuracy(name="top1"),
            keras.metrics.SparseTopKCategoricalAccuracy(k=k, name=f"top{k}"),
            MeanClassAccuracy(num_classes)]


def compile_for_training(model, steps_per_epoch, optimizer=None, **optimizer_args):
    """Compiles ``model`` with the paper's optimizer (unless given), cross-entropy and the metrics."""
    num_classes = model.outputs[0].shape[-1]
    from_logits = getattr(getattr(model.layers[-1], "activation", None), "__name__", "") != "softmax"
    model.compile(
        optimizer=optimizer or paper_optimizer(steps_per_epoch, **optimizer_args),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=video_metrics(num_classes),
    )
    return model


def training_callbacks(output_dir):
    """Per-epoch weights (``epoch-NNN.weights.h5``), the latest full model (``last.keras``)
    and ``BackupAndRestore`` state under ``output_dir/backup`` for resuming."""
    os.makedirs(output_dir, exist_ok=True)
    return [
        keras.callbacks.ModelCheckpoint(os.path.join(output_dir, "epoch-{epoch:03d}.weights.h5"),
                                        save_weights_only=True),
        keras.callbacks.ModelCheckpoint(os.path.join(output_dir, "last.keras")),
        keras.callbacks.BackupAndRestore(os.path.join(output_dir, "backup")),
        keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv"), append=True),
    ]


def completed_epochs(output_dir):
    """Epochs recorded in ``output_dir/history.csv`` (0 when none)."""
    path = os.path.join(output_dir, "history.csv")
    if not os.path.exists(path):
        return 0
    with open(path) as handle:
        return max(0, len([line for line in handle if line.strip()]) - 1)


def make_strategy(kind="default"):
    """``"default"``, ``"mirrored"`` (all local devices) or ``"multiworker"`` (TF_CONFIG)."""
    import tensorflow as tf

    strategies = {"default": tf.distribute.get_strategy, "mirrored": tf.distribute.MirroredStrategy,
                  "multiworker": tf.distribute.MultiWorkerMirroredStrategy}
    if kind not in strategies:
        raise ValueError(f"`strategy` must be one of {sorted(strategies)}, got {kind!r}.")
    return strategies[kind]()


def prepare_fit(model, dataset, strategy):
    """Makes ``model.fit(dataset)`` work under ``MultiWorkerMirroredStrategy`` (a no-op otherwise).

    Keras 3's TensorFlow trainer fails there twice (keras-team/keras#20585): its first-batch
    symbolic build reduces a ``PerReplica`` batch eagerly, and it averages per-replica scalar logs
    with ``axis=0``. The model is built here from the dataset's element spec under the strategy's
    scope, and scalar logs are averaged with ``axis=None``. Call after ``compile``.
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return model
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if not getattr(tf_trainer.reduce_per_replica, "_keras_v4d_fixed", False):
        original = tf_trainer.reduce_per_replica

        def reduce_per_replica(values, strategy, reduction):
            if reduction in ("mean", "auto") and tf_trainer._collective_all_reduce_multi_worker(strategy):
                return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
            return original(values, strategy, reduction)

        reduce_per_replica._keras_v4d_fixed = True
        tf_trainer.reduce_per_replica = reduce_per_replica
    spec = tuple(dataset.element_spec)
    with strategy.scope():
        model._symbolic_build(data_batch=spec + (None,) * (3 - len(spec)))
    model._maybe_symbolic_build = lambda *args, **kwargs: None
    return model


def accuracy_table(y_true, probabilities):
    """Top-1 and mean-class accuracy (in %) of ``probabilities`` (N, classes) against ``y_true``."""
    y_true = np.asarray(y_true)
    predicted = np.asarray(probabilities).argmax(-1)
    classes = np.unique(y_true)
    per_class = {int(c): float((predicted[y_true == c] == c).mean()) for c in classes}
    return 100 * float((predicted == y_true).mean()), 100 * float(np.mean(list(per_class.values()))), per_class
