"""The TF Model Garden video TFRecord format: a ``SequenceExample`` per video with one JPEG per
frame under ``image/encoded`` and the label under ``clip/label/index``; we add ``video/id``.

Also the TFRecord framing (``uint64 length, uint32 masked crc32c(length), data, uint32 masked
crc32c(data)``), walked without reading the records' data: ``scan_shard`` counts a shard's records
and finds where a damaged shard stops making sense.
"""

import dataclasses
import os
import struct

import tensorflow as tf

IMAGE_KEY = "image/encoded"   # = official.vision.dataloaders.video_input.IMAGE_KEY
LABEL_KEY = "clip/label/index"  # = official.vision.dataloaders.video_input.LABEL_KEY
ID_KEY = "video/id"


def encode_example(frames, label, video_id, jpeg_quality=90):
    """RGB uint8 ``(n, H, W, 3)`` frames → serialised ``SequenceExample``."""
    encoded = [tf.io.encode_jpeg(frame, quality=jpeg_quality).numpy() for frame in frames]
    return encode_jpeg_example(encoded, label, video_id)


def encode_jpeg_example(jpegs, label, video_id):
    """Already encoded frames (a list of JPEG ``bytes``) → serialised ``SequenceExample``."""
    encoded = jpegs
    example = tf.train.SequenceExample()
    example.context.feature[LABEL_KEY].int64_list.value.append(int(label))
    example.context.feature[ID_KEY].bytes_list.value.append(video_id.encode("utf-8"))
    images = example.feature_lists.feature_list[IMAGE_KEY]
    for data in encoded:
        images.feature.add().bytes_list.value.append(data)
    return example.SerializeToString()


def parse_example(serialized):
    """→ dict with ``frames`` (n,) JPEG strings, ``label`` int64 scalar as stored (-1 if absent), ``video_id``.

    The label stays int64: a reader checks its range before narrowing it (``2**32 + 1`` cast to int32
    would read as class 1).
    """
    context, sequence = tf.io.parse_single_sequence_example(
        serialized,
        context_features={
            LABEL_KEY: tf.io.VarLenFeature(tf.int64),
            ID_KEY: tf.io.FixedLenFeature((), tf.string, default_value=""),
        },
        sequence_features={IMAGE_KEY: tf.io.FixedLenSequenceFeature((), tf.string)},
    )
    labels = tf.sparse.to_dense(context[LABEL_KEY])
    label = tf.cond(tf.size(labels) > 0, lambda: labels[0], lambda: tf.constant(-1, tf.int64))
    return {"frames": sequence[IMAGE_KEY], "label": label, "video_id": context[ID_KEY]}


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def masked_crc32c(data):
    """The TFRecord checksum of ``data`` (CRC-32C, rotated and offset as TFRecord masks it)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@dataclasses.dataclass
class ShardScan:
    """What the framing of a TFRecord shard says: ``records`` whole records framed correctly, the
    first of them ending at byte ``end``; ``size`` bytes in the file; ``problem`` describes the
    damage after ``end`` (None when the framing runs cleanly to the end of the file)."""

    records: int
    end: int
    size: int
    problem: str = None


def scan_shard(path):
    """Walks a TFRecord shard's framing: reads 12 bytes per record and seeks past the data.

    Counts the records without reading or parsing them (the data checksums are not verified; the
    reader does that). Raises ``OSError``/``tf.errors.OpError`` when the file cannot be read.
    """
    opener = tf.io.gfile.GFile if "://" in path else open
    with opener(path, "rb") as handle:
        size = handle.size() if opener is not open else os.fstat(handle.fileno()).st_size
        records = offset = 0
        problem = None
        while offset < size:
            handle.seek(offset)
            header = handle.read(12)
            if len(header) < 12:
                problem = f"a record header cut short at byte {offset}"
                break
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                problem = f"a corrupted record header at byte {offset}"
                break
            if offset + 16 + length > size:
                problem = f"a record cut short at byte {offset} (it needs {16 + length} bytes, {size - offset} remain)"
                break
            records += 1
            offset += 16 + length
    return ShardScan(records, offset, size, problem)
