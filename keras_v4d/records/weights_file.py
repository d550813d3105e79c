"""``.weights.h5`` files: checking one against a model layer by layer, loading it, reading its classifier.

``check_weights_file`` walks the model's layers in the order Keras stores them (``_compat.keras_h5_layer_keys``)
to report the first layer whose variable shapes differ from the file's, before Keras would fail with
a bare shape error.
"""

import os
import re

import h5py

from keras_v4d._compat import keras_h5_layer_keys


class WeightsMismatchError(ValueError):
    """A weights file that does not fit the model; the message names the first layer at fault."""


def h5_layer_shapes(path):
    """``{layer key: sorted variable shapes}`` of a Keras 3 ``.weights.h5`` file."""
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise WeightsMismatchError(f"{path}: not a readable .weights.h5 file ({error}).") from None
    shapes = {}
    with handle:
        if "layers" not in handle:
            raise WeightsMismatchError(f"{path}: no 'layers' group; not a Keras 3 .weights.h5 file of a model.")
        for key, group in handle["layers"].items():
            found = []
            group.visititems(lambda _, item: found.append(tuple(item.shape)) if hasattr(item, "shape") else None)
            shapes[key] = sorted(found)
    return shapes


def check_weights_file(model, path):
    """Raises ``WeightsMismatchError`` naming the first layer of ``model`` whose variables do
    not match ``path`` (missing, or shapes differ), or the file's layers the model lacks."""
    stored = h5_layer_shapes(path)
    expected_keys = set()
    for key, layer in keras_h5_layer_keys(model):
        expected = sorted(tuple(v.shape) for v in layer.weights)
        if not expected:
            continue
        expected_keys.add(key)
        if key not in stored or not stored[key]:
            raise WeightsMismatchError(
                f"{path}: no weights for layer '{layer.name}' ({layer.__class__.__name__}, shapes {expected}); "
                f"the file was saved from a different architecture than '{model.name}'.")
        if stored[key] != expected:
            raise WeightsMismatchError(
                f"{path}: layer '{layer.name}' ({layer.__class__.__name__}) has variable shapes {expected} in "
                f"model '{model.name}' but {stored[key]} in the file (first layer that differs).")
    extra = sorted(k for k, v in stored.items() if v and k not in expected_keys)
    if extra:
        raise WeightsMismatchError(
            f"{path}: the file has weights for {len(extra)} layer(s) that model '{model.name}' lacks "
            f"(e.g. {extra[:3]}); it was saved from a different architecture.")


def load_model_weights(model, path):
    """Loads a ``.weights.h5`` file into ``model`` after checking that every layer fits."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    check_weights_file(model, path)
    model.load_weights(path)
    return model



def classifier_key(stored):
    """The key of the classifier (the last Dense layer) among ``h5_layer_shapes`` ``stored``, or None."""
    dense = [key for key, shapes in stored.items() if re.fullmatch(r"dense(_\d+)?", key) and shapes]
    return max(dense, key=lambda key: int(key.rsplit("_", 1)[-1]) if "_" in key else 0, default=None)


def classifier_size(path):
    """Number of classes of the final Dense layer stored in a ``.weights.h5`` file."""
    stored = h5_layer_shapes(path)
    key = classifier_key(stored)
    if key is None:
        raise WeightsMismatchError(f"{path}: no classifier (Dense) weights; pass the number of classes")
    return [s for s in stored[key] if len(s) == 1][0][0]
