"""The frame-size limit: a frame's width × height read from the file's header, before decoding.

A small file can decode to huge frames (an 8192² video of a few kilobytes, a JPEG or PNG bomb among
rawframes or in a TFRecord); decoding it costs gigabytes, and on a long run the kernel then kills
the whole process. A frame over the limit is a bad video instead: skipped, counted and logged like
any other (``VideoReadError`` naming the file, the size and the limit).
"""

import struct

# 4096² (16.8 M pixels) admits every 4K format in either orientation (UHD 3840×2160, DCI 4096×2160)
# and stops 8K (33 M) and bombs. One RGB frame at the limit is 50 MB, so the U_infer·T = 40 sampled
# frames of one video already hold 2 GB before they are resized, per video the pipeline has in flight.
MAX_FRAME_PIXELS = 4096 * 4096
"""The default frame-size limit, 4096 × 4096 pixels: a video whose frames have more is skipped before
it is decoded (``DataOptions.max_frame_pixels``, ``--max_frame_pixels``; ``None``: no limit)."""


def check_max_frame_pixels(max_frame_pixels, where="`max_frame_pixels`"):
    """``ValueError`` (its message starting with ``where``) unless ``max_frame_pixels`` is a positive int
    or None (no limit)."""
    if max_frame_pixels is not None and (isinstance(max_frame_pixels, bool) or not isinstance(max_frame_pixels, int)
                                         or max_frame_pixels < 1):
        raise ValueError(f"{where} must be a positive int or None (no limit), got {max_frame_pixels!r}")


def frame_size_error(where, width, height, max_frame_pixels):
    """The reason a ``width`` × ``height`` frame of ``where`` is refused, or None when it is within the
    limit (or there is none)."""
    if max_frame_pixels is None or width * height <= max_frame_pixels:
        return None
    return (f"{where}: a frame of {width}×{height} ({width * height} pixels) is over the limit of "
            f"{max_frame_pixels} pixels (max_frame_pixels); not decoded")


_JPEG, _PNG, _GIF = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8"


def frame_size_of(data):
    """``(height, width)`` of one encoded frame (``bytes``), as ``encoded_frame_size`` reads it, for
    code outside a graph (several times faster than running that eagerly)."""
    import tensorflow as tf

    if data.startswith(_JPEG):
        return tuple(int(n) for n in tf.io.extract_jpeg_shape(data).numpy()[:2])
    if data.startswith(_PNG) and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    if data.startswith(_GIF) and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return height, width
    return -1, -1


def encoded_frame_size(data):
    """``(height, width)`` int64 of an encoded frame (a scalar string tensor), read from its header.

    Covers what ``tf.io.decode_jpeg`` decodes as a frame: JPEG (``tf.io.extract_jpeg_shape``, which
    reads the header only; an invalid JPEG is an ``InvalidArgumentError``), PNG (its IHDR) and GIF
    (its logical screen, the size TensorFlow decodes to); ``(-1, -1)`` for anything else. Runs in a
    graph and eagerly.
    """
    import tensorflow as tf

    length = tf.strings.length(data)

    def header_bytes(offset, count):
        return tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, count), tf.uint8), tf.int64)

    def jpeg():
        return tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64)

    def png():  # IHDR: width, height as big-endian uint32 at bytes 16 and 20
        b = tf.reshape(header_bytes(16, 8), (2, 4))
        return tf.reverse(tf.reduce_sum(b * tf.constant([1 << 24, 1 << 16, 1 << 8, 1], tf.int64), axis=1), [0])

    def gif():  # logical screen: width, height as little-endian uint16 at byte 6
        b = tf.reshape(header_bytes(6, 4), (2, 2))
        return tf.reverse(tf.reduce_sum(b * tf.constant([1, 256], tf.int64), axis=1), [0])

    def starts(magic, minimum):
        return (tf.strings.substr(data, 0, len(magic)) == magic) & (length >= minimum)

    return tf.case([(starts(_JPEG, 3), jpeg), (starts(_PNG, 24), png), (starts(_GIF, 10), gif)],
                   default=lambda: tf.constant([-1, -1], tf.int64))
