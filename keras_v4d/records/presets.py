"""Weights presets: one typed record per tag, and resolving a ``weights=`` argument.

A ``Preset`` (in the manner of torchvision's ``Weights`` enums and keras-hub's presets) holds what a
user of a tag needs: the builder and its arguments, the file, its URL and sha256, the licence, the
sampling it was trained and tested with (``VideoSampling``), its class names and the metrics its
authors reported. The records live in ``checkpoints/registry.json`` (installed as
``keras_v4d.checkpoints``); ``register`` adds more at run time (e.g. a lab's own checkpoints on a
file server).

A tag's file resolves through ``keras.utils.get_file``: a cached file (``~/.keras/keras_v4d/``,
``$KERAS_V4D_CACHE/keras_v4d/`` or ``cache_dir``) is used when its sha256 matches, otherwise it is
fetched from ``url`` (``https://`` or ``file://``) and checked.
"""

import copy
import dataclasses
import functools
import hashlib
import importlib.resources
import json
import os

import keras

from keras_v4d.records.class_names import read_class_names
from keras_v4d.records.sampling import VideoSampling
from keras_v4d.records.weights_file import classifier_key, classifier_size, h5_layer_shapes

CACHE_SUBDIR = "keras_v4d"
REQUIRED_FIELDS = ("builder", "arguments", "file_name", "url", "sha256")
_REGISTRY = None


@dataclasses.dataclass(frozen=True)
class Preset:
    """The record of one weights tag.

    Attributes:
        tag: the weights' name, e.g. ``"v4d_resnet50_kinetics400"``.
        builder: the builder the weights belong to, e.g. ``"V4DResNet50"`` (``keras_v4d.models.BUILDERS``).
        arguments: the builder's arguments (``classes``, ``frames_per_unit``, …).
        file_name, url, sha256: the ``.weights.h5`` file, where to fetch it (``None``: not hosted,
            see ``source``) and its sha256 (``None``: not hosted).
        sampling: the ``VideoSampling`` the weights were trained and are tested with.
        class_names_source: the class names as a tuple, a file among the package data or a path
            (``None``: none shipped, see ``notes``); read by ``class_names``.
        license: the weights' licence.
        reported: metrics reported by the weights' authors (``top1``, ``top5``, ``where``).
        description, source, notes: what they are, where the original comes from and how it is
            converted, and remarks (class names, preprocessing, test protocol).
    """

    tag: str
    builder: str
    arguments: dict
    file_name: str
    url: str | None
    sha256: str | None
    sampling: VideoSampling
    class_names_source: str | tuple | None = None
    license: str | None = None
    reported: dict = dataclasses.field(default_factory=dict)
    description: str = ""
    source: dict = dataclasses.field(default_factory=dict)
    notes: dict = dataclasses.field(default_factory=dict)

    @property
    def classes(self):
        """Outputs of the classifier (``None`` when the entry does not say)."""
        return self.arguments.get("classes")

    @functools.cached_property
    def class_names(self):
        """The class names in label order, or ``None`` when the preset ships none."""
        if self.class_names_source is None:
            return None
        try:
            names = read_class_names(self.class_names_source)
        except (OSError, ValueError) as error:
            raise ValueError(f"weights {self.tag!r}: its class names ({self.class_names_source!r}) cannot be read: "
                             f"{error}") from None
        if self.classes is not None and len(names) != self.classes:
            raise ValueError(f"weights {self.tag!r}: {self.class_names_source!r} lists {len(names)} class names "
                             f"for {self.classes} classes")
        return names

    @classmethod
    def from_entry(cls, tag, entry):
        """A ``Preset`` from a registry entry (``checkpoints/registry.json``'s form)."""
        missing = [f for f in REQUIRED_FIELDS if f not in entry]
        if missing:
            raise ValueError(f"registry entry {tag!r} lacks {missing}")
        name = str(entry["file_name"])
        if not name or name != os.path.basename(name) or name in (".", ".."):
            raise ValueError(f"registry entry {tag!r}: file_name {name!r} must be a plain file name (no folder, "
                             "no '..'): it is placed in the weights cache")
        entry = copy.deepcopy(entry)
        if entry["sha256"] is not None:
            entry["sha256"] = str(entry["sha256"]).lower()  # hex digests compare in lower case
        names = entry.get("class_names")
        notes = {key: entry[key] for key in ("class_names_note", "preprocessing", "test_protocol") if key in entry}
        if isinstance(names, list):
            names = tuple(names)
        return cls(tag=tag, builder=entry["builder"], arguments=entry["arguments"], file_name=entry["file_name"],
                   url=entry["url"], sha256=entry["sha256"],
                   sampling=VideoSampling.from_dict(entry.get("input") or {}, f"weights {tag!r}"),
                   class_names_source=names, license=entry.get("license"), reported=entry.get("reported", {}),
                   description=entry.get("description", ""), source=entry.get("source", {}), notes=notes)


