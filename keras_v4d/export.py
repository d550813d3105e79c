"""Export for deployment: a TF Serving SavedModel and TFLite files that take uint8 video.

``export_saved_model(model, "exported/v4d")``, ``export_tflite(model, "v4d.tflite", U, T, S)``;
the command-line tool is ``keras-v4d export``.

The SavedModel's ``serving_default`` takes ``video`` uint8 ``(batch, U, T, H, W, 3)`` RGB and
returns ``probabilities`` ``(batch, classes)``; ImageNet normalisation runs inside the graph. U, H
and W stay free where the model allows them (U is fixed by the TFLite files, which need static
shapes). TFLite variants: ``float32``, ``dynamic`` (dynamic-range int8 weights), ``fp16``.
"""


import numpy as np
import tensorflow as tf

from keras_v4d.models.preprocessing import preprocess_input
from keras_v4d.models.video_model import ends_in_softmax

TFLITE_VARIANTS = ("float32", "dynamic", "fp16")


def _serving_function(model, input_shape):
    @tf.function(input_signature=[tf.TensorSpec((None,) + tuple(input_shape), tf.uint8, name="video")])
    def serve(video):
        x = preprocess_input(video)
        scores = model(x, training=False)
        if not ends_in_softmax(model):
            scores = tf.nn.softmax(scores, axis=-1)
        return {"probabilities": scores}

    return serve


def export_saved_model(model, path, num_units=None, frames_per_unit=None, spatial_size=None):
    """Writes a SavedModel with a uint8 ``serving_default`` signature; returns ``path``.

    Dimensions left ``None`` (and not fixed by the model) stay free in the signature.
    """
    shape = _input_shape(model, num_units, frames_per_unit, spatial_size)
    module = tf.Module()
    module.model = model
    module.serve = _serving_function(model, shape)
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def export_tflite(model, path, num_units, frames_per_unit, spatial_size, variant="float32"):
    """Writes a TFLite flatbuffer for uint8 input ``(1, U, T, S, S, 3)``; returns ``path``."""
    if variant not in TFLITE_VARIANTS:
        raise ValueError(f"`variant` must be one of {TFLITE_VARIANTS}, got {variant!r}")
    shape = _input_shape(model, num_units, frames_per_unit, spatial_size)
    if None in shape:
        raise ValueError(f"TFLite needs a static input shape; got (U, T, H, W, 3) = {shape}: give num_units, "
                         "frames_per_unit and spatial_size")
    serve = _serving_function(model, shape)
    concrete = serve.get_concrete_function(tf.TensorSpec((1,) + shape, tf.uint8, name="video"))
    # Without a trackable object the converter freezes the weights into constants; with one it keeps
    # resource variables that the LiteRT interpreter leaves uninitialised (garbage outputs).
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    if variant in ("dynamic", "fp16"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    with open(path, "wb") as handle:
        handle.write(converter.convert())
    return path


def run_tflite(path, video):
    """Runs a TFLite file with the ``ai-edge-litert`` interpreter: uint8 ``video`` → probabilities."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    video = np.asarray(video, np.uint8)
    expected = tuple(int(n) for n in inp["shape"])
    if tuple(video.shape) != expected:
        raise ValueError(f"{path} takes video of shape {expected}, got {tuple(video.shape)}")
    interpreter.set_tensor(inp["index"], video)
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


def _input_shape(model, num_units, frames_per_unit, spatial_size):
    fixed = tuple(model.inputs[0].shape[1:])  # (U, T, H, W, 3)
    wanted = (num_units, frames_per_unit, spatial_size, spatial_size)
    shape = []
    for axis, (have, want, name) in enumerate(zip(fixed[:4], wanted, ("num_units", "frames_per_unit", "H", "W"))):
        if have is not None and want is not None and have != want:
            raise ValueError(f"the model takes {name}={have}, cannot export it with {want}")
        shape.append(have if have is not None else want)
    return tuple(shape) + (3,)
