"""Model weights: resolving ``weights=`` arguments and loading them."""

import os

from keras_v4d.weights.loading import (
    WeightsMismatchError, check_weights_file, find_class_names, load_model_weights, load_trained_model)

# Tag -> metadata. No weights are registered yet (weights issue); tags are rejected with the list.
REGISTRY = {}


def list_weights():
    """Names of the registered weight tags."""
    return sorted(REGISTRY)


def resolve_weights(weights, model_name, include_top=True, classes=None):
    """Turns a ``weights=`` argument into a local file path (or ``None``)."""
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"`weights` must be None, a registered tag or a file path, got {weights!r}.")
    weights = os.fspath(weights)
    if os.path.sep in weights or weights.endswith(".h5"):
        if not os.path.isfile(weights):
            raise ValueError(f"`weights`: file not found: {weights!r}.")
        return weights
    raise ValueError(
        f"`weights` must be None, a registered tag ({', '.join(list_weights()) or 'none registered'}) "
        f"or the path of a .weights.h5 file, got {weights!r}.")