def _registry():
    global _REGISTRY
    if _REGISTRY is None:
        text = importlib.resources.files("keras_v4d.checkpoints").joinpath("registry.json").read_text("utf-8")
        _REGISTRY = {tag: Preset.from_entry(tag, entry) for tag, entry in json.loads(text).items()}
    return _REGISTRY


def list_weights():
    """Names of the registered weight tags."""
    return sorted(_registry())


def get_preset(tag):
    """The ``Preset`` of ``tag``; ``ValueError`` listing the tags if unknown."""
    if tag not in _registry():
        raise ValueError(f"unknown weights tag {tag!r}; registered tags: {', '.join(list_weights()) or 'none'}")
    return _registry()[tag]


def register(tag, entry, overwrite=False):
    """Adds ``entry`` (a ``Preset``, or a dict in ``registry.json``'s form with at least ``builder``,
    ``arguments``, ``file_name``, ``url``, ``sha256``) under ``tag``."""
    preset = entry if isinstance(entry, Preset) else Preset.from_entry(tag, entry)
    if tag in _registry() and not overwrite:
        raise ValueError(f"weights tag {tag!r} is already registered (pass overwrite=True to replace it)")
    _registry()[tag] = dataclasses.replace(preset, tag=tag)


def sha256_of(path, chunk=1 << 20):
    """The sha256 of the file at ``path``, as lower-case hex, read ``chunk`` bytes at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_weights(tag, cache_dir=None):
    """Local path of the weights file of ``tag``: from the cache if its sha256 matches, else
    downloaded from the preset's URL and checked. Errors name the tag, the file and the hashes."""
    preset = get_preset(tag)
    cache_dir = cache_dir or os.environ.get("KERAS_V4D_CACHE")
    folder = os.path.join(os.path.expanduser(cache_dir or os.environ.get("KERAS_HOME", "~/.keras")), CACHE_SUBDIR)
    cached = os.path.join(folder, preset.file_name)
    if preset.sha256 is None:
        # Not hosted: the file comes from converting the official release (see preset.source).
        if os.path.isfile(cached):
            return cached
        raise ValueError(
            f"weights {tag!r} are not hosted as a converted file; download the official checkpoint from "
            f"{preset.source.get('url', '?')}, convert it ({preset.source.get('convert', '')}) and place it at "
            f"{cached}, or pass weights=<path of the .weights.h5 file>")
    if os.path.isfile(cached) and sha256_of(cached) == preset.sha256:
        return cached
    if not preset.url:
        raise ValueError(f"weights {tag!r}: {preset.file_name} is not in the cache {folder} (or fails its sha256 "
                         "check) and the entry has no URL")
    os.makedirs(folder, exist_ok=True)  # get_file falls back to /tmp/.keras for a folder that does not exist
    # No file_hash: get_file raises ValueError for a hash mismatch and for other faults alike (a URL it
    # cannot parse), so the hash is checked here, where a mismatch is known to be one. The cached file
    # is missing or failed its check above, hence force_download.
    try:
        path = keras.utils.get_file(preset.file_name, preset.url, cache_subdir=CACHE_SUBDIR,
                                    cache_dir=os.path.dirname(folder), force_download=True)
    except Exception as error:  # noqa: BLE001  (get_file re-raises URLError/HTTPError as a bare Exception)
        raise ValueError(f"weights {tag!r}: cannot fetch {preset.url} into {cached} ({type(error).__name__}: "
                         f"{error}); place the file there to use it offline") from None
    actual = sha256_of(path)
    if actual != preset.sha256:
        raise ValueError(f"weights {tag!r}: {preset.file_name} fetched from {preset.url} into {path} failed its "
                         f"sha256 check: it has {actual}, expected {preset.sha256}")
    return path


def resolve_weights(weights):
    """A ``weights=`` argument (``None``, a registered tag or a file path) as ``(local path, the
    weights' number of classes or None, the tag's builder or None)``; a tag's file is fetched and
    checked (``fetch_weights``)."""
    if weights is None:
        return None, None, None
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"`weights` must be None, a registered tag or a file path, got {weights!r}.")
    weights = os.fspath(weights)
    if weights in list_weights():
        preset = get_preset(weights)
        return fetch_weights(weights), preset.classes, preset.builder
    if os.path.sep in weights or weights.endswith(".h5"):
        if not os.path.isfile(weights):
            raise ValueError(f"`weights`: file not found: {weights!r}.")
        stored = h5_layer_shapes(weights)
        key = classifier_key(stored)
        return weights, (classifier_size(weights) if key else None), None
    raise ValueError(
        f"`weights` must be None, a registered tag ({', '.join(list_weights()) or 'none registered'}) "
        f"or the path of a .weights.h5 file, got {weights!r}.")
