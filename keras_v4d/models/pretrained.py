"""Starting from trained weights: a ``.weights.h5`` file into a model of the family that differs from
the file's where fine-tuning and the paper's staged recipe need it, and nowhere else.

V4D §4.3 trains Kinetics in stages: the 3D ResNet (I3D-S) first, then its weights in V4D "with all 4D
Blocks fixed to zero", then everything; §4.4 starts Something-Something from Kinetics weights with
another label set. So, layer by layer (a ``.weights.h5`` file keys layers by class and order, the
same in every model of one depth, ``_compat.keras_h5_layer_keys``):

- a 4D block the file lacks keeps its initialisation, the identity (V4D eq. 3 with zero kernels), so
  the model computes what the file's 3D network computes (TSN over the units);
- a 4D block of the file that the model lacks (V4D → I3D-S/TSN) and the file's classifier where the
  model has none (``include_top=False``) are left unused;
- with ``new_classifier`` (other classes) the classifier keeps its new initialisation;
- any other difference is a ``WeightsMismatchError`` naming the first layer at fault.

What was loaded, newly initialised and left unused is returned as a ``WeightsReport``.
"""

import dataclasses
import re
import warnings

from keras_v4d._compat import keras_h5_key_base, keras_h5_layer_keys
from keras_v4d.layers import Block4D, F4DBlock, Residual4D
from keras_v4d.records.weights_file import WeightsMismatchError, classifier_key, h5_layer_shapes

CLASSIFIER_NAME = "predictions"  # the builders' classifier (Dense)
BLOCK4D_KEYS = tuple(keras_h5_key_base(cls) for cls in (Residual4D, F4DBlock))


@dataclasses.dataclass(frozen=True)
class WeightsReport:
    """What loading a weights file did.

    Attributes:
        path: the file.
        loaded: names of the model's layers whose weights came from the file.
        initialized: names of the model's layers left at their initialisation (a new classifier; 4D
            blocks the file lacks, at the identity).
        unused: the file's layer keys the model has no place for (its 4D blocks, its classifier).
    """

    path: str
    loaded: tuple
    initialized: tuple
    unused: tuple

    def lines(self):
        """One line per group that is not empty."""
        lines = [f"{self.path}: loaded {len(self.loaded)} layers"]
        if self.initialized:
            lines.append(f"{self.path}: newly initialised (not taken from the file): {', '.join(self.initialized)}")
        if self.unused:
            lines.append(f"{self.path}: in the file, not used by the model: {', '.join(self.unused)}")
        return lines

    def __str__(self):
        return "\n".join(self.lines())


def _is_block4d_key(key):
    return re.sub(r"_\d+$", "", key) in BLOCK4D_KEYS


def _check_layer(path, model, layer, have, expected, new_classifier):
    """``"loaded"``, ``"initialized"``, or a ``WeightsMismatchError`` naming ``layer``."""
    if layer.name == CLASSIFIER_NAME and new_classifier:
        return "initialized"
    if have == expected:
        return "loaded"
    if isinstance(layer, Block4D) and not have:
        return "initialized"
    kind = layer.__class__.__name__
    if not have:
        raise WeightsMismatchError(f"{path}: no weights for layer '{layer.name}' ({kind}, shapes {expected}); the "
                                   f"file was saved from a different architecture than '{model.name}'.")
    hint = " (other classes: pass classes=N to start a new classifier)" if layer.name == CLASSIFIER_NAME else ""
    raise WeightsMismatchError(f"{path}: layer '{layer.name}' ({kind}) has variable shapes {expected} in model "
                               f"'{model.name}' but {have} in the file (first layer that differs){hint}.")


def load_pretrained_weights(model, path, *, new_classifier=False):
    """Loads the ``.weights.h5`` file ``path`` into ``model`` as the module docstring says; returns
    the ``WeightsReport``. ``new_classifier``: the model's classifier (``predictions``) has other
    classes than the file's and keeps its initialisation."""
    path = str(path)
    stored = h5_layer_shapes(path)
    status, used = {"loaded": [], "initialized": []}, set()
    for key, layer in keras_h5_layer_keys(model):
        expected = sorted(tuple(v.shape) for v in layer.weights)
        if expected:
            used.add(key)
            status[_check_layer(path, model, layer, stored.get(key), expected, new_classifier)].append(layer.name)
    head_key = classifier_key(stored)
    unused = sorted(k for k, shapes in stored.items() if shapes and k not in used)
    foreign = [k for k in unused if k != head_key and not _is_block4d_key(k)]
    if foreign:
        raise WeightsMismatchError(f"{path}: the file has weights for {len(foreign)} layer(s) that model "
                                   f"'{model.name}' lacks (e.g. {foreign[:3]}); it was saved from a different "
                                   "architecture.")
    with warnings.catch_warnings():  # Keras warns per skipped layer; the report says it once
        warnings.simplefilter("ignore")
        model.load_weights(path, skip_mismatch=True)
    unused = [f"{k} (the file's classifier)" if k == head_key else f"{k} (a 4D block)" for k in unused]
    return WeightsReport(path, tuple(status["loaded"]), tuple(status["initialized"]), tuple(unused))
