"""The network rebuilt on rank-4 tensors and 2D convolutions, for TFLite (LiteRT) and its delegates.

LiteRT's XNNPACK and GPU delegates take no tensor of rank above 4 and no ``CONV_3D``, and its
quantiser leaves ``CONV_3D`` in float, so a file of the Keras graph (6-D video, Conv3D) runs every
layer on reference kernels. None of these networks needs a 3D kernel: every 3D and 4D convolution
is a 2D one on the frames (``keras_v4d.export.frame_convolutions``).

``lower(model, U, T, S)`` walks a built model's layers (its functional graph, public API only) and
maps each to TensorFlow ops on rank-≤4 tensors with the layer's own weights, frozen as constants: a
``tf.function`` from one video's frames, uint8 ``(U·T, S, S, 3)`` unit-major (unit 0's T frames,
then unit 1's, …), to ``{"probabilities": (1, classes)}`` — ImageNet normalisation inside, a softmax
added for a logits model, as the SavedModel's ``serving_default``. Batch 1: 5-D and 6-D activations
live as frames ``(U·T, H, W, C)``, so folding and unfolding units cost nothing.

One rule per layer class: ``LOWERING_RULES`` maps a layer type to ``rule(layer, *values) →
LoweredValue``, looked up along the layer's MRO (``lower_layer``); a block's rule lowers its public
sublayers through the same table. ``@lowering_rule(MyLayer)`` adds one. A layer with no rule is a
``ValueError`` naming it.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_v4d.export.frame_convolutions import conv3d_frames, conv4d_frames, pad_time
from keras_v4d.layers import (
    ChannelAttention,
    Conv4D,
    F4DBlock,
    Factorized4D,
    FoldUnits,
    Residual4D,
    SpatialMaxPooling,
    SpatioTemporalAttention,
    SymmetricZeroPadding3D,
    TemporalAttention,
    UnfoldUnits,
)
from keras_v4d.models.preprocessing import preprocess_input
from keras_v4d.models.video_model import ends_in_softmax

LOWERING_RULES = {}
"""``{layer class: rule}``: how ``lower`` rebuilds each layer on rank-4 tensors; ``lowering_rule`` adds
one, ``lower_layer`` looks a layer's class (or its nearest base) up."""


class LoweredValue:
    """A lowered activation: ``tensor`` (rank ≤ 4) and the ``shape`` the Keras tensor has.

    Logical 5-D ``(N, T, H, W, C)`` and 6-D ``(1, U, T, H, W, C)`` activations are held as frames
    ``(N·T, H, W, C)``; lower ranks as they are.
    """

    def __init__(self, tensor, shape):
        self.tensor, self.shape = tensor, tuple(int(n) for n in shape)

    @property
    def frames(self):
        """The tensor of a 5-D or 6-D activation, its frames ``(N·T, H, W, C)``; a ``ValueError`` otherwise."""
        if len(self.shape) < 5:
            raise ValueError(f"expected a video activation, got shape {self.shape}")
        return self.tensor

    def units_view(self):
        """``(N, T, H, W, C)`` of a 5-D value or ``(U, …)`` of a 6-D one: ``(N, T, H, W, C)``."""
        shape = self.shape if len(self.shape) == 5 else self.shape[1:]
        if len(self.shape) == 6 and self.shape[0] != 1:
            raise ValueError(f"the lowering takes one video (batch 1), got shape {self.shape}")
        return shape

    def like(self, frames, channels=None):
        """A value of this video shape with new frames (and ``channels``)."""
        return LoweredValue(frames, self.shape[:-1] + ((channels if channels is not None else self.shape[-1]),))

    def mapped(self, function):
        """``function`` of the tensor, the shape kept."""
        return LoweredValue(function(self.tensor), self.shape)


def lowering_rule(*layer_types):
    """Registers the decorated ``rule(layer, *values) → LoweredValue`` for ``layer_types``."""
    def register(rule):
        for layer_type in layer_types:
            LOWERING_RULES[layer_type] = rule
        return rule

    return register


def lower_layer(layer, *values):
    """``layer`` on lowered values, by the rule of its class or of the nearest base class that has one."""
    for layer_type in type(layer).__mro__:
        if layer_type in LOWERING_RULES:
            return LOWERING_RULES[layer_type](layer, *values)
    raise ValueError(f"the TFLite lowering has no rank-4 form of layer {layer.name!r} ({type(layer).__name__})")


def _constant(weight):
    """The weight's value now, as a constant of the graph being traced (read eagerly: ``tf.init_scope``)."""
    with tf.init_scope():
        value = np.asarray(keras.ops.convert_to_numpy(weight), np.float32)
    return tf.constant(value)


