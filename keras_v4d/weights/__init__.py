"""Model weights for users: the presets (one record per tag), fetching and checking ``.weights.h5``
files, loading trained models, ImageNet inflation and conversion of the official PyTorch checkpoints.

The presets, weights files and class names are records (``keras_v4d.records``, re-exported here):
the builders read them without importing this package, which imports the builders.
"""

from keras_v4d.records.class_names import decode_predictions, kinetics400_class_names, read_class_names
from keras_v4d.records.presets import (
    Preset,
    fetch_weights,
    get_preset,
    list_weights,
    register,
    resolve_weights,
    sha256_of,
)
from keras_v4d.records.weights_file import (
    WeightsMismatchError,
    check_weights_file,
    classifier_size,
    load_model_weights,
)
from keras_v4d.weights.loading import (
    LoadedModel,
    find_class_names,
    load_model,
    load_pretrained,
    load_trained_model,
    weights_tag,
)

__all__ = [
    "LoadedModel", "Preset", "WeightsMismatchError", "check_weights_file", "classifier_size", "decode_predictions",
    "fetch_weights", "find_class_names", "get_preset", "kinetics400_class_names", "list_weights",
    "load_model", "load_model_weights", "load_pretrained", "load_trained_model", "read_class_names", "register",
    "resolve_weights", "sha256_of", "weights_tag",
]
