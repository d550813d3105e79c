"""Convert the official V4D PyTorch checkpoints (``.pth.tar``) to Keras ``.weights.h5``.

    python -m keras_v4d.cli.convert_weights CHECKPOINT.pth.tar OUT.weights.h5 --arch v4d_resnet50

or ``convert_official(checkpoint, arch="v4d_resnet50")`` from Python.

Layout (SPEC §9): a dict with ``state_dict``; backbone keys ``module.base_model.<torchvision name>``
(Conv3d weights ``(out, in, t, h, w)`` → Keras ``(t, h, w, in, out)``), classifier ``module.new_fc``.
Each 4D block has one weight, in the fast form ``(C, C, 3, 3, 1)`` (a Conv3d over (U, T, H·W)) or the
loop form ``(3, C, C, 3, 1, 1)`` (one Conv3d per unit offset, eq. 1); the 4D weights are matched to
the model's ``Residual4D`` layers in stage/block order. Loaded with ``torch.load(weights_only=True)``.
"""

import inspect
import re

import numpy as np

from keras_v4d.weights.torch_layout import group_by_module, load_resnet_modules

PREFIXES = ("module.base_model.", "base_model.", "module.", "")
CLASSIFIER_PREFIXES = ("module.new_fc.", "new_fc.", "module.fc.", "fc.")


def architectures():
    """``{"v4d_resnet50": V4DResNet50, ...}``: each builder under its default model name."""
    from keras_v4d.models import BUILDERS

    return {inspect.signature(b).parameters["name"].default: b for b in BUILDERS.values()}


def kernel_4d(weight, kernel_size):
    """An official 4D weight (fast or loop form) → Keras Conv4D kernel ``(k_u, k_t, k_h, k_w, in, out)``."""
    if weight.ndim == 5:  # fast: (out, in, k_u, k_t, k_h·k_w) over (U, T, H·W)
        out, cin, ku, kt, _ = weight.shape
        return weight.transpose(2, 3, 4, 1, 0).reshape(ku, kt, kernel_size[2], kernel_size[3], cin, out)
    if weight.ndim == 6:  # loop: (k_u, out, in, k_t, k_h, k_w)
        return weight.transpose(0, 3, 4, 5, 2, 1)
    raise ValueError(f"a 4D weight has 5 (fast form) or 6 (loop form) dimensions, got shape {weight.shape}")


def _block_order(module):
    return tuple(int(n) for n in re.findall(r"\d+", module))


def load_official_state(model, state_dict):
    """Loads an official-layout ``state_dict`` into ``model`` (a model of this package)."""
    from keras_v4d.layers import Residual4D

    prefix = next((p for p in PREFIXES if any(k.startswith(p + "conv1.") for k in state_dict)), None)
    if prefix is None:
        raise ValueError("not a V4D/ResNet checkpoint: no 'conv1.weight' key under any of "
                         f"{[p for p in PREFIXES if p]} (first keys: {list(state_dict)[:5]})")
    backbone = group_by_module({k: v for k, v in state_dict.items() if not k.startswith(CLASSIFIER_PREFIXES)}, prefix)
    leftovers = load_resnet_modules(model, backbone)
    blocks4d = [layer for layer in model.layers if isinstance(layer, Residual4D)]
    weights4d = sorted((m for m in leftovers if backbone[m].get("weight", np.zeros(0)).ndim in (5, 6)),
                       key=_block_order)
    if len(weights4d) != len(blocks4d):
        raise ValueError(f"model '{model.name}' has {len(blocks4d)} 4D blocks ({[b.name for b in blocks4d]}) but the "
                         f"checkpoint has {len(weights4d)} 4D weights ({weights4d}); check --arch and the placement")
    for layer, module in zip(blocks4d, weights4d):
        kernel = kernel_4d(backbone[module]["weight"], layer.kernel_size)
        if kernel.shape != tuple(layer.conv.kernel.shape):
            raise ValueError(f"layer '{layer.name}': 4D kernel {tuple(layer.conv.kernel.shape)}, checkpoint "
                             f"'{prefix}{module}.weight' gives {kernel.shape}")
        layer.conv.kernel.assign(kernel.astype("float32"))
    head = next((model.get_layer(n) for n in ("predictions",) if n in [la.name for la in model.layers]), None)
    if head is not None:
        classifier = next((group_by_module(state_dict, p)[""] for p in CLASSIFIER_PREFIXES
                           if any(k.startswith(p) for k in state_dict)), None)
        if classifier is None or "weight" not in classifier:
            raise ValueError(f"the checkpoint has no classifier (none of {list(CLASSIFIER_PREFIXES)}+'weight'); "
                             "build the model with include_top=False to load the backbone only")
        if classifier["weight"].shape != tuple(head.kernel.shape)[::-1]:
            raise ValueError(f"classifier: the model has {head.kernel.shape[1]} classes × {head.kernel.shape[0]} "
                             f"features, the checkpoint {classifier['weight'].shape[0]} × {classifier['weight'].shape[1]}")
        head.kernel.assign(classifier["weight"].T.astype("float32"))
        head.bias.assign(classifier["bias"].astype("float32"))
    return model


def convert_official(checkpoint, arch="v4d_resnet50", classes=None, **builder_args):
    """Reads an official ``.pth.tar`` and returns the Keras model with its weights."""
    import torch

    archs = architectures()
    if arch not in archs:
        raise ValueError(f"--arch must be one of {sorted(archs)}, got {arch!r}")
    try:
        loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}") from None
    except Exception as error:  # noqa: BLE001  (pickle/zip errors of a damaged or foreign file)
        raise ValueError(f"{checkpoint}: cannot read it as a PyTorch checkpoint ({type(error).__name__}: {error})") from None
    state_dict = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state_dict, dict):
        raise ValueError(f"{checkpoint}: expected a dict with a 'state_dict', got {type(loaded).__name__}")
    if classes is None:
        fc = [v for k, v in state_dict.items() if k.startswith(CLASSIFIER_PREFIXES) and k.endswith("weight")]
        classes = int(fc[0].shape[0]) if fc else 400
    model = archs[arch](classes=classes, **builder_args)
    try:
        return load_official_state(model, state_dict)
    except ValueError as error:
        raise ValueError(f"{checkpoint}: {error}") from None