def _check_video(layer, value, rank):
    if len(value.shape) != rank:
        raise ValueError(f"{layer.name}: the lowering takes {type(layer).__name__} on {rank}-D input, got shape "
                         f"{value.shape}")


@lowering_rule(keras.layers.Dropout, keras.layers.SpatialDropout3D)
def _identity(layer, value):
    return value  # the identity at inference


def _folded(value):
    """``(N, U, …)`` → ``(N·U, …)``."""
    shape = (value.shape[0] * value.shape[1],) + value.shape[2:]
    if len(value.shape) >= 5:  # 6-D → 5-D: the same frames
        return LoweredValue(value.tensor, shape)
    return LoweredValue(tf.reshape(value.tensor, shape), shape)


@lowering_rule(FoldUnits)
def _fold(layer, value):
    return _folded(value)


@lowering_rule(UnfoldUnits)
def _unfold(layer, value, reference):
    shape = (reference.shape[0], reference.shape[1]) + value.shape[1:]
    if len(shape) >= 6:  # 5-D → 6-D: the same frames
        return LoweredValue(value.tensor, shape)
    return LoweredValue(tf.reshape(value.tensor, shape), shape)


@lowering_rule(keras.layers.Add)
def _add(layer, *values):
    return LoweredValue(sum(value.tensor for value in values[1:]) + values[0].tensor, values[0].shape)


@lowering_rule(keras.layers.ReLU)
def _relu_layer(layer, value):
    if layer.max_value is not None or layer.negative_slope or layer.threshold:
        raise ValueError(f"{layer.name}: the lowering takes a plain ReLU")
    return value.mapped(tf.nn.relu)


@lowering_rule(keras.layers.Activation)
def _activation(layer, value):
    return value.mapped(layer.activation)


@lowering_rule(keras.layers.BatchNormalization)
def _batch_norm(layer, value):
    """Inference batch normalisation over the last axis: ``x · scale + shift``."""
    if layer.axis not in (-1, len(value.shape) - 1):
        raise ValueError(f"{layer.name}: the lowering takes batch normalisation over the last axis")
    scale = tf.math.rsqrt(_constant(layer.moving_variance) + layer.epsilon)
    if layer.scale:
        scale = scale * _constant(layer.gamma)
    shift = -_constant(layer.moving_mean) * scale
    if layer.center:
        shift = shift + _constant(layer.beta)
    return value.mapped(lambda x: x * scale + shift)


@lowering_rule(keras.layers.Dense)
def _dense(layer, value):
    if len(value.shape) != 2:
        raise ValueError(f"{layer.name}: the lowering takes a Dense layer on (batch, features)")
    y = tf.matmul(value.tensor, _constant(layer.kernel))
    if layer.use_bias:
        y = y + _constant(layer.bias)
    return LoweredValue(layer.activation(y), value.shape[:-1] + (layer.units,))


@lowering_rule(keras.layers.Conv1D)
def _conv1d(layer, value):
    """A Conv1D on ``(N, L, C)`` as a Conv2D ``(k, 1)`` over ``(N, L, 1, C)``."""
    _check_video(layer, value, 3)
    if layer.data_format != "channels_last" or layer.groups != 1 or layer.padding == "causal":
        raise ValueError(f"{layer.name}: the lowering takes channels-last, ungrouped, non-causal Conv1D")
    n, length, channels = value.shape
    y = tf.nn.conv2d(tf.reshape(value.tensor, (n, length, 1, channels)), _constant(layer.kernel)[:, None],
                     (1, layer.strides[0], 1, 1), layer.padding.upper(), dilations=(1, layer.dilation_rate[0], 1, 1))
    if layer.use_bias:
        y = y + _constant(layer.bias)
    shape = (n, int(y.shape[1]), layer.filters)
    return LoweredValue(tf.reshape(layer.activation(y), shape), shape)


@lowering_rule(keras.layers.Conv3D)
def _conv3d(layer, value):
    if layer.data_format != "channels_last" or layer.groups != 1:
        raise ValueError(f"{layer.name}: the lowering takes channels-last, ungrouped Conv3D")
    n, t = value.units_view()[:2]
    y, out_t = conv3d_frames(value.frames, n, t, _constant(layer.kernel), tuple(layer.strides), layer.padding,
                             tuple(layer.dilation_rate))
    if layer.use_bias:
        y = y + _constant(layer.bias)
    y = layer.activation(y)
    return LoweredValue(y, value.shape[:-4] + (out_t,) + tuple(y.shape[1:]))


