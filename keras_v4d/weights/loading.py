"""Loading trained models for inference: ``.keras`` files, or ``.weights.h5`` files with a builder name.

The per-layer check of weight files lives with the models (``keras_v4d.models.loading``).
"""

import os

import keras

import keras_v4d.layers  # noqa: F401  (registers the custom layers for deserialisation)
from keras_v4d.models import BUILDERS
from keras_v4d.models.loading import WeightsMismatchError, _h5_layer_shapes, check_weights_file, load_model_weights  # noqa: F401  (re-exported)


def load_trained_model(checkpoint, model_name=None, num_classes=None, **builder_args):
    """A model ready for inference from ``checkpoint``:

    - a ``.keras`` file (architecture and weights, e.g. ``last.keras`` of a training run), or
    - a ``.weights.h5`` file together with ``model_name`` (a builder, e.g. ``"V4DResNet18"``)
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
    if model_name not in BUILDERS:
        raise ValueError(f"a .weights.h5 checkpoint needs the architecture: model_name must be one of "
                         f"{sorted(BUILDERS)}, got {model_name!r}")
    if num_classes is None:
        num_classes = classifier_size(checkpoint)
    model = BUILDERS[model_name](classes=num_classes, **builder_args)
    return load_model_weights(model, checkpoint)


def classifier_size(path):
    """Number of classes of the final Dense layer stored in a ``.weights.h5`` file."""
    dense = [(k, s) for k, s in _h5_layer_shapes(path).items() if k.startswith("dense") and s]
    if not dense:
        raise WeightsMismatchError(f"{path}: no classifier (Dense) weights; pass the number of classes")
    key, shapes = max(dense, key=lambda item: int(item[0].rsplit("_", 1)[-1]) if "_" in item[0] else 0)
    return [s for s in shapes if len(s) == 1][0][0]


def find_class_names(checkpoint, class_names=None):
    """Class names from ``class_names`` (a list or a file with one name per line), else from
    ``class_names.txt`` next to ``checkpoint`` (the train CLI writes it), else ``None``."""
    if isinstance(class_names, (list, tuple)):
        return list(class_names)
    path = class_names or os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "class_names.txt")
    if class_names and not os.path.isfile(path):
        raise FileNotFoundError(f"class names file not found: {path}")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]
