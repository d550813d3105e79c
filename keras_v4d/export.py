"""Export for deployment: a TF Serving SavedModel and TFLite files that take uint8 video.

    python -m keras_v4d.export --checkpoint runs/v4d/last.keras --output exported/v4d \
        --formats saved_model,tflite --num_units 4 --frames_per_unit 4 --crop_size 224

The SavedModel's ``serving_default`` takes ``video`` uint8 ``(batch, U, T, H, W, 3)`` RGB and
returns ``probabilities`` ``(batch, classes)``; ImageNet normalisation runs inside the graph. U, H
and W stay free where the model allows them (U is fixed by the TFLite files, which need static
shapes). TFLite variants: ``float32``, ``dynamic`` (dynamic-range int8 weights), ``fp16``.
"""

import os

import numpy as np
from absl import flags

from keras_v4d.cli import CommandError, run

TFLITE_VARIANTS = ("float32", "dynamic", "fp16")


def _serving_function(model, input_shape):
    import tensorflow as tf

    from keras_v4d.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    mean = tf.constant(IMAGENET_MEAN, tf.float32) * 255.0
    scale = 1.0 / (tf.constant(IMAGENET_STD, tf.float32) * 255.0)

    @tf.function(input_signature=[tf.TensorSpec((None,) + tuple(input_shape), tf.uint8, name="video")])
    def serve(video):
        x = (tf.cast(video, tf.float32) - mean) * scale
        scores = model(x, training=False)
        if getattr(getattr(model.layers[-1], "activation", None), "__name__", "") != "softmax":
            scores = tf.nn.softmax(scores, axis=-1)
        return {"probabilities": scores}

    return serve


def export_saved_model(model, path, num_units=None, frames_per_unit=None, spatial_size=None):
    """Writes a SavedModel with a uint8 ``serving_default`` signature; returns ``path``.

    Dimensions left ``None`` (and not fixed by the model) stay free in the signature.
    """
    import tensorflow as tf

    shape = _input_shape(model, num_units, frames_per_unit, spatial_size)
    module = tf.Module()
    module.model = model
    module.serve = _serving_function(model, shape)
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def export_tflite(model, path, num_units, frames_per_unit, spatial_size, variant="float32"):
    """Writes a TFLite flatbuffer for uint8 input ``(1, U, T, S, S, 3)``; returns ``path``."""
    import tensorflow as tf

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


FLAGS = flags.FLAGS


def define_flags():
    """Defined only when run as a program, so that importing the module adds no global flags."""
    flags.DEFINE_string("checkpoint", None, "A .keras model, or a .weights.h5 file with --model.")
    flags.DEFINE_string("model", None, "Builder name for a .weights.h5 checkpoint.")
    flags.DEFINE_string("output", None, "Output folder: saved_model/ and model_<variant>.tflite.")
    flags.DEFINE_list("formats", ["saved_model", "tflite"], "saved_model and/or tflite.")
    flags.DEFINE_list("tflite_variants", list(TFLITE_VARIANTS), "TFLite variants: float32, dynamic, fp16.")
    flags.DEFINE_integer("num_units", None, "U of the TFLite input (SavedModel: free unless given).")
    flags.DEFINE_integer("frames_per_unit", None, "T (default: the model's).")
    flags.DEFINE_integer("crop_size", None, "H = W of the TFLite input (SavedModel: free unless given).")


def main(argv):
    import keras

    from keras_v4d.weights import load_trained_model

    if len(argv) > 1:
        raise CommandError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.checkpoint or not FLAGS.output:
        raise CommandError("--checkpoint and --output are required")
    unknown = set(FLAGS.formats) - {"saved_model", "tflite"} or set(FLAGS.tflite_variants) - set(TFLITE_VARIANTS)
    if unknown:
        raise CommandError(f"unknown format or variant {sorted(unknown)}")
    if keras.backend.backend() != "tensorflow":
        raise CommandError("export needs KERAS_BACKEND=tensorflow")
    try:
        model = load_trained_model(FLAGS.checkpoint, FLAGS.model)
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from None
    os.makedirs(FLAGS.output, exist_ok=True)
    try:
        if "saved_model" in FLAGS.formats:
            path = export_saved_model(model, os.path.join(FLAGS.output, "saved_model"), FLAGS.num_units,
                                      FLAGS.frames_per_unit, FLAGS.crop_size)
            print(f"SavedModel: {path} (serving_default: video uint8 → probabilities)")
        if "tflite" in FLAGS.formats:
            for variant in FLAGS.tflite_variants:
                path = export_tflite(model, os.path.join(FLAGS.output, f"model_{variant}.tflite"), FLAGS.num_units,
                                     FLAGS.frames_per_unit, FLAGS.crop_size, variant)
                print(f"TFLite ({variant}): {path}, {os.path.getsize(path) / 1e6:.1f} MB")
    except ValueError as error:
        raise CommandError(str(error)) from None
    return 0


if __name__ == "__main__":
    define_flags()
    run(main)
