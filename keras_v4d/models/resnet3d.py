"""I3D-Slow ResNet18/50 backbones (V4D Table 1) with optional V4D or F4D blocks.

Every model takes ``(batch, U, T, H, W, 3)`` float32 RGB (normalised by the caller) and folds the
units into the batch for the 3D layers; the 4D blocks see ``(batch, U, T, H, W, C)``.
"""

import logging

import keras

from keras_v4d.layers import F4DBlock, FoldUnits, Residual4D, SpatialMaxPooling, SymmetricZeroPadding3D, UnfoldUnits
from keras_v4d.layers._checks import normalize_tuple
from keras_v4d.layers.normalization import batch_norm
from keras_v4d.models.pretrained import load_pretrained_weights
from keras_v4d.models.video_model import VideoModel
from keras_v4d.records.presets import resolve_weights
from keras_v4d.records.weights_file import WeightsMismatchError

STAGES = ("res2", "res3", "res4", "res5")
STAGE_FILTERS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)
# Per depth: residual block kind, blocks per stage, temporal kernel of each stage (V4D Table 1).
ARCHITECTURES = {
    18: dict(block="basic", repeats=(2, 2, 2, 2), temporal_kernels=(1, 1, 3, 3)),
    50: dict(block="bottleneck", repeats=(3, 4, 6, 3), temporal_kernels=(1, 1, 3, 3)),
}
# 4D block placement: stage -> 0-based indices of the residual blocks a 4D block follows.
PLACEMENTS = {
    (18, "code"): {"res3": (1,), "res4": (1,)},
    (18, "paper"): {"res3": (1,), "res4": (1,)},
    (50, "code"): {"res3": (1, 3)},
    (50, "paper"): {"res3": (1, 3), "res4": (1, 3, 5)},
}
POOLINGS = (None, "avg", "max")
MIN_SPATIAL_SIZE = 32
DEFAULT_CLASSES = 400  # Kinetics-400, as keras.applications' 1000 for ImageNet

logger = logging.getLogger(__name__)


def _every_other_block(depth):
    """F4D's best ablation placement, "conv2–conv5": every other block of every stage."""
    return {stage: tuple(range(1, n, 2)) for stage, n in zip(STAGES, ARCHITECTURES[depth]["repeats"])}


def resolve_placement(depth, placement):
    """Returns ``{stage: block indices}`` from a preset name or an explicit mapping."""
    if isinstance(placement, str):
        if placement == "res2-res5":
            return _every_other_block(depth)
        if (depth, placement) not in PLACEMENTS:
            raise ValueError(
                f"`block4d_placement` must be 'code', 'paper', 'res2-res5' or a dict "
                f"{{stage: block indices}}, got {placement!r}.")
        return PLACEMENTS[(depth, placement)]
    repeats = dict(zip(STAGES, ARCHITECTURES[depth]["repeats"]))
    resolved = {}
    for stage, indices in dict(placement).items():
        if stage not in repeats:
            raise ValueError(f"`block4d_placement`: unknown stage {stage!r}; stages are {STAGES}.")
        indices = tuple(int(i) for i in indices)
        bad = [i for i in indices if not 0 <= i < repeats[stage]]
        if bad:
            raise ValueError(
                f"`block4d_placement`: {stage} has blocks 0..{repeats[stage] - 1}, got {bad}.")
        resolved[stage] = indices
    return resolved


