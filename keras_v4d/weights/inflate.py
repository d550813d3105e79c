"""ImageNet inflation (I3D, used by V4D §4.2 to initialise the I3D-S backbone): every 2D kernel
``k×k`` becomes ``t×k×k``, repeated along time and divided by ``t``; BN statistics are copied.

On a video of one repeated frame, each inflated conv gives the 2D conv's response wherever its
temporal window lies inside the clip; I3D-S pads time with zeros (as the papers), so frames within
the temporal receptive field of the clip's ends differ (see ``tests/test_weights.py``).
"""

import numpy as np

from keras_v4d.weights.torch_layout import group_by_module, load_resnet_modules, set_batch_norm, weighted_kind

_KERAS_STAGES = {"conv2": "res2", "conv3": "res3", "conv4": "res4", "conv5": "res5"}
_KERAS_PARTS = {"0": "shortcut", "1": "1", "2": "2", "3": "3"}


def _keras_applications_name(name):
    """``conv2_block1_0_conv`` (keras.applications) → ``res2_block0_shortcut_conv`` (ours)."""
    if name in ("conv1_conv", "conv1_bn"):
        return "stem_" + name.split("_")[1]
    parts = name.split("_")  # conv2, block1, 0, conv|bn
    if len(parts) != 4 or parts[0] not in _KERAS_STAGES or parts[2] not in _KERAS_PARTS:
        return None
    return f"{_KERAS_STAGES[parts[0]]}_block{int(parts[1][5:]) - 1}_{_KERAS_PARTS[parts[2]]}_{parts[3]}"


def _inflate_from_keras(model3d, model2d):
    pending = {}
    for layer in model2d.layers:
        target = _keras_applications_name(layer.name)
        if target is not None and layer.weights:
            pending[target] = layer
    for layer in model3d.layers:
        kind = weighted_kind(layer)
        if kind is None:
            continue
        if layer.name not in pending:
            raise ValueError(f"inflate_2d: the 2D model '{model2d.name}' has no layer for '{layer.name}' "
                             f"(expected keras.applications ResNet naming)")
        source = pending[layer.name]
        if kind == "Conv3D":
            kernel = np.asarray(source.kernel)  # (h, w, in, out)
            t = layer.kernel.shape[0]
            inflated = np.repeat(kernel[None], t, axis=0) / t
            if inflated.shape != tuple(layer.kernel.shape):
                raise ValueError(f"inflate_2d: layer '{layer.name}' has kernel {tuple(layer.kernel.shape)}, "
                                 f"'{source.name}' inflates to {inflated.shape}")
            layer.kernel.assign(inflated)
        else:
            gamma, beta, mean, variance = (np.asarray(w) for w in source.weights)
            # keras.applications convs carry a bias; ours feed BN without one: fold it into the BN mean.
            conv2d = model2d.get_layer(source.name[:-len("bn")] + "conv")
            bias = np.asarray(conv2d.bias) if conv2d.use_bias else 0.0
            # Same scale under our epsilon: var' + eps' = var + eps (keras.applications: 1.001e-5).
            variance = variance + source.epsilon - layer.epsilon
            set_batch_norm(layer, {"weight": gamma, "bias": beta, "running_mean": mean - bias,
                                   "running_var": variance}, source.name)
    return model3d


def inflate_2d(model3d, source):
    """Loads 2D ImageNet ResNet weights into the I3D-S ResNet ``model3d`` (a model of this package).

    Args:
        model3d: e.g. ``keras_v4d.I3DSlowResNet50(include_top=False)``; 4D blocks (if any) and the
            classifier are left as they are.
        source: a ``keras.applications.ResNet50`` model (load its ImageNet weights from a local
            file with ``weights=path``), a torchvision-format ResNet18/50 state dict (a dict of
            tensors/arrays, e.g. ``torch.load(path, weights_only=True)``) or the path of one.
    Note: keras.applications' ResNet50 is the original ResNet (stride in the first 1×1 conv of a
    block); ours and torchvision's put it in the 3×3 conv. Build with ``stride_in_1x1=True`` to
    reproduce the Keras 2D network exactly.
    """
    if isinstance(source, str):
        import torch

        source = torch.load(source, map_location="cpu", weights_only=True)
    if isinstance(source, dict):
        modules = group_by_module(source.get("state_dict", source))
        load_resnet_modules(model3d, modules, inflate=True)
        return model3d
    return _inflate_from_keras(model3d, source)
