"""Convert the official V4D PyTorch checkpoints (``.pth.tar``) to Keras ``.weights.h5``.

    keras-v4d convert-weights CHECKPOINT.pth.tar OUT.weights.h5 --arch V4DResNet50

or ``convert_official(checkpoint, arch="V4DResNet50")`` from Python.

The layout the official code writes (the V4D release's ``i3res.py`` and ``main.py``): a dict with
``state_dict`` (beside ``epoch``,
``arch``, ``best_prec1``); backbone keys ``module.base_model.<name>`` (``module.`` from
``nn.DataParallel``), classifier ``module.new_fc``. Each stage ``layerN`` is one ``nn.Sequential``
in which a 4D module (``R4D``, its conv under ``tsa``) sits *right after* the residual block it
follows, so the residual blocks after it shift by one index: V4D-R50's ``layer2`` is ``0, 1,
2.tsa, 3, 4, 5.tsa`` (residual blocks 0–3, 4D blocks after blocks 1 and 3).

The converter reads that structure, it does not guess from shapes: inside each ``layerN`` it counts
the residual blocks (modules with ``conv1``) in index order, so ``layer2.3`` is residual block 2,
and maps each ``tsa`` to the model's 4D block after the residual block before it (``res3_v4d1``).
Conv3d weights ``(out, in, t, h, w)`` become Keras ``(t, h, w, in, out)``; BN weight, bias and
running statistics are copied (``num_batches_tracked`` is ignored). A 4D weight is either the fast
form ``(C, C, 3, 3, 1)`` (``Conv3d`` over ``(U, T, H·W)``) or the loop form, the official
``Conv4d``'s single weight ``(k_u, C_out, C_in, k_t, k_h, k_w)``.

Everything that does not fit is an error naming the checkpoint key or the model's block: a 4D module
the model lacks or a model 4D block without a module, another depth (blocks per stage, basic vs
bottleneck), a missing or misshapen tensor, a key no layer uses. The file is read with
``torch.load(weights_only=True)``; torch is only needed here (the ``torch`` extra).
"""

import re

from keras_v4d.layers import Block4D, Residual4D
from keras_v4d.models import BUILDERS
from keras_v4d.weights.torch_layout import group_by_module, load_resnet_modules

PREFIXES = ("module.base_model.", "base_model.", "module.", "")
CLASSIFIER_PREFIXES = ("module.new_fc.", "new_fc.", "module.fc.", "fc.")
IGNORED_PARAMETERS = ("num_batches_tracked",)
_STAGE_ENTRY = re.compile(r"^layer(\d+)\.(\d+)(?:\.(.+))?$")
_MODEL_BLOCK = re.compile(r"^res(\d)_block(\d+)_1_conv$")
_MODEL_4D = re.compile(r"^res(\d)_v4d(\d+)$")
_DEPTHS = {("bottleneck", (3, 4, 6, 3)): "ResNet50", ("bottleneck", (3, 4, 23, 3)): "ResNet101",
           ("basic", (2, 2, 2, 2)): "ResNet18", ("basic", (3, 4, 6, 3)): "ResNet34"}