def _conv_bn(x, filters, kernel, strides, name, relu=True):
    """Conv3D (no bias) → BN (→ ReLU) on ``(N, T, H, W, C)``.

    A strided conv gets explicit symmetric zero padding and 'valid' (Keras 'same' pads (0, 1)
    on even sizes and would not match PyTorch numerics); unstrided odd kernels use 'same'.
    The padding is a concatenation with zeros, not a ``Pad`` op (see ``SymmetricZeroPadding3D``).
    """
    if strides != (1, 1, 1):
        x = SymmetricZeroPadding3D(tuple(k // 2 for k in kernel), name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    x = keras.layers.Conv3D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                            name=f"{name}_conv")(x)
    x = batch_norm(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _shortcut(x, filters, stride, name):
    if stride == 1 and x.shape[-1] == filters:
        return x
    return _conv_bn(x, filters, (1, 1, 1), (1, stride, stride), f"{name}_shortcut", relu=False)


def basic_block(x, filters, stride, temporal_kernel, name):
    """Two ``kt×3×3`` convs; the first carries the spatial stride. Output channels: ``filters``."""
    shortcut = _shortcut(x, filters, stride, name)
    kernel = (temporal_kernel, 3, 3)
    x = _conv_bn(x, filters, kernel, (1, stride, stride), f"{name}_1")
    x = _conv_bn(x, filters, kernel, (1, 1, 1), f"{name}_2", relu=False)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def bottleneck_block(x, filters, stride, temporal_kernel, name, expansion=4, stride_in_1x1=False):
    """``kt×1×1 → 1×3×3 (stride) → 1×1×1``; output channels ``expansion·filters``.

    ``stride_in_1x1``: the original ResNet's (and keras.applications') stride in the first conv.
    """
    shortcut = _shortcut(x, expansion * filters, stride, name)
    first, second = ((1, stride, stride), (1, 1, 1)) if stride_in_1x1 else ((1, 1, 1), (1, stride, stride))
    x = _conv_bn(x, filters, (temporal_kernel, 1, 1), first, f"{name}_1")
    x = _conv_bn(x, filters, (1, 3, 3), second, f"{name}_2")
    x = _conv_bn(x, expansion * filters, (1, 1, 1), (1, 1, 1), f"{name}_3", relu=False)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def stem(x, filters=64):
    """``1×7×7, 64, stride (1,2,2)`` → BN → ReLU → max-pool ``1×3×3`` stride (1,2,2)."""
    x = _conv_bn(x, filters, (1, 7, 7), (1, 2, 2), "stem")
    # Zero padding before the max-pool equals PyTorch's -inf padding: inputs are post-ReLU (≥ 0).
    x = keras.layers.ZeroPadding3D((0, 1, 1), name="stem_pool_pad")(x)
    return SpatialMaxPooling(3, 2, name="stem_pool")(x)  # = MaxPooling3D((1,3,3), (1,2,2)); TFLite-friendly


def _scaled(filters, width):
    return max(8, int(round(filters * width)))


def _check_input_shape(input_shape, num_units, frames_per_unit):
    if input_shape is None:
        return (num_units, frames_per_unit, None, None, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 5:
        raise ValueError(
            f"`input_shape` must be (U, T, H, W, 3) without the batch axis, got {input_shape} "
            f"({len(input_shape)} entries).")
    if input_shape[-1] != 3:
        raise ValueError(f"`input_shape` must end in 3 RGB channels, got {input_shape}.")
    for axis, name in ((0, "U"), (1, "T")):
        if input_shape[axis] is not None and input_shape[axis] < 1:
            raise ValueError(f"`input_shape`: {name} must be >= 1 or None, got {input_shape}.")
    for axis, name in ((2, "H"), (3, "W")):
        if input_shape[axis] is not None and input_shape[axis] < MIN_SPATIAL_SIZE:
            raise ValueError(
                f"`input_shape`: {name} must be >= {MIN_SPATIAL_SIZE} or None, got {input_shape}.")
    for value, axis, name in ((num_units, 0, "num_units"), (frames_per_unit, 1, "frames_per_unit")):
        if value is not None and input_shape[axis] != value:
            raise ValueError(f"`{name}`={value} disagrees with `input_shape`={input_shape}.")
    return input_shape


def build_resnet3d(
    depth,
    block4d=None,
    builder=None,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=None,
    classifier_activation="softmax",
    num_units=None,
    frames_per_unit=None,
    block4d_placement="code",
    kernel_size=(3, 3, 1, 1),
    norm="none",
    dropout_rate=0.5,
    block4d_dropout_rate=0.2,
    attention=("temporal", "channel", "spatiotemporal"),
    width=1.0,
    stride_in_1x1=False,
    batch_size=None,
    name=None,
):
    """Builds an I3D-Slow ResNet, optionally with 4D blocks (``block4d`` = ``"v4d"``/``"f4d"``).

    Input ``(batch, U, T, H, W, 3)``. Output: ``(batch, classes)`` with ``include_top``;
    otherwise ``(batch, C)`` with ``pooling`` ``"avg"``/``"max"`` (over U, T, H, W), or the
    feature map ``(batch, U, T, H/32, W/32, C)`` with ``pooling=None``. ``width`` scales every
    layer's channels (1.0 = the papers' networks; the demo trains at 0.25 to fit 2 CPU cores).
    ``batch_size`` fixes the batch axis of the input (``None``: any).

    The network is composed of the parts Algorithm 1 needs (``VideoModel.parts()``): the 3D part
    before the first 4D block, each 4D block with the 3D layers up to the next one, and the head.
    ``weights``: ``None``, a registered tag or a ``.weights.h5`` path, of this model or of another of
    the family of the same depth (``models.pretrained``: 4D blocks the weights lack start at the
    identity; with ``classes`` other than the weights' the classifier starts new; with
    ``include_top=False`` the weights' classifier is left out; what was done is logged and kept as
    ``model.weights_report``). ``classes``: default the weights', else 400.
    """
    _check_arguments(depth, block4d, pooling, dropout_rate, width)
    weights_path, weights_classes, weights_builder = resolve_weights(weights)
    if classes is None:
        classes = weights_classes or DEFAULT_CLASSES
    if include_top and (not isinstance(classes, int) or classes < 1):
        raise ValueError(f"`classes` must be a positive int, got {classes!r}.")
    placement = resolve_placement(depth, block4d_placement) if block4d else {}
    kernel_size = normalize_tuple(kernel_size, 4, "kernel_size", name, odd=True)
    video = _video_input(input_tensor, input_shape, num_units, frames_per_unit, batch_size)
    block_options = dict(kernel_size=kernel_size, norm=norm, dropout_rate=block4d_dropout_rate, attention=attention)
    boundaries = _backbone(video, depth, width, stride_in_1x1, block4d, placement, block_options)
    x = _head(boundaries[-1], include_top, pooling, classes, classifier_activation, dropout_rate)

    inputs = keras.utils.get_source_inputs(video) if input_tensor is not None else video
    config = dict(depth=depth, block4d=block4d, builder=builder, include_top=include_top,
                  input_shape=tuple(video.shape[1:]), pooling=pooling, classes=classes,
                  classifier_activation=keras.activations.serialize(keras.activations.get(classifier_activation)),
                  block4d_placement={k: list(v) for k, v in placement.items()} if block4d else block4d_placement,
                  kernel_size=list(kernel_size), norm=norm, dropout_rate=dropout_rate,
                  block4d_dropout_rate=block4d_dropout_rate, attention=list(attention), width=width,
                  stride_in_1x1=stride_in_1x1, batch_size=batch_size, name=name)
    model = ResNet3DModel(inputs, x, boundaries=boundaries, has_head=include_top or pooling is not None,
                          builder_config=config, name=name)
    if weights_path is not None:
        _load_weights(model, weights, weights_path, weights_builder,
                      new_classifier=include_top and weights_classes not in (None, classes))
    return model


def _load_weights(model, weights, path, weights_builder, new_classifier):
    """``load_pretrained_weights``, its report logged (a warning where anything was newly initialised
    or left unused) and kept as ``model.weights_report``."""
    try:
        report = load_pretrained_weights(model, path, new_classifier=new_classifier)
    except WeightsMismatchError as error:
        if weights_builder and weights_builder != model.builder_config["builder"]:
            raise WeightsMismatchError(f"{error} The weights {weights!r} belong to {weights_builder}.") from None
        raise
    level = logging.WARNING if report.initialized or report.unused else logging.INFO
    for line in report.lines():
        logger.log(level, "%s", line)
    model.weights_report = report


def _check_arguments(depth, block4d, pooling, dropout_rate, width):
    if depth not in ARCHITECTURES:
        raise ValueError(f"`depth` must be one of {sorted(ARCHITECTURES)}, got {depth!r}.")
    if block4d not in (None, "v4d", "f4d"):
        raise ValueError(f"`block4d` must be None, 'v4d' or 'f4d', got {block4d!r}.")
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}, got {pooling!r}.")
    if not 0 <= dropout_rate < 1:
        raise ValueError(f"`dropout_rate` must be in [0, 1), got {dropout_rate!r}.")
    if not (isinstance(width, (int, float)) and 0 < width <= 4):
        raise ValueError(f"`width` must be a number in (0, 4], got {width!r}.")


def _video_input(input_tensor, input_shape, num_units, frames_per_unit, batch_size):
    """The model's input ``(batch, U, T, H, W, 3)``: a new ``keras.Input`` or ``input_tensor``."""
    if input_tensor is None:
        return keras.Input(shape=_check_input_shape(input_shape, num_units, frames_per_unit), batch_size=batch_size,
                           name="video")
    if len(input_tensor.shape) != 6 or input_tensor.shape[-1] != 3:
        raise ValueError(f"`input_tensor` must have shape (batch, U, T, H, W, 3), got {tuple(input_tensor.shape)}.")
    return input_tensor if keras.backend.is_keras_tensor(input_tensor) else keras.Input(tensor=input_tensor)


def _backbone(video, depth, width, stride_in_1x1, block4d, placement, block_options):
    """The stem and the four stages with the 4D blocks after the ``placement``'s residual blocks.

    Returns the parts' boundaries (V4D §3.4, Algorithm 1): the input, each 4D block's input and
    output, and the feature map ``(B, U, T, h, w, C)`` last. The 3D layers work on folded units;
    each boundary is an unfolded 6-D tensor. Every ``UnfoldUnits`` reads U from its own part's 6-D
    input, so each part is a one-input model.
    """
    arch = ARCHITECTURES[depth]
    if arch["block"] == "basic":
        block_fn = basic_block
    else:
        def block_fn(*args):
            return bottleneck_block(*args, stride_in_1x1=stride_in_1x1)
    boundaries, reference = [video], video
    x = FoldUnits(name="fold_units")(video)
    x = stem(x, _scaled(64, width))
    for stage, filters, stride, repeats, temporal_kernel in zip(
            STAGES, STAGE_FILTERS, STAGE_STRIDES, arch["repeats"], arch["temporal_kernels"]):
        filters = _scaled(filters, width)
        for index in range(repeats):
            x = block_fn(x, filters, stride if index == 0 else 1, temporal_kernel, f"{stage}_block{index}")
            if index in placement.get(stage, ()):
                block_name = f"{stage}_{block4d}{index}"
                features = UnfoldUnits(name=f"{block_name}_unfold")([x, reference])
                reference = _block4d(features, block4d, block_name, **block_options)
                boundaries += [features, reference]
                x = FoldUnits(name=f"{block_name}_fold")(reference)
    boundaries.append(UnfoldUnits(name="features_unfold")([x, reference]))  # (B, U, T, h, w, C)
    return boundaries


def _head(features, include_top, pooling, classes, classifier_activation, dropout_rate):
    """Pooling over T, H, W then over U (TSN's score averaging before the linear layer) and the classifier."""
    if not (include_top or pooling is not None):
        return features
    pool3d, pool1d = ((keras.layers.GlobalMaxPooling3D, keras.layers.GlobalMaxPooling1D)
                      if pooling == "max" and not include_top else
                      (keras.layers.GlobalAveragePooling3D, keras.layers.GlobalAveragePooling1D))
    x = FoldUnits(name="head_fold")(features)
    x = pool3d(name="pool_thw")(x)  # (B·U, C)
    x = UnfoldUnits(name="unfold_units")([x, features])  # (B, U, C)
    x = pool1d(name="pool_units")(x)  # averaging over units before the linear layer == TSN's score averaging
    if include_top:
        x = keras.layers.Dropout(dropout_rate, name="head_dropout")(x)
        # float32 scores under a mixed-precision policy too (the loss and the top-k metric need them)
        x = keras.layers.Dense(classes, activation=classifier_activation, dtype="float32", name="predictions")(x)
    return x


def _block4d(x, kind, name, kernel_size, norm, dropout_rate, attention):
    """A V4D or F4D block on ``(B, U, T, H, W, C)``."""
    if kind == "v4d":
        return Residual4D(kernel_size, norm=norm, name=name)(x)
    return F4DBlock(kernel_size, dropout_rate=dropout_rate, attention=attention, name=name)(x)


@keras.saving.register_keras_serializable(package="keras_v4d")
class ResNet3DModel(VideoModel):
    """A model of ``build_resnet3d``: saved as its builder arguments, rebuilt by the builder."""

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return build_resnet3d(**config)
