"""3D and 4D convolutions of videos held as frames ``(N·T, H, W, C)``, computed with 2D convolutions
(no tensor of rank above 4, no ``CONV_3D``) for the lowering (``keras_v4d.export.lowering``):

- a Conv3D ``(1, k, k)`` is a Conv2D on the frames ``(N·T, H, W, C)`` (T folded into the batch);
- a Conv3D ``(k, 1, 1)`` is a Conv2D ``(k, 1)`` over ``(N, T, H·W, C)``;
- a Conv3D ``(k_t, k_h, k_w)`` with both extents (ResNet18's ``3×3×3`` in res4/res5) is a Conv2D
  ``(k_h, k_w)`` on the frames with the ``k_t`` time-shifted copies of the input stacked along the
  channels (zero 'same' padding in time as zero frames);
- V4D's fast 4D kernel ``(k_u, k_t, 1, 1)`` is a Conv2D ``(k_u, k_t)`` over ``(1, U, T·H·W, C)``
  with dilation ``H·W`` along the second axis: its taps step one frame, and its 'same' padding is
  whole zero frames; a 4D kernel with spatial extent stacks its ``k_u·k_t`` shifted copies as above.
"""

import tensorflow as tf


def _time_shifted(frames, n, t, shifts):
    """Frames ``(n·t, H, W, C)`` of ``n`` clips of ``t`` (already padded) frames → for each ``s`` in
    ``shifts``, frames ``s … s + t - max(shifts) - 1`` of every clip, as frames."""
    h, w, c = frames.shape[1:]
    clips = tf.reshape(frames, (n, t, h * w * c))
    length = t - max(shifts)
    return [tf.reshape(clips[:, s:s + length], (n * length, h, w, c)) for s in shifts]


def pad_time(frames, n, t, before, after):
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
        frames, t = pad_time(frames, n, t, d_t * (k_t // 2), d_t * (k_t // 2)), t + 2 * d_t * (k_t // 2)
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