class OfficialLayout:
    """What an official ``state_dict`` holds, read from its module structure.

    Attributes: ``prefix`` (``module.base_model.`` …); ``modules`` (``{module name: {parameter:
    array}}`` of the backbone, 4D modules excluded); ``stages`` (``{layer number: [(kind, index,
    block)]}`` in index order, kind ``"basic"``/``"bottleneck"`` for residual block number
    ``block``, ``"4d"`` for a 4D module after residual block ``block``); ``renumbering``
    (``{(layer, index): residual block}``); ``blocks4d`` (``{(layer, block): module name}``).
    """

    def __init__(self, state_dict):
        prefix = next((p for p in PREFIXES if any(k.startswith(p + "conv1.") for k in state_dict)), None)
        if prefix is None:
            raise ValueError("not a V4D/ResNet checkpoint: no 'conv1.weight' key under any of "
                             f"{[p for p in PREFIXES if p]} (first keys: {list(state_dict)[:5]})")
        self.prefix = prefix
        backbone = {k: v for k, v in state_dict.items()
                    if k.startswith(prefix) and not k.startswith(CLASSIFIER_PREFIXES)
                    and k.rpartition(".")[2] not in IGNORED_PARAMETERS}
        modules = group_by_module(backbone, prefix)
        entries = {}  # (layer, index) -> {submodule: [keys]}
        for module in modules:
            match = _STAGE_ENTRY.match(module)
            if match:
                submodule = (match.group(3) or "").split(".")[0]
                (entries.setdefault((int(match.group(1)), int(match.group(2))), {})
                 .setdefault(submodule, []).append(module))
        self.stages, self.renumbering, self.blocks4d = {}, {}, {}
        for layer, index in sorted(entries):
            parts = entries[(layer, index)]
            listing = self.stages.setdefault(layer, [])
            blocks = [entry for entry in listing if entry[0] != "4d"]
            name = f"layer{layer}.{index}"
            if "tsa" in parts:
                tsa = f"{name}.tsa"
                if set(parts) != {"tsa"} or set(modules.get(tsa, {})) != {"weight"}:
                    keys = sorted(f"{prefix}{m}.{p}" for sub in parts.values() for m in sub for p in modules[m])
                    raise ValueError(f"checkpoint module '{prefix}{name}' is a 4D module (R4D) but holds {keys}; "
                                     f"the V4D 4D block has exactly one tensor, '{prefix}{tsa}.weight' (no bias)")
                if not blocks:
                    raise ValueError(f"checkpoint key '{prefix}{tsa}.weight': a 4D module before any residual "
                                     f"block of layer{layer}; V4D places it after a residual block")
                if listing[-1][0] == "4d":
                    raise ValueError(f"checkpoint key '{prefix}{tsa}.weight': a second 4D module after residual "
                                     f"block {blocks[-1][2]} of layer{layer} "
                                     f"('{prefix}{self.blocks4d[(layer, blocks[-1][2])]}"
                                     f".weight' is the first)")
                listing.append(("4d", index, blocks[-1][2]))
                self.blocks4d[(layer, blocks[-1][2])] = tsa
            elif "conv1" in parts:
                kind = "bottleneck" if "conv3" in parts else "basic"
                self.renumbering[(layer, index)] = len(blocks)
                listing.append((kind, index, len(blocks)))
            else:
                key = next(f"{prefix}{m}.{p}" for sub in parts.values() for m in sub for p in modules[m])
                raise ValueError(f"checkpoint key '{key}': module '{prefix}{name}' is neither a residual block "
                                 f"(conv1, bn1, …) nor a 4D module (tsa); not the V4D/ResNet layout")
        self.weights4d = {m: modules[m]["weight"] for m in self.blocks4d.values()}
        self.modules = {m: p for m, p in modules.items() if m not in self.weights4d}

    def blocks_per_stage(self):
        """Residual blocks in each ``layerN``, in order (``(2, 2, 2, 2)`` for ResNet18)."""
        return tuple(sum(1 for e in self.stages.get(layer, ()) if e[0] != "4d") for layer in sorted(self.stages))

    def block_kind(self):
        """``"basic"``, ``"bottleneck"`` or ``"mixed"``: the kind of the checkpoint's residual blocks."""
        kinds = {e[0] for entries in self.stages.values() for e in entries if e[0] != "4d"}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    def placement(self):
        """The 4D placement as a ``block4d_placement`` dict (``{"res3": (1, 3)}``)."""
        placement = {}
        for layer, block in sorted(self.blocks4d):
            placement.setdefault(f"res{layer + 1}", ())
            placement[f"res{layer + 1}"] += (block,)
        return placement

    def describe(self):
        """One line for error messages: the depth, the blocks per stage and where the 4D modules are."""
        depth = _DEPTHS.get((self.block_kind(), self.blocks_per_stage()), "an unknown ResNet")
        counts = "-".join(str(n) for n in self.blocks_per_stage())
        fours = ", ".join(f"{self.prefix}{m} (after res{layer + 1} block {block})"
                          for (layer, block), m in sorted(self.blocks4d.items())) or "none"
        return f"{depth} layout ({self.block_kind()} blocks {counts}), 4D modules: {fours}"

    def suggested_arch(self):
        """The builder this layout converts into (``"V4DResNet50"``, ``"I3DSlowResNet18"``, …), or ``None``."""
        depth = _DEPTHS.get((self.block_kind(), self.blocks_per_stage()))
        if depth not in ("ResNet18", "ResNet50"):
            return None
        return f"{'V4D' if self.blocks4d else 'I3DSlow'}{depth}"


