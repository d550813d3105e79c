"""The model family: I3D-S, TSN + I3D-S, V4D (V4D §3, Table 1) and F4D (F4D §3) on ResNet18/50.

Each builder has the ``keras.applications`` signature plus family keywords and takes videos
``(batch, U, T, H, W, 3)``; ``U``, ``T``, ``H`` and ``W`` are ``None`` unless fixed through
``input_shape``, ``num_units`` or ``frames_per_unit``, so a model trained on 4 units runs on 10.
"""

import inspect
import textwrap

from keras_v4d.models.flops import count_flops
from keras_v4d.models.freezing import PARTS, freeze, unfreeze
from keras_v4d.models.heads import HeadedVideoModel, with_head
from keras_v4d.models.preprocessing import preprocess_input
from keras_v4d.models.pretrained import WeightsReport, load_pretrained_weights
from keras_v4d.models.resnet3d import build_resnet3d

_ARGS = {  # each builder's arguments, described once (the builders' docstrings are made from them below)
    "include_top": "whether to add global pooling, dropout and the ``classes``-way classifier.",
    "weights": "``None``, a registered tag (see ``keras_v4d.weights.list_weights()``) or the path of a "
               "``.weights.h5`` file.",
    "input_tensor": "optional Keras tensor ``(batch, U, T, H, W, 3)`` to use as input.",
    "input_shape": "``(U, T, H, W, 3)``; any of U, T, H, W may be ``None``.",
    "pooling": "with ``include_top=False``: ``None`` (feature map ``(batch, U, T, h, w, C)``), ``\"avg\"`` or "
               "``\"max\"`` (over U, T, H, W → ``(batch, C)``).",
    "classes": "number of classes of the classifier (default: the weights tag's, else 400).",
    "classifier_activation": "activation of the classifier (``None`` for logits).",
    "num_units": "fix U of the input (default: any).",
    "frames_per_unit": "fix T of the input (default: any).",
    "dropout_rate": "dropout before the classifier (training only).",
    "block4d_placement": "``\"code\"`` (the released code's), ``\"paper\"``, ``\"res2-res5\"`` (every other block "
                         "of every stage) or a dict ``{\"res3\": (1, 3), ...}`` of 0-based block indices that a "
                         "4D block follows.",
    "kernel_size": "4D kernel ``(k_u, k_t, k_h, k_w)``; the paper's forms are (3,1,1,1), (3,3,1,1) (default) "
                   "and (3,3,3,3).",
    "norm": "``\"none\"`` (the released code's 4D block: the convolution alone) or ``\"batchnorm\"`` (the "
            "paper text's: BN and ReLU after it).",
    "block4d_dropout_rate": "dropout inside each F4D block (training only).",
    "attention": "the attention modules of each F4D block, among ``\"temporal\"``, ``\"channel\"`` and "
                 "``\"spatiotemporal\"``.",
    "name": "the model's name.",
}

def I3DSlowResNet18(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                    classes=None, classifier_activation="softmax", num_units=None, frames_per_unit=None,
                    dropout_rate=0.5, name="i3d_slow_resnet18"):
    return build_resnet3d(18, None, "I3DSlowResNet18", **locals())


def I3DSlowResNet50(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                    classes=None, classifier_activation="softmax", num_units=None, frames_per_unit=None,
                    dropout_rate=0.5, name="i3d_slow_resnet50"):
    return build_resnet3d(50, None, "I3DSlowResNet50", **locals())


def TSNResNet18(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                classes=None, classifier_activation="softmax", num_units=None, frames_per_unit=None,
                dropout_rate=0.5, name="tsn_resnet18"):
    return build_resnet3d(18, None, "TSNResNet18", **locals())


def TSNResNet50(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                classes=None, classifier_activation="softmax", num_units=None, frames_per_unit=None,
                dropout_rate=0.5, name="tsn_resnet50"):
    return build_resnet3d(50, None, "TSNResNet50", **locals())


