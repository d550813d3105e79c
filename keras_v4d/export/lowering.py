"""The network rebuilt on rank-4 tensors and 2D convolutions, for TFLite (LiteRT) and its delegates.

LiteRT's XNNPACK and GPU delegates take no tensor of rank above 4 and no ``CONV_3D``, and its
quantiser leaves ``CONV_3D`` in float, so a file of the Keras graph (6-D video, Conv3D) runs every
layer on reference kernels. None of these networks needs a 3D kernel:

- a Conv3D ``(1, k, k)`` is a Conv2D on the frames ``(N·T, H, W, C)`` (T folded into the batch);
- a Conv3D ``(k, 1, 1)`` is a Conv2D ``(k, 1)`` over ``(N, T, H·W, C)``;
- a Conv3D ``(k_t, k_h, k_w)`` with both extents (ResNet18's ``3×3×3`` in res4/res5) is a Conv2D
  ``(k_h, k_w)`` on the frames with the ``k_t`` time-shifted copies of the input stacked along the
  channels (zero 'same' padding in time as zero frames);
- V4D's fast 4D kernel ``(k_u, k_t, 1, 1)`` is a Conv2D ``(k_u, k_t)`` over ``(1, U, T·H·W, C)``
  with dilation ``H·W`` along the second axis: its taps step one frame, and its 'same' padding is
  whole zero frames; a 4D kernel with spatial extent stacks its ``k_u·k_t`` shifted copies as above.

``lower(model, U, T, S)`` walks a built model's layers (its functional graph, public API only) and
maps each to TensorFlow ops on rank-≤4 tensors with the layer's own weights, frozen as constants: a
``tf.function`` from one video's frames, uint8 ``(U·T, S, S, 3)`` unit-major (unit 0's T frames,
then unit 1's, …), to ``{"probabilities": (1, classes)}`` — ImageNet normalisation inside, a softmax
added for a logits model, as the SavedModel's ``serving_default``. Batch 1: 5-D and 6-D activations
live as frames ``(U·T, H, W, C)``, so folding and unfolding units cost nothing. A layer it does not
know is a ``ValueError`` naming it.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_v4d.layers import F4DBlock, FoldUnits, Residual4D, SpatialMaxPooling, SymmetricZeroPadding3D, UnfoldUnits
from keras_v4d.models.preprocessing import preprocess_input
from keras_v4d.models.video_model import ends_in_softmax


class _Value:
    """A lowered activation: ``tensor`` (rank ≤ 4) and the ``shape`` the Keras tensor has.

    Logical 5-D ``(N, T, H, W, C)`` and 6-D ``(1, U, T, H, W, C)`` activations are held as frames
    ``(N·T, H, W, C)``; lower ranks as they are.
    """

    def __init__(self, tensor, shape):
        self.tensor, self.shape = tensor, tuple(int(n) for n in shape)

    @property
    def frames(self):
        if len(self.shape) < 5:
            raise ValueError(f"expected a video activation, got shape {self.shape}")
        return self.tensor

    def units_view(self):
        """``(N, T, H, W, C)`` of a 5-D value or ``(U, …)`` of a 6-D one: ``(N, T, H, W, C)``."""
        shape = self.shape if len(self.shape) == 5 else self.shape[1:]
        if len(self.shape) == 6 and self.shape[0] != 1:
            raise ValueError(f"the lowering takes one video (batch 1), got shape {self.shape}")
        return shape


def _constant(weight):
    """The weight's value now, as a constant of the graph being traced (read eagerly: ``tf.init_scope``)."""
    with tf.init_scope():
        value = np.asarray(keras.ops.convert_to_numpy(weight), np.float32)
    return tf.constant(value)


def _like(value, frames, channels=None):
    """A value of ``value``'s video shape with new frames (and ``channels``)."""
    shape = value.shape[:-1] + ((channels if channels is not None else value.shape[-1]),)
    return _Value(frames, shape)