def _model_structure(model):
    """``({keras stage number: [block kinds]}, {(torch layer, block): layer name})`` of ``model``."""
    names = {layer.name for layer in model.layers}
    stages = {}
    for name in sorted(names):
        match = _MODEL_BLOCK.match(name)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            stages.setdefault(stage, {})[block] = ("bottleneck" if f"res{stage}_block{block}_3_conv" in names
                                                   else "basic")
    blocks4d = {}
    for layer in model.layers:
        if isinstance(layer, Block4D) and not isinstance(layer, Residual4D):
            raise ValueError(f"model '{model.name}' has F4D blocks ('{layer.name}'); the official V4D checkpoints "
                             "hold V4D (Residual4D) blocks — convert into a V4D, TSN or I3D-S architecture")
        if isinstance(layer, Residual4D):
            match = _MODEL_4D.match(layer.name)
            if not match:
                raise ValueError(f"model '{model.name}': 4D block '{layer.name}' is not named res<stage>_v4d<block>; "
                                 "cannot tell which residual block it follows")
            blocks4d[(int(match.group(1)) - 1, int(match.group(2)))] = layer
    return {s: [k for _, k in sorted(b.items())] for s, b in stages.items()}, blocks4d


def kernel_4d(weight, kernel_size, key="the 4D weight"):
    """An official 4D weight (fast or loop form) → Keras Conv4D kernel ``(k_u, k_t, k_h, k_w, in, out)``."""
    if weight.ndim == 5:  # fast: (out, in, k_u, k_t, k_hw), a Conv3d over (U, T, H·W)
        if weight.shape[4] != 1 or tuple(kernel_size[2:]) != (1, 1):
            raise ValueError(f"'{key}' {tuple(weight.shape)} is the fast form (a (k_u, k_t, 1) Conv3d over "
                             f"(U, T, H·W)), which only expresses 4D kernels (k_u, k_t, 1, 1); the model's is "
                             f"{tuple(kernel_size)}")
        out, cin, ku, kt, _ = weight.shape
        return weight.transpose(2, 3, 4, 1, 0).reshape(ku, kt, 1, 1, cin, out)
    if weight.ndim == 6:  # loop: the official Conv4d's (k_u, out, in, k_t, k_h, k_w)
        return weight.transpose(0, 3, 4, 5, 2, 1)
    raise ValueError(f"'{key}' has shape {tuple(weight.shape)}; a 4D weight has 5 (fast form (C, C, 3, 3, 1)) or "
                     "6 (loop form (k_u, C, C, k_t, k_h, k_w)) dimensions")


def _check_depth(model, layout):
    model_stages, _ = _model_structure(model)
    for layer in sorted(set(layout.stages) | {s - 1 for s in model_stages}):
        ours = model_stages.get(layer + 1, [])
        theirs = [e[0] for e in layout.stages.get(layer, []) if e[0] != "4d"]
        if ours != theirs:
            what = (f"{len(theirs)} {'/'.join(sorted(set(theirs))) or 'no'} residual block(s)" if theirs
                    else "no residual blocks")
            hint = layout.suggested_arch()
            raise ValueError(
                f"the checkpoint's '{layout.prefix}layer{layer}' has {what}, but model '{model.name}' has "
                f"{len(ours)} {'/'.join(sorted(set(ours))) or 'no'} block(s) in res{layer + 1}: the checkpoint is of "
                f"another depth ({layout.describe()})" + (f"; convert it into {hint}" if hint else ""))


def _load_4d(model, layout):
    _, model4d = _model_structure(model)
    for (layer, block), module in sorted(layout.blocks4d.items()):
        if (layer, block) not in model4d:
            raise ValueError(
                f"checkpoint key '{layout.prefix}{module}.weight' is a 4D module after residual block {block} of "
                f"res{layer + 1}, but model '{model.name}' has no 4D block there (its 4D blocks: "
                f"{[b.name for b in model4d.values()] or 'none'}); the checkpoint's placement is "
                f"block4d_placement={layout.placement()}" +
                (f"; convert it into {layout.suggested_arch()}" if layout.suggested_arch() and not model4d else ""))
    for (layer, block), target in sorted(model4d.items()):
        if (layer, block) not in layout.blocks4d:
            after = [e[1] for e in layout.stages.get(layer, []) if e[0] != "4d" and e[2] == block]
            where = f"'{layout.prefix}layer{layer}.{after[0] + 1}.tsa'" if after else f"layer{layer}"
            raise ValueError(
                f"model '{model.name}' has the 4D block '{target.name}' after residual block {block} of "
                f"res{layer + 1}, but the checkpoint has no 4D module there (expected {where}); its 4D modules: "
                f"{[f'{layout.prefix}{m}' for _, m in sorted(layout.blocks4d.items())] or 'none'}. A 4D module is "
                "missing, or the checkpoint is of another architecture")
        module = layout.blocks4d[(layer, block)]
        key = f"{layout.prefix}{module}.weight"
        kernel = kernel_4d(layout.weights4d[module], target.kernel_size, key)
        if kernel.shape != tuple(target.conv.kernel.shape):
            raise ValueError(f"layer '{target.name}': 4D kernel {tuple(target.conv.kernel.shape)}, but '{key}' "
                             f"{tuple(layout.weights4d[module].shape)} gives {kernel.shape}")
        target.conv.kernel.assign(kernel.astype("float32"))


