"""Models ready for inference: from a ``.keras`` file, a ``.weights.h5`` file and a builder name, or a
weights tag; and the class names that go with them."""

import os

import keras

import keras_v4d.layers  # noqa: F401  (registers the custom layers for deserialisation)
from keras_v4d.models import BUILDERS
from keras_v4d.records.class_names import read_class_names
from keras_v4d.records.presets import fetch_weights, get_preset
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
    """Class names from ``class_names`` (a list or a file with one name per line), else from
    ``class_names.txt`` next to ``checkpoint`` (the training run writes it), else ``None``."""
    if class_names is not None:
        return read_class_names(class_names)
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "class_names.txt")
    return read_class_names(path) if os.path.isfile(path) else None
