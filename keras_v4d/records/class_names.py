"""Class names of the datasets the registered weights were trained on, and ``decode_predictions``.

``checkpoints/kinetics400_classes.txt`` (installed as package data of ``keras_v4d.checkpoints``)
holds Kinetics-400's 400 class names in sorted order — the order of the integer labels of
TSN-style lists, the same list as torchvision's video weights metadata
(``R3D_18_Weights.KINETICS400_V1.meta["categories"]``) and MMAction2's ``label_map_k400.txt``.
"""

import functools
import importlib.resources
import os

import keras
import numpy as np

KINETICS400_FILE = "kinetics400_classes.txt"
KINETICS400_SIZE = 400


def read_class_names(source):
    """Class names from a list, or from a file with one name per line (blank lines ignored).

    A relative file name that is not a file in the working directory is looked up among the
    package's data (``keras_v4d.checkpoints``), e.g. ``"kinetics400_classes.txt"``.
    """
    if isinstance(source, (list, tuple)):
        return [str(name) for name in source]
    path = os.fspath(source)
    if not os.path.isfile(path) and not os.path.isabs(path):
        packaged = importlib.resources.files("keras_v4d.checkpoints").joinpath(path)
        if packaged.is_file():
            return _parse(packaged.read_text("utf-8"), path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"class names file not found: {path}")
    with open(path, encoding="utf-8") as handle:
        return _parse(handle.read(), path)


def _parse(text, path):
    names = [line.strip() for line in text.splitlines() if line.strip()]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path}: class names appear more than once: {duplicates[:5]}")
    return names


@functools.lru_cache(maxsize=1)
def _kinetics400():
    names = read_class_names(KINETICS400_FILE)
    if len(names) != KINETICS400_SIZE:
        raise ValueError(f"the packaged {KINETICS400_FILE} lists {len(names)} classes, not {KINETICS400_SIZE}")
    return tuple(names)


def kinetics400_class_names():
    """Kinetics-400's 400 class names, index ``i`` = label ``i`` (sorted, as the datasets' lists)."""
    return list(_kinetics400())


def top_k_indices(scores, k):
    """Indices of the ``k`` highest of each row of ``scores`` ``(..., classes)``, highest first (ties:
    the lower index first)."""
    return np.argsort(-np.asarray(scores), axis=-1, kind="stable")[..., :k]


def top_classes(probabilities, class_names, k):
    """``[(class name, probability), ...]`` of the ``k`` highest of ``probabilities`` ``(classes,)``
    (``"class i"`` where ``class_names`` is ``None``)."""
    probabilities = np.asarray(probabilities)
    return [(class_names[i] if class_names else f"class {i}", float(probabilities[i]))
            for i in top_k_indices(probabilities, k)]


def decode_predictions(probabilities, top=5, class_names=None):
    """The ``top`` classes of each video, in the ``keras.applications`` style.

    Args:
        probabilities: ``(samples, classes)`` scores (a NumPy array or a backend tensor), e.g. a
            model's output.
        top: how many classes to return per sample.
        class_names: a list or a file with one name per line; default: the Kinetics-400 names
            (for 400 classes).

    Returns:
        One list per sample of ``(class name, probability)`` tuples, highest first.
    """
    try:
        scores = np.asarray(probabilities, dtype="float64")
    except (TypeError, RuntimeError, ValueError):  # e.g. a torch tensor that requires grad
        scores = np.asarray(keras.ops.convert_to_numpy(probabilities), dtype="float64")
    if scores.ndim != 2:
        raise ValueError("`decode_predictions` expects a batch of predictions, an array of shape (samples, classes); "
                         f"got shape {scores.shape}")
    if not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"`top` must be a positive int, got {top!r}")
    if class_names is None:
        if scores.shape[1] != KINETICS400_SIZE:
            raise ValueError(f"the predictions have {scores.shape[1]} classes; the default names are Kinetics-400's "
                             f"{KINETICS400_SIZE}: pass class_names (a list or a file with one name per line)")
        names = _kinetics400()
    else:
        names = read_class_names(class_names)
        if len(names) != scores.shape[1]:
            raise ValueError(f"{len(names)} class names for predictions of {scores.shape[1]} classes")
    results = []
    for row, order in zip(scores, top_k_indices(scores, top)):
        results.append([(names[i], float(row[i])) for i in order])
    return results