@lowering_rule(Conv4D)
def _conv4d(layer, value):
    _check_video(layer, value, 6)
    u, t = value.units_view()[:2]
    y = conv4d_frames(value.frames, u, t, _constant(layer.kernel))
    if layer.bias is not None:
        y = y + _constant(layer.bias)
    return value.like(y, layer.filters)


def _zero_padding(pads, value):
    """``((t0, t1), (h0, h1), (w0, w1))`` zeros around a video value."""
    (t0, t1), (h0, h1), (w0, w1) = pads
    n, t = value.units_view()[:2]
    frames = pad_time(value.frames, n, t, t0, t1)
    if h0 or h1 or w0 or w1:
        frames = tf.pad(frames, ((0, 0), (h0, h1), (w0, w1), (0, 0)))
    return LoweredValue(frames, value.shape[:-4] + (t + t0 + t1,) + tuple(frames.shape[1:]))


@lowering_rule(SymmetricZeroPadding3D)
def _symmetric_zero_padding(layer, value):
    return _zero_padding([(p, p) for p in layer.padding], value)


@lowering_rule(keras.layers.ZeroPadding3D)
def _keras_zero_padding(layer, value):
    if layer.data_format != "channels_last":
        raise ValueError(f"{layer.name}: the lowering takes channels-last padding")
    return _zero_padding(layer.padding, value)


@lowering_rule(SpatialMaxPooling)
def _spatial_max_pooling(layer, value):
    frames = tf.nn.max_pool2d(value.frames, layer.pool_size, layer.strides, "VALID")
    return LoweredValue(frames, value.shape[:-3] + tuple(frames.shape[1:]))


@lowering_rule(keras.layers.GlobalAveragePooling3D, keras.layers.GlobalMaxPooling3D)
def _global_pooling_3d(layer, value):
    """Global average/max pooling over (T, H, W) of ``(N, T, H, W, C)`` → ``(N, C)``."""
    if getattr(layer, "keepdims", False) or len(value.shape) != 5:
        raise ValueError(f"{layer.name}: the lowering takes global pooling of 5-D input without keepdims")
    n, t, h, w, c = value.shape
    units = tf.reshape(value.frames, (n, t * h * w, c))
    reduce = tf.reduce_max if isinstance(layer, keras.layers.GlobalMaxPooling3D) else tf.reduce_mean
    return LoweredValue(reduce(units, axis=1), (n, c))


@lowering_rule(keras.layers.GlobalAveragePooling1D, keras.layers.GlobalMaxPooling1D)
def _global_pooling_1d(layer, value):
    if getattr(layer, "keepdims", False) or len(value.shape) != 3:
        raise ValueError(f"{layer.name}: the lowering takes global pooling of 3-D input without keepdims")
    reduce = tf.reduce_max if isinstance(layer, keras.layers.GlobalMaxPooling1D) else tf.reduce_mean
    return LoweredValue(reduce(value.tensor, axis=1), (value.shape[0], value.shape[2]))


@lowering_rule(Residual4D)
def _residual4d(layer, value):
    """``X + F4D(X)``, or the paper form ``X + ReLU(BN(F4D(X)))``."""
    branch = lower_layer(layer.conv, value)
    if layer.norm_layer is not None:
        branch = lower_layer(layer.norm_layer, branch).mapped(tf.nn.relu)
    return value.like(value.frames + branch.frames)


@lowering_rule(Factorized4D)
def _factorized4d(layer, value):
    """``Conv4D(u,1,h,w) → BN → ReLU → Conv4D(1,t,1,1)``."""
    x = lower_layer(layer.norm, lower_layer(layer.spatial_conv, value)).mapped(tf.nn.relu)
    return lower_layer(layer.temporal_conv, x)


@lowering_rule(F4DBlock)
def _f4d_block(layer, value):
    """``X + STA(CA(to3D(TA(Dropout(ReLU(BN(Factorized4D(X))))))))``."""
    x = lower_layer(layer.norm, lower_layer(layer.factorized, value)).mapped(tf.nn.relu)
    x = lower_layer(layer.dropout, x)
    if layer.temporal_attention is not None:
        x = lower_layer(layer.temporal_attention, x)
    x = _folded(x)  # CA and STA work per unit, on the 3D view
    for module in (layer.channel_attention, layer.spatiotemporal_attention):
        if module is not None:
            x = lower_layer(module, x)
    return value.like(value.frames + x.frames)


