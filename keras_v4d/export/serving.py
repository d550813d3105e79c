"""Whole-video serving: one video's decoded (or JPEG-encoded) frames in, the model's own test protocol
inside the graph, class probabilities and the top-k class names out.

``whole_video_functions(model, sampling, class_names)`` returns two ``tf.function``s that
``export_saved_model`` adds as signatures beside ``serving_default``:

- ``video_frames``: ``frames`` uint8 ``(N, H, W, 3)``, any N ≥ 1, H, W;
- ``video_jpeg``: ``frames`` string ``(N,)``, one encoded image (JPEG, PNG…) per frame — TF Serving's
  REST API takes it as ``{"instances": [{"b64": "…"}, …]}``, one instance per frame.

Inside, as ``predict_videos`` / ``evaluate`` do it: U_infer centred units of T frames at τ
(``segment_indices``), the short side resized and 1 or 3 crops (``eval_transform``), ImageNet
normalisation, V4D Algorithm 1 (``inference.algorithm1``, the engine of ``predict``: the 3D part once per
unit, each 4D block once per distinct window of units, the head per combination, softmax scores averaged)
and the crops averaged. The combinations are fixed by the sampling, so the distinct windows and the rows
each level gathers are found in NumPy when the function is traced; the graph holds only those.
"""

import numpy as np
import tensorflow as tf

from keras_v4d.data.frame_indices import segment_indices
from keras_v4d.data.frame_size import MAX_FRAME_PIXELS, encoded_frame_size
from keras_v4d.data.transforms import eval_transform
from keras_v4d.inference.algorithm1 import Algorithm1, unit_combinations, video_parts

WHOLE_VIDEO_SIGNATURES = ("video_frames", "video_jpeg")
"""The SavedModel's signatures that take one whole video: decoded frames (``video_frames``) or
encoded ones (``video_jpeg``), beside ``serving_default``."""


def _check_frames(frames):
    """Refuses a video with no frame or an empty frame, naming the dimension (an empty input would
    otherwise come back as NaN probabilities)."""
    shape = tf.shape(frames)
    checks = [tf.debugging.assert_positive(shape[axis], message=f"frames: {name} (axis {axis}) must be at least 1")
              for axis, name in ((0, "the number of frames N"), (1, "the height H"), (2, "the width W"))]
    with tf.control_dependencies(checks):
        return tf.identity(frames)


def _decode_frames(encoded, max_frame_pixels):
    """``(N,)`` encoded images → uint8 ``(N, H, W, 3)``. Every frame's size is read from its header
    first: a frame that is not a JPEG, PNG or GIF, that is larger than ``max_frame_pixels`` or whose
    size differs from the first frame's is refused before anything is decoded."""
    checks = [tf.debugging.assert_positive(tf.size(encoded), message="frames: the number of frames N (axis 0) "
                                                                     "must be at least 1")]
    with tf.control_dependencies(checks):
        sizes = tf.map_fn(encoded_frame_size, encoded, fn_output_signature=tf.int64)  # (N, 2)
    checks = [tf.debugging.assert_non_negative(sizes, message="frames: a frame is not a JPEG, PNG or GIF image"),
              tf.debugging.assert_equal(sizes, tf.broadcast_to(sizes[:1], tf.shape(sizes)),
                                        message="frames: every frame must have the height and width of frame 0")]
    if max_frame_pixels is not None:
        checks.append(tf.debugging.assert_less_equal(
            sizes[:, 0] * sizes[:, 1], tf.constant(max_frame_pixels, tf.int64),
            message=f"frames: a frame has more than max_frame_pixels={max_frame_pixels} pixels (height × width)"))
    with tf.control_dependencies(checks):
        return tf.map_fn(lambda data: tf.ensure_shape(tf.io.decode_image(data, channels=3, expand_animations=False),
                                                      (None, None, 3)),
                         encoded, fn_output_signature=tf.TensorSpec((None, None, 3), tf.uint8))


def whole_video_functions(model, sampling, class_names=None, top_k=5, max_frame_pixels=MAX_FRAME_PIXELS):
    """``{"video_frames": fn, "video_jpeg": fn}``: one video → ``probabilities`` ``(1, classes)``,
    ``top_k_classes`` int32 ``(1, k)``, ``top_k_probabilities`` ``(1, k)`` and, with ``class_names``,
    ``top_k_names`` string ``(1, k)``; k = min(``top_k``, classes). ``sampling``: the model's
    ``VideoSampling`` (its test protocol: ``test_num_units``, ``test_crop``, ``test_num_crops``);
    ``max_frame_pixels``: the largest encoded frame ``video_jpeg`` decodes (None: no limit)."""
    units, frames_per_unit = sampling.test_num_units, sampling.frames_per_unit
    crop, crops = sampling.test_crop, sampling.test_num_crops
    combinations = unit_combinations(units, sampling.train_units)  # (n, K), static: the graph's windows too
    video_parts(model)  # a model without a head is refused here, not when traced
    num_classes = int(model.outputs[0].shape[-1])
    k = min(int(top_k), num_classes)
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for a model of {num_classes} classes")
    names = tf.constant(list(class_names)) if class_names is not None else None

    def scores_of(frames):
        frames = _check_frames(frames)
        indices = tf.reshape(segment_indices(tf.shape(frames)[0], units, frames_per_unit, sampling.stride, False),
                             (-1,))
        views = eval_transform(tf.gather(frames, indices), crop, sampling.short_side, crops)  # (V, U·T, S, S, 3)
        views = tf.transpose(tf.reshape(views, (crops, units, frames_per_unit, crop, crop, 3)), (1, 0, 2, 3, 4, 5))
        engine = Algorithm1(model)  # a store for this trace: the graph runs each block once per distinct window
        engine.add_units(np.arange(units), views)  # keys: the units' indices; V = the crops
        probabilities = tf.reduce_mean(engine.scores(combinations), axis=(0, 1))[None]  # combinations', crops'
        top = tf.math.top_k(probabilities, k=k)
        outputs = {"probabilities": probabilities, "top_k_classes": top.indices,
                   "top_k_probabilities": top.values}
        if names is not None:
            outputs["top_k_names"] = tf.gather(names, top.indices)
        return outputs

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8, name="frames")])
    def video_frames(frames):
        return scores_of(frames)

    @tf.function(input_signature=[tf.TensorSpec((None,), tf.string, name="frames")])
    def video_jpeg(frames):
        return scores_of(_decode_frames(frames, max_frame_pixels))

    return {"video_frames": video_frames, "video_jpeg": video_jpeg}