def V4DResNet18(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                classes=None, classifier_activation="softmax", num_units=None, frames_per_unit=None,
                dropout_rate=0.5, block4d_placement="code", kernel_size=(3, 3, 1, 1), norm="none",
                name="v4d_resnet18"):
    return build_resnet3d(18, "v4d", "V4DResNet18", **locals())


def V4DResNet50(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                classes=None, classifier_activation="softmax", num_units=None, frames_per_unit=None,
                dropout_rate=0.5, block4d_placement="code", kernel_size=(3, 3, 1, 1), norm="none",
                name="v4d_resnet50"):
    return build_resnet3d(50, "v4d", "V4DResNet50", **locals())


def F4DResNet18(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                classes=None, classifier_activation="softmax", num_units=None, frames_per_unit=None,
                dropout_rate=0.5, block4d_placement="code", kernel_size=(3, 3, 1, 1),
                block4d_dropout_rate=0.2, attention=("temporal", "channel", "spatiotemporal"),
                name="f4d_resnet18"):
    return build_resnet3d(18, "f4d", "F4DResNet18", **locals())


def F4DResNet50(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                classes=None, classifier_activation="softmax", num_units=None, frames_per_unit=None,
                dropout_rate=0.5, block4d_placement="code", kernel_size=(3, 3, 1, 1),
                block4d_dropout_rate=0.2, attention=("temporal", "channel", "spatiotemporal"),
                name="f4d_resnet50"):
    return build_resnet3d(50, "f4d", "F4DResNet50", **locals())


_SUMMARIES = {
    I3DSlowResNet18: "I3D-Slow ResNet18 (V4D Table 1), the clip-level I3D-S baseline (use U=1 for one clip; more "
                     "units are averaged as in TSN).",
    I3DSlowResNet50: "I3D-Slow ResNet50 (the SlowFast paper's Slow pathway), the I3D-S baseline.",
    TSNResNet18: "TSN + I3D-S ResNet18: the 3D backbone on every unit, scores averaged over units.",
    TSNResNet50: "TSN + I3D-S ResNet50: the 3D backbone on every unit, scores averaged over units.",
    V4DResNet18: "V4D ResNet18: I3D-S + Residual4D blocks after block 1 of res3 and res4 (V4D Table 2d).",
    V4DResNet50: "V4D ResNet50: I3D-S + Residual4D blocks; ``'code'`` placement: after blocks 1 and 3 of res3; "
                 "``'paper'``: also after blocks 1, 3, 5 of res4.",
    F4DResNet18: "F4D ResNet18: V4D's placement with each 4D conv factorised (3+1)D and followed by TA, CA, STA "
                 "attention.",
    F4DResNet50: "F4D ResNet50: V4D's placement with each 4D conv factorised (3+1)D and followed by TA, CA, STA "
                 "attention.",
}
for _builder, _summary in _SUMMARIES.items():
    _names = inspect.signature(_builder).parameters
    _builder.__doc__ = "\n".join([_summary, "", "Args:"] + [
        textwrap.fill(f"{name}: {_ARGS[name]}", 100, initial_indent="    ", subsequent_indent="        ")
        for name in _names] + ["", "Returns:", "    A functional ``keras.Model``."])

BUILDERS = {b.__name__: b for b in (I3DSlowResNet18, I3DSlowResNet50, TSNResNet18, TSNResNet50, V4DResNet18,
                                    V4DResNet50, F4DResNet18, F4DResNet50)}
"""``{name: builder}`` of the eight builders, as the command-line tools' ``--model`` names them."""

__all__ = [
    "I3DSlowResNet18", "I3DSlowResNet50", "TSNResNet18", "TSNResNet50", "V4DResNet18", "V4DResNet50", "F4DResNet18",
    "F4DResNet50", "BUILDERS", "PARTS", "HeadedVideoModel", "WeightsReport", "build_resnet3d", "count_flops", "freeze",
    "load_pretrained_weights", "preprocess_input", "unfreeze", "with_head",
]