@lowering_rule(TemporalAttention)
def _temporal_attention(module, value):
    """F4D's TA (eq. 4–6) on one video: its 1-D convolutions over the ``U·T`` frame descriptors ``(1, U·T, 1)``."""
    _check_video(module, value, 6)
    value.units_view()  # refuses a batch of several videos
    frames = value.frames
    count = frames.shape[0]
    descriptor = (tf.reduce_mean(frames, axis=(1, 2, 3)) + tf.reduce_max(frames, axis=(1, 2, 3)))  # (U·T,)
    sequence = LoweredValue(tf.reshape(descriptor, (1, count, 1)), (1, count, 1))
    logits = sum(lower_layer(conv, sequence).tensor for conv in module.convs)
    attention = tf.reshape(tf.sigmoid(logits), (count, 1, 1, 1))
    return value.like(frames * attention + frames)


@lowering_rule(ChannelAttention)
def _channel_attention(module, value):
    """CBAM channel attention (F4D eq. 7–9) per clip: its MLP on the descriptors pooled over ``(T·H·W)``."""
    n, t, h, w, c = value.units_view()
    clips = tf.reshape(value.frames, (n, t * h * w, c))

    def mlp(pooled):
        return lower_layer(module.excite, lower_layer(module.squeeze, LoweredValue(pooled, (n, c)))).tensor

    attention = tf.sigmoid(mlp(tf.reduce_mean(clips, axis=1)) + mlp(tf.reduce_max(clips, axis=1)))[:, None, :]
    return value.like(tf.reshape(clips * attention + clips, value.frames.shape))


@lowering_rule(SpatioTemporalAttention)
def _spatiotemporal_attention(module, value):
    """F4D's STA (eq. 10–12): its dilated (1,3,3) and (3,1,1) Conv3Ds on the channel descriptors."""
    frames = value.frames
    descriptor = value.like(tf.concat([tf.reduce_mean(frames, axis=-1, keepdims=True),
                                       tf.reduce_max(frames, axis=-1, keepdims=True)], axis=-1), 2)
    spatial = descriptor.like(tf.nn.relu(sum(lower_layer(conv, descriptor).frames for conv in module.spatial_convs)),
                              1)
    logits = sum(lower_layer(conv, spatial).frames for conv in module.temporal_convs)
    return value.like(frames * tf.sigmoid(logits) + frames)


def _as_list(tensors):
    return list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]


def lowered_network(model, frames, num_units, frames_per_unit):
    """``model`` on one video's normalised frames ``(U·T, S, S, 3)`` float32, with tensors of rank ≤ 4:
    returns the output as the model gives it, 5-D/6-D outputs as frames ``(U·T', h, w, C)``."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError("the lowering takes a model with one input and one output")
    size = frames.shape[1:3]
    values = {id(model.inputs[0]): LoweredValue(frames, (1, num_units, frames_per_unit) + tuple(size) + (3,))}
    pending = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    while pending:
        remaining = []
        for layer in pending:
            inputs = _as_list(layer.input)
            if all(id(x) in values for x in inputs):
                values[id(layer.output)] = lower_layer(layer, *[values[id(x)] for x in inputs])
            else:
                remaining.append(layer)
        if len(remaining) == len(pending):
            raise ValueError(f"the lowering cannot order the layers {[layer.name for layer in remaining]}")
        pending = remaining
    return values[id(model.outputs[0])].tensor


def lower(model, num_units, frames_per_unit, spatial_size):
    """A ``tf.function`` of one video's uint8 frames ``(U·T, H, W, 3)`` (unit-major, RGB) →
    ``{"probabilities": …}``, equal to the model's answer on ``(1, U, T, H, W, 3)`` with every tensor of
    rank ≤ 4 and every convolution a Conv2D. ``spatial_size``: ``S`` (H = W) or ``(H, W)``. The weights are
    read when the function is traced (``get_concrete_function``) and frozen into it as constants."""
    height, width = (spatial_size, spatial_size) if isinstance(spatial_size, int) else tuple(spatial_size)
    for name, value in (("num_units", num_units), ("frames_per_unit", frames_per_unit), ("height", height),
                        ("width", width)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"the lowering needs a static shape: `{name}` must be a positive int, got {value!r}")
    count = num_units * frames_per_unit
    softmax = not ends_in_softmax(model)

    @tf.function(input_signature=[tf.TensorSpec((count, height, width, 3), tf.uint8, name="frames")],
                 autograph=False)
    def serve(frames):
        scores = lowered_network(model, preprocess_input(frames), num_units, frames_per_unit)
        if softmax:
            scores = tf.nn.softmax(scores, axis=-1)
        return {"probabilities": scores}

    return serve
