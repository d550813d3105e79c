"""The weight registry (presets as data, beside the builders): tags → file, URL, sha256, architecture, classes,
input settings, accuracy.

Entries live in ``checkpoints/registry.json`` (installed as ``keras_v4d.checkpoints``); ``register``
adds entries at run time (e.g. a lab's own checkpoints on a file server). A tag resolves through
``keras.utils.get_file``: a cached file (``~/.keras/keras_v4d/``, ``$KERAS_V4D_CACHE/keras_v4d/`` or ``cache_dir``)
is used when its sha256 matches, otherwise it is fetched from ``url`` (``https://`` or ``file://``) and checked.
"""

import copy
import hashlib
import importlib.resources
import json
import os

import keras

CACHE_SUBDIR = "keras_v4d"
REQUIRED_FIELDS = ("builder", "arguments", "file_name", "url", "sha256")
_REGISTRY = None


def _registry():
    global _REGISTRY
    if _REGISTRY is None:
        text = importlib.resources.files("keras_v4d.checkpoints").joinpath("registry.json").read_text("utf-8")
        _REGISTRY = json.loads(text)
    return _REGISTRY


def list_weights():
    """Names of the registered weight tags."""
    return sorted(_registry())


def weights_info(tag):
    """A copy of the registry entry of ``tag``; ``ValueError`` listing the tags if unknown."""
    if tag not in _registry():
        raise ValueError(f"unknown weights tag {tag!r}; registered tags: {', '.join(list_weights()) or 'none'}")
    return copy.deepcopy(_registry()[tag])


def register(tag, entry, overwrite=False):
    """Adds ``entry`` (a dict with at least ``builder``, ``arguments``, ``file_name``, ``url``,
    ``sha256``) under ``tag``."""
    missing = [f for f in REQUIRED_FIELDS if f not in entry]
    if missing:
        raise ValueError(f"registry entry {tag!r} lacks {missing}")
    if tag in _registry() and not overwrite:
        raise ValueError(f"weights tag {tag!r} is already registered (pass overwrite=True to replace it)")
    _registry()[tag] = copy.deepcopy(entry)


def sha256_of(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_weights(tag, cache_dir=None):
    """Local path of the weights file of ``tag``: from the cache if its sha256 matches, else
    downloaded from the entry's URL and checked. Errors name the tag, the file and the hashes."""
    entry = weights_info(tag)
    cache_dir = cache_dir or os.environ.get("KERAS_V4D_CACHE")
    folder = os.path.join(os.path.expanduser(cache_dir or os.environ.get("KERAS_HOME", "~/.keras")), CACHE_SUBDIR)
    cached = os.path.join(folder, entry["file_name"])
    if entry["sha256"] is None:
        # Not hosted: the file comes from converting the official release (see entry["source"]).
        if os.path.isfile(cached):
            return cached
        how = entry.get("source", {}).get("convert", "")
        raise ValueError(
            f"weights {tag!r} are not hosted as a converted file; download the official checkpoint from "
            f"{entry.get('source', {}).get('url', '?')}, convert it ({how}) and place it at {cached}, "
            f"or pass weights=<path of the .weights.h5 file>")
    if not os.path.isfile(cached) and not entry["url"]:
        raise ValueError(f"weights {tag!r}: {entry['file_name']} is not in the cache {folder} and the entry has no URL")
    os.makedirs(folder, exist_ok=True)  # get_file falls back to /tmp/.keras for a folder that does not exist
    try:
        path = keras.utils.get_file(entry["file_name"], entry["url"], file_hash=entry["sha256"],
                                    hash_algorithm="sha256", cache_subdir=CACHE_SUBDIR,
                                    cache_dir=os.path.dirname(folder))
    except ValueError as error:
        raise ValueError(f"weights {tag!r}: {entry['file_name']} from {entry['url']} failed its sha256 check "
                         f"(expected {entry['sha256']}): {error}") from None
    except Exception as error:  # noqa: BLE001  (URLError, HTTPError, OSError from the download)
        raise ValueError(f"weights {tag!r}: cannot fetch {entry['url']} ({type(error).__name__}: {error}); "
                         f"place the file at {cached} to use it offline") from None
    actual = sha256_of(path)
    if actual != entry["sha256"]:
        raise ValueError(f"weights {tag!r}: {path} has sha256 {actual}, expected {entry['sha256']}")
    return path


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
                             f"with classes={entry['arguments']['classes']} or include_top=False "
                             f"(got classes={classes}).")
        return fetch_weights(weights)
    if os.path.sep in weights or weights.endswith(".h5"):
        if not os.path.isfile(weights):
            raise ValueError(f"`weights`: file not found: {weights!r}.")
        return weights
    raise ValueError(
        f"`weights` must be None, a registered tag ({', '.join(list_weights()) or 'none registered'}) "
        f"or the path of a .weights.h5 file, got {weights!r}.")
