"""Mapping PyTorch ResNet state dicts (torchvision names: ``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0`` …) onto this package's layer names (``stem_conv``, ``res2_block0_1_conv``,
``res2_block0_shortcut_conv`` …). Shared by ImageNet inflation and the official-checkpoint converter.
"""

import re

import keras
import numpy as np

# torchvision module name inside a block -> our name suffix
_BLOCK_PARTS = {"conv1": "1_conv", "bn1": "1_bn", "conv2": "2_conv", "bn2": "2_bn", "conv3": "3_conv",
                "bn3": "3_bn", "downsample.0": "shortcut_conv", "downsample.1": "shortcut_bn"}
_BLOCK_KEY = re.compile(r"^layer(\d)\.(\d+)\.(conv[123]|bn[123]|downsample\.[01])\.(\w+)$")
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var")


def weighted_kind(layer):
    """``"Conv3D"`` or ``"BatchNormalization"`` (subclasses included) for the layers that carry the
    checkpoints' weights; ``None`` for any other layer."""
    if isinstance(layer, keras.layers.Conv3D):
        return "Conv3D"
    if isinstance(layer, keras.layers.BatchNormalization):
        return "BatchNormalization"
    return None


def to_numpy(tensor):
    """A PyTorch tensor (or anything array-like) as a NumPy array."""
    return tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)


def group_by_module(state_dict, prefix=""):
    """``{module name: {parameter: array}}`` for the keys starting with ``prefix``."""
    modules = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        module, _, parameter = key[len(prefix):].rpartition(".")
        modules.setdefault(module, {})[parameter] = to_numpy(value)
    return modules


def keras_name(module, block_renumbering=None):
    """Our layer name for a torchvision module name, or ``None`` if it is not a ResNet layer."""
    if module == "conv1":
        return "stem_conv"
    if module == "bn1":
        return "stem_bn"
    match = _BLOCK_KEY.match(module + ".x")
    if not match:
        return None
    stage, block, part = int(match.group(1)), int(match.group(2)), match.group(3)
    if block_renumbering is not None:
        if (stage, block) not in block_renumbering:
            return None
        block = block_renumbering[(stage, block)]
    return f"res{stage + 1}_block{block}_{_BLOCK_PARTS[part]}"


def conv_kernel(weight, temporal_size=None):
    """PyTorch conv weight ``(out, in, [t,] h, w)`` → Keras Conv3D kernel ``(t, h, w, in, out)``.

    A 2D weight is inflated to ``temporal_size`` taps, each divided by ``temporal_size`` (I3D), so a
    video of one repeated frame gives the 2D network's response.
    """
    if weight.ndim == 4:
        t = temporal_size or 1
        return np.repeat(weight.transpose(2, 3, 1, 0)[None], t, axis=0) / t
    return weight.transpose(2, 3, 4, 1, 0)


def set_conv(layer, weight, inflate=False, key=None):
    """Sets a Conv3D ``layer``'s kernel from a PyTorch conv ``weight`` (a 2D one inflated when ``inflate``);
    a shape that does not fit is a ``ValueError`` naming the layer and ``key``."""
    expected = tuple(layer.kernel.shape)
    source = f"'{key}'" if key else "the checkpoint"
    if weight.ndim not in (4, 5):
        raise ValueError(f"layer '{layer.name}': {source} has shape {tuple(weight.shape)}, not a 2D or 3D conv weight")
    kernel = conv_kernel(weight, expected[0] if inflate else None)
    if kernel.shape != expected:
        raise ValueError(f"layer '{layer.name}': kernel of shape {expected}, but {source} has "
                         f"{tuple(weight.shape)} (→ {kernel.shape})")
    layer.kernel.assign(kernel.astype("float32"))


def set_batch_norm(layer, parameters, name):
    """Sets a BatchNormalization ``layer`` from PyTorch's ``weight``, ``bias``, ``running_mean`` and
    ``running_var`` of module ``name``; a missing one or another channel count is a ``ValueError``."""
    missing = [f for f in _BN_FIELDS if f not in parameters]
    if missing:
        raise ValueError(f"checkpoint module '{name}' lacks {missing} for BN layer '{layer.name}'")
    values = [parameters[f] for f in _BN_FIELDS]
    if values[0].shape != tuple(layer.gamma.shape):
        raise ValueError(f"layer '{layer.name}': {layer.gamma.shape[0]} channels, checkpoint '{name}' has "
                         f"{values[0].shape[0]}")
    for variable, value in zip((layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance), values):
        variable.assign(value.astype("float32"))


def _torch_name(name, block_renumbering):
    """The torchvision module name expected for our layer ``name`` (inverse of ``keras_name``)."""
    if name in ("stem_conv", "stem_bn"):
        return {"stem_conv": "conv1", "stem_bn": "bn1"}[name]
    match = re.match(r"^res(\d)_block(\d+)_(.+)$", name)
    parts = {v: k for k, v in _BLOCK_PARTS.items()}
    if not match or match.group(3) not in parts:
        return None
    stage, block = int(match.group(1)) - 1, int(match.group(2))
    if block_renumbering is not None:
        raw = [i for (s, i), b in block_renumbering.items() if s == stage and b == block]
        if not raw:
            return None
        block = raw[0]
    return f"layer{stage}.{block}.{parts[match.group(3)]}"


def load_resnet_modules(model, modules, inflate=False, block_renumbering=None, skip=(), key_prefix=""):
    """Assigns every ResNet conv/BN of ``modules`` (torchvision names) to ``model``.

    ``block_renumbering`` maps ``(stage, index inside the stage's nn.Sequential)`` to the residual
    block number (they differ when other modules sit between the blocks); ``key_prefix`` (e.g.
    ``module.base_model.``) only enters the error messages, which name the checkpoint key.
    Raises ``ValueError`` naming the first of the model's conv/BN layers that the checkpoint lacks.
    Returns the module names that were not used.
    """
    used = set()
    targets = {}
    for module in modules:
        name = keras_name(module, block_renumbering)
        if name is not None:
            targets[name] = module
    for layer in model.layers:
        kind = weighted_kind(layer)
        if kind is None or layer.name in skip:
            continue
        if layer.name not in targets:
            expected = _torch_name(layer.name, block_renumbering)
            where = f" (expected checkpoint module '{key_prefix}{expected}')" if expected else ""
            raise ValueError(f"the checkpoint has no weights for layer '{layer.name}' of model '{model.name}'{where}")
        module = targets[layer.name]
        if kind == "Conv3D":
            if "weight" not in modules[module]:
                raise ValueError(f"checkpoint module '{key_prefix}{module}' lacks 'weight' for layer '{layer.name}'")
            set_conv(layer, modules[module]["weight"], inflate, f"{key_prefix}{module}.weight")
        else:
            set_batch_norm(layer, modules[module], key_prefix + module)
        used.add(module)
    return [m for m in modules if m not in used]
