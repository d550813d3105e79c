"""The weight registry: tags → file, URL, sha256, architecture, classes, input settings, accuracy.

The registry's data and lookups live with the builders (``keras_v4d.models.presets``) so that
``V4DResNet50(weights=<tag>)`` resolves tags; this module adds what a user of a tag needs: the
entry with its class names (``weights_info``), the sampling settings and class names that
``predict``/``evaluate`` default to (``registry_settings``), and building a registered model.

An entry's ``class_names`` is a list, a file name (a file among the package data of
``keras_v4d.checkpoints``, e.g. ``"kinetics400_classes.txt"``, or a path) or ``None``; its ``input``
block holds the settings of ``keras_v4d.settings.DEFAULTS`` (``train_units``, ``frames_per_unit``,
``stride``, ``crop_size``, ``short_side``, ``test_num_units``, ``test_crop_size``, ``test_num_crops``).
"""

from keras_v4d.models import BUILDERS, presets
from keras_v4d.models.class_names import read_class_names
from keras_v4d.models.presets import (  # noqa: F401  (re-exported)
    CACHE_SUBDIR,
    REQUIRED_FIELDS,
    fetch_weights,
    list_weights,
    register,
    resolve_weights,
    sha256_of,
)
from keras_v4d.settings import DEFAULTS


def _class_names(tag, entry):
    source = entry.get("class_names")
    if source is None:
        return None
    try:
        names = read_class_names(source)
    except (OSError, ValueError) as error:
        raise ValueError(f"weights {tag!r}: its class names ({source!r}) cannot be read: {error}") from None
    classes = entry.get("arguments", {}).get("classes")
    if classes is not None and len(names) != classes:
        raise ValueError(f"weights {tag!r}: {source!r} lists {len(names)} class names for {classes} classes")
    return names


def weights_info(tag):
    """A copy of the registry entry of ``tag`` with ``class_names`` read: the list of names in
    label order (``None`` where the entry has none, see its ``class_names_note``); the file it
    came from is under ``class_names_file``. ``ValueError`` listing the tags if ``tag`` is unknown."""
    entry = presets.weights_info(tag)
    source = entry.get("class_names")
    entry["class_names"] = _class_names(tag, entry)
    entry["class_names_file"] = source if isinstance(source, str) else None
    return entry


def registry_settings(tag):
    """The settings ``predict``/``evaluate`` use for ``tag``: the entry's ``input`` block (the keys of
    ``keras_v4d.settings.DEFAULTS``) plus ``class_names`` (a list or ``None``), in the form of a
    training run's ``settings.json``."""
    entry = presets.weights_info(tag)
    settings = dict(entry.get("input") or {})
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"weights {tag!r}: unknown input settings {unknown}; known: {sorted(DEFAULTS)}")
    settings["class_names"] = _class_names(tag, entry)
    return settings


def load_pretrained(tag, cache_dir=None, **overrides):
    """Builds the registered architecture of ``tag`` and loads its weights."""
    entry = presets.weights_info(tag)
    return BUILDERS[entry["builder"]](**{**entry["arguments"], **overrides}, weights=fetch_weights(tag, cache_dir))
