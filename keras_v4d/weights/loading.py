"""Models ready for inference: from a ``.keras`` file, a ``.weights.h5`` file and a builder name, or a
weights tag; and the class names and sampling settings saved with them.

``load_model`` is the one resolution of a checkpoint or a weights tag that every tool uses.
"""

import dataclasses
import os

import keras

import keras_v4d.layers  # noqa: F401  (registers the custom layers for deserialisation)
from keras_v4d.models import BUILDERS
from keras_v4d.records.class_names import read_class_names
from keras_v4d.records.presets import fetch_weights, get_preset, list_weights
from keras_v4d.records.run_files import read_run_class_names, read_settings
from keras_v4d.records.weights_file import classifier_size, load_model_weights


def load_trained_model(checkpoint, builder=None, num_classes=None, **builder_args):
    """A model ready for inference from ``checkpoint``:

    - a ``.keras`` file (architecture and weights, e.g. ``last.keras`` of a training run), or
    - a ``.weights.h5`` file together with ``builder`` (a builder name, e.g. ``"V4DResNet18"``)
      and ``num_classes`` (read from the file's classifier when omitted).
    """
    checkpoint = os.fspath(checkpoint)
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    if checkpoint.endswith(".keras"):
        try:
            return keras.saving.load_model(checkpoint, compile=False)
        except Exception as error:  # noqa: BLE001  (zip, JSON and h5 errors of a damaged file)
            raise ValueError(f"{checkpoint}: cannot load this .keras model ({type(error).__name__}: {error})") from None
    if not checkpoint.endswith(".h5"):
        raise ValueError(f"{checkpoint}: expected a .keras model or a .weights.h5 file")
    if builder not in BUILDERS:
        raise ValueError(f"a .weights.h5 checkpoint needs its architecture: the builder must be one of "
                         f"{sorted(BUILDERS)}, got {builder!r}")
    if num_classes is None:
        num_classes = classifier_size(checkpoint)
    model = BUILDERS[builder](classes=num_classes, **builder_args)
    return load_model_weights(model, checkpoint)


def load_pretrained(tag, cache_dir=None, **overrides):
    """Builds the architecture of the weights tag ``tag`` (its builder and arguments) and loads its weights."""
    preset = get_preset(tag)
    return BUILDERS[preset.builder](**{**preset.arguments, **overrides}, weights=fetch_weights(tag, cache_dir))


def find_class_names(checkpoint, class_names=None):
    """Class names from ``class_names`` (a list or a file with one name per line), else those of the
    training run beside ``checkpoint`` (its ``settings.json``, or an older run's ``class_names.txt``),
    else ``None``."""
    if class_names is not None:
        return read_class_names(class_names)
    return read_run_class_names(checkpoint)


def weights_tag(checkpoint_or_tag):
    """``checkpoint_or_tag`` when it is a registered weights tag and no file or folder of that name
    exists; else ``None``."""
    name = os.fspath(checkpoint_or_tag)
    return name if name in list_weights() and not os.path.exists(name) else None


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model resolved from a checkpoint or a weights tag, with what was saved beside it.

    Attributes:
        model: the Keras model, ``(B, U, T, H, W, 3)`` → ``(B, classes)`` (or features without a head).
        class_names: the names given, else the saved ones (the preset's, the run's ``settings.json``
            or an older run's ``class_names.txt``), else ``None``.
        saved_sampling: the ``VideoSampling`` fields saved with the weights (the preset's, the run's
            ``settings.json``), possibly partial; ``{}`` when none were saved.
        tag: the weights tag, when the model came from the registry; else ``None``.
    """

    model: keras.Model
    class_names: list | None
    saved_sampling: dict
    tag: str | None = None


def load_model(checkpoint_or_tag, builder=None, class_names=None, cache_dir=None):
    """The ``LoadedModel`` of ``checkpoint_or_tag``: a ``.keras`` model, a ``.weights.h5`` file with
    ``builder`` (a builder name), or a registered weights tag (``list_weights()``; its builder,
    arguments, sampling and class names come from the preset; ``cache_dir`` as in ``fetch_weights``).

    ``class_names``: a list or a file of names that replaces the saved ones. Raises ``ValueError``
    (``FileNotFoundError`` for a missing checkpoint) naming the file or argument at fault.
    """
    tag = weights_tag(checkpoint_or_tag)
    if tag is not None:
        if builder:
            raise ValueError(f"`builder` is for .weights.h5 checkpoints; the weights tag {tag!r} names its "
                             "architecture")
        preset = get_preset(tag)
        model = load_pretrained(tag, cache_dir)
        saved, saved_names = preset.sampling.to_dict(), preset.class_names
    else:
        model = load_trained_model(checkpoint_or_tag, builder)
        saved, _ = read_settings(checkpoint_or_tag)
        saved_names = read_run_class_names(checkpoint_or_tag)
    names = read_class_names(class_names) if class_names is not None else saved_names
    return LoadedModel(model, list(names) if names is not None else None, saved, tag)