def _load_classifier(model, state_dict):
    head = next((layer for layer in model.layers if layer.name == "predictions"), None)
    prefix = next((p for p in CLASSIFIER_PREFIXES if any(k.startswith(p) for k in state_dict)), None)
    if head is None:
        return
    classifier = group_by_module(state_dict, prefix)[""] if prefix else {}
    if "weight" not in classifier or "bias" not in classifier:
        raise ValueError(f"the checkpoint has no classifier ({[p + 'weight' for p in CLASSIFIER_PREFIXES[:2]]} and "
                         "'bias'); build the model with include_top=False to load the backbone only")
    weight = classifier["weight"]
    if weight.shape != tuple(head.kernel.shape)[::-1]:
        raise ValueError(f"classifier: the model has {head.kernel.shape[1]} classes × {head.kernel.shape[0]} "
                         f"features, '{prefix}weight' {weight.shape[0]} × {weight.shape[1]}")
    head.kernel.assign(weight.T.astype("float32"))
    head.bias.assign(classifier["bias"].astype("float32"))


def load_official_state(model, state_dict):
    """Loads an official-layout ``state_dict`` into ``model`` (a model of this package); see the
    module docstring for what is read and checked. Raises ``ValueError`` naming the key or block."""
    layout = OfficialLayout(state_dict)
    _check_depth(model, layout)
    _load_4d(model, layout)
    leftovers = load_resnet_modules(model, layout.modules, block_renumbering=layout.renumbering,
                                    key_prefix=layout.prefix)
    if leftovers:
        keys = [f"{layout.prefix}{m}.{p}" for m in leftovers for p in layout.modules[m]]
        raise ValueError(f"{len(keys)} checkpoint key(s) fit no layer of model '{model.name}', e.g. {keys[:3]}")
    _load_classifier(model, state_dict)
    return model


def read_checkpoint(checkpoint):
    """``(state_dict, metadata)`` of an official ``.pth.tar`` (``metadata``: ``epoch``, ``arch``,
    ``best_prec1`` where present), read with ``torch.load(weights_only=True)``."""
    import torch

    try:
        loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}") from None
    except Exception as error:  # noqa: BLE001  (pickle/zip errors of a damaged or foreign file)
        raise ValueError(f"{checkpoint}: cannot read it as a PyTorch checkpoint "
                         f"({type(error).__name__}: {error})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{checkpoint}: expected a dict with a 'state_dict', got {type(loaded).__name__}")
    state_dict = loaded.get("state_dict", loaded)
    if not isinstance(state_dict, dict) or not all(hasattr(v, "shape") for v in state_dict.values()):
        raise ValueError(f"{checkpoint}: its 'state_dict' is not a dict of tensors")
    metadata = {k: loaded[k] for k in ("epoch", "arch", "best_prec1") if k in loaded and "state_dict" in loaded}
    return state_dict, metadata


def convert_official(checkpoint, arch="V4DResNet50", classes=None, **builder_args):
    """Reads an official ``.pth.tar`` and returns the Keras model of builder ``arch`` with its weights.

    ``classes`` defaults to the checkpoint's classifier size; ``builder_args`` go to the builder
    (e.g. ``frames_per_unit=8``). Errors name the checkpoint, and the key or block at fault.
    """
    if arch not in BUILDERS:
        by_model_name = {builder.lower().replace("resnet", "_resnet").replace("i3dslow", "i3d_slow"): builder
                         for builder in BUILDERS}
        hint = f" (the builder of model '{arch}' is {by_model_name[arch]})" if arch in by_model_name else ""
        raise ValueError(f"the architecture must be a builder name, one of {sorted(BUILDERS)}; got {arch!r}{hint}")
    state_dict, metadata = read_checkpoint(checkpoint)
    if classes is None:
        fc = [v for k, v in state_dict.items() if k.startswith(CLASSIFIER_PREFIXES) and k.endswith("weight")]
        classes = int(fc[0].shape[0]) if fc else 400
    model = BUILDERS[arch](classes=classes, **builder_args)
    try:
        return load_official_state(model, state_dict)
    except ValueError as error:
        saved_arch = f" (saved with arch {metadata['arch']!r})" if "arch" in metadata else ""
        raise ValueError(f"{checkpoint}{saved_arch}: {error}") from None
