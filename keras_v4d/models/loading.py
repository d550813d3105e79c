"""Loading ``.weights.h5`` files into models, with errors that name what does not fit.

Keras 3 stores a functional model's weights under ``layers/<snake_case class name>[_n]`` in the
order of ``model.layers``; ``check_weights_file`` walks that order to report the first layer whose
variable shapes differ from the file's, before Keras would fail with a bare shape error.
"""

import os
import re

import h5py


class WeightsMismatchError(ValueError):
    """A weights file that does not fit the model; the message names the first layer at fault."""


def _snake_case(name):
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _h5_layer_shapes(path):
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


def _model_layer_keys(model):
    """The h5 keys Keras gives ``model.layers`` (snake-case class name, numbered per class)."""
    used, keys = {}, []
    for layer in model.layers:
        base = _snake_case(layer.__class__.__name__)
        count = used.get(base, 0)
        used[base] = count + 1
        keys.append((base if count == 0 else f"{base}_{count}", layer))
    return keys


def check_weights_file(model, path):
    """Raises ``WeightsMismatchError`` naming the first layer of ``model`` whose variables do
    not match ``path`` (missing, or shapes differ), or the file's layers the model lacks."""
    stored = _h5_layer_shapes(path)
    expected_keys = set()
    for key, layer in _model_layer_keys(model):
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

