"""File size and single-video latency of one model as Keras, SavedModel and TFLite (3 variants).

V4D ResNet18 (full width, --classes outputs) on one uint8 video of U×T×S² frames.
Run: ``python benchmarks/export.py [--size 112] [--units 4] [--frames 4] [--repeats 5]``.
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import median_seconds, print_machine

import keras_v4d  # before TensorFlow: the oneDNN setting

# isort: split
import numpy as np
import tensorflow as tf

from keras_v4d.data import normalize_imagenet
from keras_v4d.export import TFLITE_VARIANTS, export_saved_model, export_tflite


def folder_size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--units", type=int, default=4)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print_machine()
    shape = (args.units, args.frames, args.size, args.size, 3)
    model = keras_v4d.V4DResNet18(classes=args.classes, input_shape=(None, args.frames, None, None, 3))
    video = np.random.default_rng(0).integers(0, 256, (1,) + shape).astype(np.uint8)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        keras_path = os.path.join(folder, "model.keras")
        model.save(keras_path)
        keras_fn = tf.function(lambda v: model(normalize_imagenet(v), training=False))
        rows.append(("Keras (.keras, tf.function)", os.path.getsize(keras_path),
                     median_seconds(lambda: keras_fn(tf.constant(video)).numpy(), args.repeats)))
        saved = export_saved_model(model, os.path.join(folder, "saved_model"))
        serve = tf.saved_model.load(saved).signatures["serving_default"]
        rows.append(("SavedModel serving_default", folder_size(saved),
                     median_seconds(lambda: serve(video=tf.constant(video))["probabilities"].numpy(), args.repeats)))
        from ai_edge_litert.interpreter import Interpreter

        for variant in TFLITE_VARIANTS:
            path = export_tflite(model, os.path.join(folder, f"{variant}.tflite"), *shape[:3], variant)
            interpreter = Interpreter(model_path=path)
            interpreter.allocate_tensors()
            index = interpreter.get_input_details()[0]["index"]

            def invoke():  # the file takes the video's U·T frames
                interpreter.set_tensor(index, video.reshape(-1, args.size, args.size, 3))
                interpreter.invoke()

            rows.append((f"TFLite {variant} (ai-edge-litert)", os.path.getsize(path),
                         median_seconds(invoke, args.repeats)))
    print(f"V4D ResNet18, {args.classes} classes, one uint8 video {'×'.join(map(str, shape[:4]))}, "
          f"median of {args.repeats}")
    print(f"{'format':<34} {'size (MB)':>10} {'latency (ms)':>13}")
    for name, size, seconds in rows:
        print(f"{name:<34} {size / 1e6:10.1f} {1000 * seconds:13.1f}")


if __name__ == "__main__":
    main()
