"""keras_v4d: video-level action recognition with 4D convolutional networks (V4D, F4D) in Keras 3."""

__version__ = "0.1.0"

import importlib

from keras_v4d import _compat

_compat.prefer_onednn()  # before Keras imports TensorFlow: TensorFlow reads the setting once
_compat.quiet_tensorflow_in_tools()  # the keras-v4d tools only; the library leaves TensorFlow's log as it is

from keras_v4d import layers, models
from keras_v4d.models import (
    F4DResNet18,
    F4DResNet50,
    I3DSlowResNet18,
    I3DSlowResNet50,
    TSNResNet18,
    TSNResNet50,
    V4DResNet18,
    V4DResNet50,
    count_flops,
    preprocess_input,
)
from keras_v4d.records.class_names import decode_predictions
from keras_v4d.records.sampling import VideoSampling

# Imported on first use: ``data``, ``training`` and ``export`` need TensorFlow and the Model Garden;
# the layers and models stay light on the JAX and PyTorch backends.
_LAZY_MODULES = ("data", "weights", "inference", "training", "export")


def __getattr__(name):
    if name in _LAZY_MODULES:
        return importlib.import_module(f"keras_v4d.{name}")
    raise AttributeError(f"module 'keras_v4d' has no attribute {name!r}")


__all__ = [
    "F4DResNet18", "F4DResNet50", "I3DSlowResNet18", "I3DSlowResNet50", "TSNResNet18", "TSNResNet50",
    "V4DResNet18", "V4DResNet50", "VideoSampling", "count_flops", "decode_predictions", "layers", "models",
    "preprocess_input",
]
