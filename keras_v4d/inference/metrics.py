"""Accuracy, once: top-1 / top-k / mean-class accuracy of a test set (NumPy), and the same three as
Keras metrics for training."""

import keras
import numpy as np
from keras import ops

from keras_v4d.records.class_names import top_k_indices


def per_class_rows(labels, predictions, num_classes, class_names=None):
    """``(class, name, videos, correct, top-1 %)`` for every class that has test videos."""
    rows = []
    for c in range(num_classes):
        mask = labels == c
        if mask.any():
            correct = int((predictions[mask] == c).sum())
            name = class_names[c] if class_names else str(c)
            rows.append((c, name, int(mask.sum()), correct, 100.0 * correct / int(mask.sum())))
    return rows


def accuracy_metrics(y_true, scores, num_classes, class_names=None):
    """``(metrics, per-class rows)`` of ``scores`` ``(N, classes)`` against labels ``y_true`` ``(N,)``:
    ``videos``, ``top1``, ``top{k}`` (k = min(5, classes)) and ``mean_class_accuracy``, in %."""
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    predicted = scores.argmax(-1)
    k = min(5, num_classes)
    rows = per_class_rows(y_true, predicted, num_classes, class_names)
    empty = not len(y_true)
    metrics = {
        "videos": int(len(y_true)),
        "top1": float("nan") if empty else 100.0 * float((predicted == y_true).mean()),
        f"top{k}": float("nan") if empty else
        100.0 * float((top_k_indices(scores, k) == y_true[:, None]).any(-1).mean()),
        "mean_class_accuracy": float(np.mean([row[4] for row in rows])) if rows else float("nan"),
    }
    return metrics, rows


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
    """Keras metrics of training: top-1, top-5 (top-k for fewer classes) and mean-class accuracy."""
    k = min(5, num_classes)
    return [keras.metrics.SparseCategoricalAccuracy(name="top1"),
            keras.metrics.SparseTopKCategoricalAccuracy(k=k, name=f"top{k}"),
            MeanClassAccuracy(num_classes)]
