"""Model weights: the registry of tags, resolving ``weights=`` arguments, loading with checks,
ImageNet inflation, conversion of the official PyTorch checkpoints."""


from keras_v4d.weights.loading import (
    WeightsMismatchError,
    check_weights_file,
    find_class_names,
    load_model_weights,
    load_trained_model,
)
from keras_v4d.weights.registry import (
    fetch_weights,
    list_weights,
    load_pretrained,
    register,
    registry_settings,
    resolve_weights,
    weights_info,
)

__all__ = ["WeightsMismatchError", "check_weights_file", "fetch_weights", "find_class_names", "list_weights",
           "load_model_weights", "load_pretrained", "load_trained_model", "register", "registry_settings",
           "resolve_weights", "weights_info"]
