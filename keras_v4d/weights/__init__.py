"""Model weights: presets (one record per tag), fetching and checking files, loading trained models,
ImageNet inflation, conversion of the official PyTorch checkpoints.

Names are imported on first use, so that the builders can read the presets without importing the
loaders (which import the builders).
"""

import importlib

_EXPORTS = {
    "Preset": "presets", "fetch_weights": "presets", "get_preset": "presets", "list_weights": "presets",
    "register": "presets", "resolve_weights": "presets", "sha256_of": "presets",
    "WeightsMismatchError": "files", "check_weights_file": "files", "classifier_size": "files",
    "load_model_weights": "files",
    "find_class_names": "loading", "load_pretrained": "loading", "load_trained_model": "loading",
    "decode_predictions": "class_names", "kinetics400_class_names": "class_names", "read_class_names": "class_names",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"keras_v4d.weights.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'keras_v4d.weights' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
