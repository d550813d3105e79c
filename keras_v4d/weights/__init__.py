"""Model weights: the registry of tags, resolving ``weights=`` arguments, loading with checks,
ImageNet inflation, conversion of the official PyTorch checkpoints."""

import os

from keras_v4d.weights.loading import (
    WeightsMismatchError, check_weights_file, find_class_names, load_model_weights, load_trained_model)
from keras_v4d.weights.registry import fetch_weights, list_weights, load_pretrained, register, weights_info


def resolve_weights(weights, model_name, include_top=True, classes=None):
    """Turns a ``weights=`` argument (``None``, a registered tag or a file path) into a local path."""
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"`weights` must be None, a registered tag or a file path, got {weights!r}.")
    weights = os.fspath(weights)
    if weights in list_weights():
        entry = weights_info(weights)
        if include_top and entry["arguments"].get("classes") not in (None, classes):
            raise ValueError(f"weights {weights!r} have {entry['arguments']['classes']} classes; build the model "
                             f"with classes={entry['arguments']['classes']} or include_top=False (got classes={classes}).")
        return fetch_weights(weights)
    if os.path.sep in weights or weights.endswith(".h5"):
        if not os.path.isfile(weights):
            raise ValueError(f"`weights`: file not found: {weights!r}.")
        return weights
    raise ValueError(
        f"`weights` must be None, a registered tag ({', '.join(list_weights()) or 'none registered'}) "
        f"or the path of a .weights.h5 file, got {weights!r}.")


__all__ = ["WeightsMismatchError", "check_weights_file", "fetch_weights", "find_class_names", "list_weights",
           "load_model_weights", "load_pretrained", "load_trained_model", "register", "resolve_weights",
           "weights_info"]
