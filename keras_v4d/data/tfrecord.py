"""The TF Model Garden video TFRecord format: a ``SequenceExample`` per video with one JPEG per
frame under ``image/encoded`` and the label under ``clip/label/index``; we add ``video/id``."""

import tensorflow as tf

IMAGE_KEY = "image/encoded"   # = official.vision.dataloaders.video_input.IMAGE_KEY
LABEL_KEY = "clip/label/index"  # = official.vision.dataloaders.video_input.LABEL_KEY
ID_KEY = "video/id"


def encode_example(frames, label, video_id, jpeg_quality=90):
    """RGB uint8 ``(n, H, W, 3)`` frames → serialised ``SequenceExample``."""
    encoded = [tf.io.encode_jpeg(frame, quality=jpeg_quality).numpy() for frame in frames]
    example = tf.train.SequenceExample()
    example.context.feature[LABEL_KEY].int64_list.value.append(int(label))
    example.context.feature[ID_KEY].bytes_list.value.append(video_id.encode("utf-8"))
    images = example.feature_lists.feature_list[IMAGE_KEY]
    for data in encoded:
        images.feature.add().bytes_list.value.append(data)
    return example.SerializeToString()


def parse_example(serialized):
    """→ dict with ``frames`` (n,) JPEG strings, ``label`` int32 scalar (-1 if absent), ``video_id``."""
    context, sequence = tf.io.parse_single_sequence_example(
        serialized,
        context_features={
            LABEL_KEY: tf.io.VarLenFeature(tf.int64),
            ID_KEY: tf.io.FixedLenFeature((), tf.string, default_value=""),
        },
        sequence_features={IMAGE_KEY: tf.io.FixedLenSequenceFeature((), tf.string)},
    )
    labels = tf.sparse.to_dense(context[LABEL_KEY])
    label = tf.cond(tf.size(labels) > 0, lambda: tf.cast(labels[0], tf.int32), lambda: tf.constant(-1))
    return {"frames": sequence[IMAGE_KEY], "label": label, "video_id": context[ID_KEY]}
