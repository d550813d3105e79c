"""A TF Serving SavedModel that takes uint8 video: ``export_saved_model(model, "exported/v4d", sampling)``.

Its ``serving_default`` takes ``video`` uint8 ``(batch, U, T, H, W, 3)`` RGB and returns
``probabilities`` ``(batch, classes)``; ImageNet normalisation runs inside the graph. U, T, H and W
stay free where the model allows them, unless ``static`` fixes them to the sampling's values
(``keras_v4d.export.shapes``). Beside it, ``video_frames`` and ``video_jpeg`` take one whole video and
run the sampling's test protocol in the graph (``keras_v4d.export.serving``).

An empty input (any of batch, U, T, H, W equal to 0) is an ``InvalidArgumentError`` naming the
dimension. The SavedModel replaces its folder whole or not at all: a failed export (``ExportError``)
leaves the previous folder as it was.
"""

import os

import tensorflow as tf

from keras_v4d.data.frame_size import MAX_FRAME_PIXELS
from keras_v4d.export.outputs import failure_named, replace_folder
from keras_v4d.export.serving import whole_video_functions
from keras_v4d.export.shapes import input_shape
from keras_v4d.models.preprocessing import preprocess_input
from keras_v4d.models.video_model import VideoModel, ends_in_softmax
from keras_v4d.records.sampling import resolve_sampling

VIDEO_AXES = ("batch", "U", "T", "H", "W")


def _serving_function(model, shape):
    """``serving_default``: ``video`` uint8 ``(batch,) + shape`` (``shape`` ``(U, T, H, W, 3)``, ``None``
    free) → ``{"probabilities": (batch, classes)}``, refusing a dimension of 0 by name."""
    @tf.function(input_signature=[tf.TensorSpec((None,) + tuple(shape), tf.uint8, name="video")])
    def serve(video):
        # The network answers an empty dimension with an obscure error deep inside, or with NaN.
        size = tf.shape(video)
        checks = [tf.debugging.assert_positive(
            size[axis], message=f"video: {name} (axis {axis}) is 0; the signature takes uint8 (batch, U, T, H, W, 3) "
                                "with every dimension at least 1") for axis, name in enumerate(VIDEO_AXES)]
        with tf.control_dependencies([check for check in checks if check is not None]):
            x = preprocess_input(video)
        scores = model(x, training=False)
        if not ends_in_softmax(model):
            scores = tf.nn.softmax(scores, axis=-1)
        return {"probabilities": scores}

    return serve


def export_saved_model(model, path, sampling=None, *, static=(), class_names=None, top_k=5,
                       max_frame_pixels=MAX_FRAME_PIXELS):
    """Writes a SavedModel; returns ``path``.

    ``sampling``: the model's ``VideoSampling`` (default: ``resolve_sampling(model)``, what its input
    shape fixes and the defaults; its U and T must fit the model). Signatures:

    - ``serving_default``: sampled units, uint8 ``(batch, U, T, H, W, 3)``; a dimension the model
      leaves free stays free unless ``static`` names its sampling field (``"train_units"`` fixes U,
      ``"frames_per_unit"`` T, ``"crop_size"`` H = W);
    - for a model with a head, the whole-video ``video_frames`` and ``video_jpeg``
      (``keras_v4d.export.serving``): one video's frames in, the test protocol of ``sampling``
      inside, probabilities and the top-``top_k`` classes, named with ``class_names``, out; JPEG
      frames over ``max_frame_pixels`` are refused before decoding.

    The SavedModel is written to a temporary folder beside ``path`` and swapped in when complete; on
    failure (``ExportError``) a previous SavedModel at ``path`` is left as it was.
    """
    sampling = sampling or resolve_sampling(model)
    input_shape(model, sampling, ("train_units", "frames_per_unit"))  # the whole-video signatures' U and T
    module = tf.Module()
    module.model = model
    module.serve = _serving_function(model, input_shape(model, sampling, static))
    signatures = {"serving_default": module.serve}
    if isinstance(model, VideoModel) and model.parts().head is not None:
        whole_video = whole_video_functions(model, sampling, class_names, top_k, max_frame_pixels)
        module.video_frames, module.video_jpeg = whole_video["video_frames"], whole_video["video_jpeg"]
        signatures.update(whole_video)

    def save(folder):
        with failure_named(f"SavedModel export to {path}", "a previous SavedModel there is left as it was"):
            tf.saved_model.save(module, folder, signatures=signatures)

    if "://" in os.fspath(path):  # an object store has no folder rename: written in place
        save(path)
    else:
        replace_folder(path, save)
    return path
