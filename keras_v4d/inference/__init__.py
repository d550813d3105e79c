"""Video-level inference (V4D Algorithm 1) and what is built on it: evaluation on a test set,
prediction of video files, the timeline of a long video, and the accuracy metrics.

``algorithm1`` (the one engine: combinations, windows, the memoised levels and their feature
store), ``video_level`` and ``metrics`` need only Keras; ``evaluation``, ``prediction`` and
``features`` (the pooled features before the classifier, per video or per window) read videos
through the ``tf.data`` pipeline and are imported on first use; ``timeline`` is imported from its
module.
"""

import importlib

from keras_v4d.inference.algorithm1 import (
    MAX_ELEMENTS,
    MAX_UNIT_COMBINATIONS,
    MODES,
    Algorithm1,
    check_unit_combinations,
    count_unit_combinations,
    unit_combinations,
    unit_sections,
)
from keras_v4d.inference.metrics import MeanClassAccuracy, accuracy_metrics
from keras_v4d.inference.video_level import VideoLevelPredictor, video_level_predict
from keras_v4d.records.class_names import top_classes, top_k_indices

_LAZY = {"evaluate": "evaluation", "predict_videos": "prediction",
         **dict.fromkeys(["WindowFeatures", "extract_features", "feature_model", "video_features", "window_features",
                          "write_features", "write_window_features"], "features")}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"keras_v4d.inference.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'keras_v4d.inference' has no attribute {name!r}")


__all__ = ["MAX_ELEMENTS", "MAX_UNIT_COMBINATIONS", "MODES", "Algorithm1", "MeanClassAccuracy", "VideoLevelPredictor",
           "WindowFeatures", "accuracy_metrics", "check_unit_combinations", "count_unit_combinations", "evaluate",
           "extract_features", "feature_model", "predict_videos", "top_classes", "top_k_indices", "unit_combinations",
           "unit_sections", "video_features", "video_level_predict", "window_features", "write_features",
           "write_window_features"]