def _time_shifted(frames, n, t, shifts):
    """Frames ``(n·t, H, W, C)`` of ``n`` clips of ``t`` (already padded) frames → for each ``s`` in
    ``shifts``, frames ``s … s + t - max(shifts) - 1`` of every clip, as frames."""
    h, w, c = frames.shape[1:]
    clips = tf.reshape(frames, (n, t, h * w * c))
    length = t - max(shifts)
    return [tf.reshape(clips[:, s:s + length], (n * length, h, w, c)) for s in shifts]


def _pad_time(frames, n, t, before, after):
    """Zero frames around each clip: ``(n·t, H, W, C)`` → ``(n·(t + before + after), H, W, C)``."""
    if not before and not after:
        return frames
    h, w, c = frames.shape[1:]
    clips = tf.pad(tf.reshape(frames, (n, t, h * w * c)), ((0, 0), (before, after), (0, 0)))
    return tf.reshape(clips, (n * (t + before + after), h, w, c))


def conv3d_frames(frames, n, t, kernel, strides=(1, 1, 1), padding="same", dilation=(1, 1, 1)):
    """A Conv3D (no bias) on frames ``(n·t, H, W, C)`` of ``n`` clips of ``t`` frames, with 2D convolutions.

    ``kernel`` ``(k_t, k_h, k_w, C, O)``; ``padding`` Keras' ``"same"`` or ``"valid"``; a temporal stride must
    be 1. Returns ``(frames (n·t', H', W', O), t')``.
    """
    k_t, k_h, k_w, c, o = kernel.shape
    if strides[0] != 1:
        raise ValueError(f"the lowering takes temporal stride 1, got strides {strides}")
    d_t = dilation[0]
    if padding == "same":
        if k_t % 2 == 0:
            raise ValueError(f"'same' padding in time needs an odd temporal kernel, got {kernel.shape}")
        frames, t = _pad_time(frames, n, t, d_t * (k_t // 2), d_t * (k_t // 2)), t + 2 * d_t * (k_t // 2)
    spatial_padding = padding.upper()
    out_t = t - d_t * (k_t - 1)
    if k_t == 1:
        y = tf.nn.conv2d(frames, kernel[0], (1,) + tuple(strides[1:]) + (1,), spatial_padding,
                         dilations=(1,) + tuple(dilation[1:]) + (1,))
    elif k_h == 1 and k_w == 1 and strides[1:] == (1, 1):
        # (k_t, 1) over (n, t, H·W, C): 'valid' in time (padded above), nothing to pad in space
        h, w = frames.shape[1:3]
        clips = tf.reshape(frames, (n, t, h * w, c))
        y = tf.nn.conv2d(clips, kernel[:, 0], 1, "VALID", dilations=(1, d_t, 1, 1))
        y = tf.reshape(y, (n * out_t, h, w, o))
    else:
        # the k_t time-shifted copies stacked along the channels: one (k_h, k_w) Conv2D
        copies = _time_shifted(frames, n, t, [s * d_t for s in range(k_t)])
        stacked_kernel = tf.reshape(tf.transpose(kernel, (1, 2, 0, 3, 4)), (k_h, k_w, k_t * c, o))
        y = tf.nn.conv2d(tf.concat(copies, axis=-1), stacked_kernel, (1,) + tuple(strides[1:]) + (1,),
                         spatial_padding, dilations=(1,) + tuple(dilation[1:]) + (1,))
    return y, out_t


def conv4d_frames(frames, u, t, kernel):
    """A 4D convolution (V4D eq. 1; 'same' zero padding, stride 1, no bias) of one video held as frames
    ``(U·T, H, W, C)``, with 2D convolutions. ``kernel`` ``(k_u, k_t, k_h, k_w, C, O)``, odd sizes."""
    k_u, k_t, k_h, k_w, c, o = kernel.shape
    h, w = frames.shape[1:3]
    if k_h == 1 and k_w == 1:
        # (k_u, k_t) over (1, U, T·H·W, C), dilation H·W: a tap in the second axis steps one frame, and
        # 'same' pads (k_t // 2)·H·W positions, i.e. whole zero frames, on either side of each unit.
        video = tf.reshape(frames, (1, u, t * h * w, c))
        y = tf.nn.conv2d(video, kernel[:, :, 0, 0], 1, "SAME", dilations=(1, 1, h * w, 1) if k_t > 1 else 1)
        return tf.reshape(y, (u * t, h, w, o))
    if k_u == 1:
        return conv3d_frames(frames, u, t, kernel[0])[0]
    # k_u·k_t shifted copies (units, then frames) along the channels, then one (k_h, k_w) Conv2D
    pad_u, pad_t = k_u // 2, k_t // 2
    video = tf.reshape(frames, (1, u, t, h * w * c))
    video = tf.pad(video, ((0, 0), (pad_u, pad_u), (pad_t, pad_t), (0, 0)))
    copies = [tf.reshape(video[:, i:i + u, j:j + t], (u * t, h, w, c)) for i in range(k_u) for j in range(k_t)]
    stacked_kernel = tf.reshape(tf.transpose(kernel, (2, 3, 0, 1, 4, 5)), (k_h, k_w, k_u * k_t * c, o))
    return tf.nn.conv2d(tf.concat(copies, axis=-1), stacked_kernel, 1, "SAME")


def _batch_norm_standalone(layer, x):
    """A batch normalisation sublayer (of a 4D block) over the last axis."""
    if layer.axis not in (-1,):
        raise ValueError(f"{layer.name}: the lowering takes batch normalisation over the last axis")
    return _batch_norm_values(layer, x)


def _batch_norm_values(layer, x):
    variance = _constant(layer.moving_variance)
    scale = tf.math.rsqrt(variance + layer.epsilon)
    if layer.scale:
        scale = scale * _constant(layer.gamma)
    shift = -_constant(layer.moving_mean) * scale
    if layer.center:
        shift = shift + _constant(layer.beta)
    return x * scale + shift


def _conv3d_layer(layer, value):
    if layer.data_format != "channels_last" or layer.groups != 1:
        raise ValueError(f"{layer.name}: the lowering takes channels-last, ungrouped Conv3D")
    n, t = value.units_view()[:2]
    y, out_t = conv3d_frames(value.frames, n, t, _constant(layer.kernel), tuple(layer.strides), layer.padding,
                             tuple(layer.dilation_rate))
    if layer.use_bias:
        y = y + _constant(layer.bias)
    y = layer.activation(y)
    return _Value(y, value.shape[:-4] + (out_t,) + tuple(y.shape[1:]))


def _conv4d_layer(conv, value):
    u, t = value.units_view()[:2]
    y = conv4d_frames(value.frames, u, t, _constant(conv.kernel))
    if conv.bias is not None:
        y = y + _constant(conv.bias)
    return _like(value, y, conv.filters)


def _residual4d(layer, value):
    branch = _conv4d_layer(layer.conv, value).frames
    if layer.norm_layer is not None:
        branch = tf.nn.relu(_batch_norm_values(layer.norm_layer, branch))
    return _like(value, value.frames + branch)


def _temporal_attention(module, value):
    """F4D's TA (eq. 4–6) on one video's frames: the descriptors of the U·T frames as ``(1, U·T, 1, 1)``."""
    frames = value.frames
    count = frames.shape[0]
    descriptor = (tf.reduce_mean(frames, axis=(1, 2, 3), keepdims=True)
                  + tf.reduce_max(frames, axis=(1, 2, 3), keepdims=True))  # (U·T, 1, 1, 1)
    sequence = tf.reshape(descriptor, (1, count, 1, 1))
    logits = None
    for conv in module.convs:  # Conv1D(1, k, dilation d, 'same') → Conv2D (k, 1)
        kernel = _constant(conv.kernel)[:, None]  # (k, 1, 1, 1)
        y = tf.nn.conv2d(sequence, kernel, 1, "SAME", dilations=(1, conv.dilation_rate[0], 1, 1))
        y = y + _constant(conv.bias) if conv.use_bias else y
        logits = y if logits is None else logits + y
    attention = tf.reshape(tf.sigmoid(logits), (count, 1, 1, 1))
    return _like(value, frames * attention + frames)


def _dense(layer, x):
    y = tf.matmul(x, _constant(layer.kernel))
    return y + _constant(layer.bias) if layer.use_bias else y


def _channel_attention(module, value):
    """CBAM channel attention (F4D eq. 7–9) per unit: pooled over ``(T·H·W)`` of ``(N, T·H·W, C)``."""
    n, t, h, w, c = value.units_view()
    units = tf.reshape(value.frames, (n, t * h * w, c))

    def mlp(x):
        return _dense(module.excite, tf.nn.relu(_dense(module.squeeze, x)))

    logits = mlp(tf.reduce_mean(units, axis=1)) + mlp(tf.reduce_max(units, axis=1))  # (N, C)
    attention = tf.sigmoid(logits)[:, None, :]
    return _like(value, tf.reshape(units * attention + units, value.frames.shape))


def _spatiotemporal_attention(module, value):
    """F4D's STA (eq. 10–12): dilated (1,3,3) convs on the frames, dilated (3,1,1) convs over ``(N, T, H·W)``."""
    frames = value.frames
    n, t = value.units_view()[:2]
    descriptor = tf.concat([tf.reduce_mean(frames, axis=-1, keepdims=True),
                            tf.reduce_max(frames, axis=-1, keepdims=True)], axis=-1)
    spatial = tf.nn.relu(sum(_conv3d_layer(conv, _like(value, descriptor, 2)).frames
                             for conv in module.spatial_convs))
    logits = sum(_conv3d_layer(conv, _like(value, spatial, 1)).frames for conv in module.temporal_convs)
    return _like(value, frames * tf.sigmoid(logits) + frames)


def _f4d_block(layer, value):
    factorized = layer.factorized
    x = _conv4d_layer(factorized.spatial_conv, value)
    x = _like(x, tf.nn.relu(_batch_norm_values(factorized.norm, x.frames)))
    x = _conv4d_layer(factorized.temporal_conv, x)
    x = _like(x, tf.nn.relu(_batch_norm_values(layer.norm, x.frames)))  # dropout: the identity at inference
    if layer.temporal_attention is not None:
        x = _temporal_attention(layer.temporal_attention, x)
    if layer.channel_attention is not None:
        x = _channel_attention(layer.channel_attention, x)
    if layer.spatiotemporal_attention is not None:
        x = _spatiotemporal_attention(layer.spatiotemporal_attention, x)
    return _like(value, value.frames + x.frames)


def _zero_padding(pads, value):
    """``((t0, t1), (h0, h1), (w0, w1))`` zeros around a video value."""
    (t0, t1), (h0, h1), (w0, w1) = pads
    n, t = value.units_view()[:2]
    frames = _pad_time(value.frames, n, t, t0, t1)
    if h0 or h1 or w0 or w1:
        frames = tf.pad(frames, ((0, 0), (h0, h1), (w0, w1), (0, 0)))
    return _Value(frames, value.shape[:-4] + (t + t0 + t1,) + tuple(frames.shape[1:]))


def _global_pooling_3d(layer, value):
    """Global average/max pooling over (T, H, W) of ``(N, T, H, W, C)`` → ``(N, C)``."""
    if getattr(layer, "keepdims", False) or len(value.shape) != 5:
        raise ValueError(f"{layer.name}: the lowering takes global pooling of 5-D input without keepdims")
    n, t, h, w, c = value.shape
    units = tf.reshape(value.frames, (n, t * h * w, c))
    reduce = tf.reduce_max if isinstance(layer, keras.layers.GlobalMaxPooling3D) else tf.reduce_mean
    return _Value(reduce(units, axis=1), (n, c))


def _global_pooling_1d(layer, value):
    if getattr(layer, "keepdims", False) or len(value.shape) != 3:
        raise ValueError(f"{layer.name}: the lowering takes global pooling of 3-D input without keepdims")
    reduce = tf.reduce_max if isinstance(layer, keras.layers.GlobalMaxPooling1D) else tf.reduce_mean
    return _Value(reduce(value.tensor, axis=1), (value.shape[0], value.shape[2]))


def _fold(value):
    shape = (value.shape[0] * value.shape[1],) + value.shape[2:]
    if len(value.shape) >= 5:  # 6-D → 5-D: the same frames
        return _Value(value.tensor, shape)
    return _Value(tf.reshape(value.tensor, shape), shape)


def _unfold(value, reference):
    shape = (reference.shape[0], reference.shape[1]) + value.shape[1:]
    if len(shape) >= 6:  # 5-D → 6-D: the same frames
        return _Value(value.tensor, shape)
    return _Value(tf.reshape(value.tensor, shape), shape)


def _relu(layer, x):
    if layer.max_value is not None or layer.negative_slope or layer.threshold:
        raise ValueError(f"{layer.name}: the lowering takes a plain ReLU")
    return tf.nn.relu(x)


def _apply(layer, inputs):
    """One Keras layer on lowered values."""
    if isinstance(layer, (keras.layers.Dropout, keras.layers.SpatialDropout3D)):
        return inputs[0]
    if isinstance(layer, FoldUnits):
        return _fold(inputs[0])
    if isinstance(layer, UnfoldUnits):
        return _unfold(*inputs)
    if isinstance(layer, keras.layers.Add):
        return _Value(sum(v.tensor for v in inputs[1:]) + inputs[0].tensor if len(inputs) > 1 else inputs[0].tensor,
                      inputs[0].shape)
    value = inputs[0]
    if isinstance(layer, keras.layers.Conv3D):
        return _conv3d_layer(layer, value)
    if isinstance(layer, keras.layers.BatchNormalization):
        return _Value(_batch_norm_standalone(layer, value.tensor), value.shape)
    if isinstance(layer, keras.layers.ReLU):
        return _Value(_relu(layer, value.tensor), value.shape)
    if isinstance(layer, keras.layers.Activation):
        return _Value(layer.activation(value.tensor), value.shape)
    if isinstance(layer, SymmetricZeroPadding3D):
        return _zero_padding([(p, p) for p in layer.padding], value)
    if isinstance(layer, keras.layers.ZeroPadding3D):
        if layer.data_format != "channels_last":
            raise ValueError(f"{layer.name}: the lowering takes channels-last padding")
        return _zero_padding(layer.padding, value)
    if isinstance(layer, SpatialMaxPooling):
        frames = tf.nn.max_pool2d(value.frames, layer.pool_size, layer.strides, "VALID")
        return _Value(frames, value.shape[:-3] + tuple(frames.shape[1:]))
    if isinstance(layer, (keras.layers.GlobalAveragePooling3D, keras.layers.GlobalMaxPooling3D)):
        return _global_pooling_3d(layer, value)
    if isinstance(layer, (keras.layers.GlobalAveragePooling1D, keras.layers.GlobalMaxPooling1D)):
        return _global_pooling_1d(layer, value)
    if isinstance(layer, keras.layers.Dense):
        if len(value.shape) != 2:
            raise ValueError(f"{layer.name}: the lowering takes a Dense layer on (batch, features)")
        return _Value(layer.activation(_dense(layer, value.tensor)), value.shape[:-1] + (layer.units,))
    if isinstance(layer, Residual4D):
        return _residual4d(layer, value)
    if isinstance(layer, F4DBlock):
        return _f4d_block(layer, value)
    raise ValueError(f"the TFLite lowering has no rank-4 form of layer {layer.name!r} ({type(layer).__name__})")


def _as_list(tensors):
    return list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]


def lowered_network(model, frames, num_units, frames_per_unit):
    """``model`` on one video's normalised frames ``(U·T, S, S, 3)`` float32, with tensors of rank ≤ 4:
    returns the output as the model gives it, 5-D/6-D outputs as frames ``(U·T', h, w, C)``."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError("the lowering takes a model with one input and one output")
    size = frames.shape[1:3]
    values = {id(model.inputs[0]): _Value(frames, (1, num_units, frames_per_unit) + tuple(size) + (3,))}
    pending = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    while pending:
        remaining = []
        for layer in pending:
            inputs = _as_list(layer.input)
            if all(id(x) in values for x in inputs):
                values[id(layer.output)] = _apply(layer, [values[id(x)] for x in inputs])
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

