r"""Export a trained model for deployment: a TF Serving SavedModel, TFLite files and an ONNX file
(uint8 video in).

    keras-v4d export --checkpoint runs/v4d/last.keras --output exported/v4d \
        --representative_data train.txt
    keras-v4d export --checkpoint v4d_resnet50_kinetics400 --output exported/v4d_k400 --formats saved_model

writes, by default, saved_model/, model_{float32,dynamic,fp16,int8}.tflite and model.onnx. The int8
file (full-integer) is calibrated on ``--representative_count`` videos of ``--representative_data``
(any source the data pipeline reads: a video or rawframe list, a folder per class, TFRecords),
sampled as the file takes them; without it the int8 file is left out, with a message saying so.

``--checkpoint`` is a ``.keras`` model, a ``.weights.h5`` file with ``--model``, or a registered
weights tag, resolved as ``predict`` and ``evaluate`` resolve it. U, T and the crop default to the
checkpoint's saved settings (the run's ``settings.json`` beside it, or the tag's registry entry): the
TFLite and ONNX input is one video's frames ``(U_train·T, crop, crop, 3)``, unit-major, the network
lowered to rank-4 tensors and Conv2D for LiteRT's XNNPACK delegate; the SavedModel's
``serving_default`` keeps U, H and W free unless given. Its whole-video signatures ``video_frames``
(uint8 frames ``(N, H, W, 3)``) and ``video_jpeg`` (encoded frames ``(N,)``) run the saved test
protocol in the graph and name the top ``--top_k`` classes with the saved class names (or
``--class_names``).

Each output is written whole or not at all: a failed export (a TFLite conversion the converter
refuses, a full disk) leaves the previous file or folder as it was, says which output failed and
exits with code 4.
"""

import dataclasses
import os

from absl import flags

from keras_v4d.cli.common import EXIT_NOT_WRITTEN, CommandError, load_inference_model, output_lock, run

FORMATS = ("saved_model", "tflite", "onnx")
FLAGS = flags.FlagValues()
flags.DEFINE_string("checkpoint", None, "A .keras model, a .weights.h5 file with --model, or a registered weights "
                    "tag (e.g. v4d_resnet50_kinetics400: architecture, settings and class names from the registry).",
                    flag_values=FLAGS)
flags.DEFINE_string("model", None, "Builder name for a .weights.h5 checkpoint.", flag_values=FLAGS)
flags.DEFINE_string("output", None, "Output folder: saved_model/, model_<variant>.tflite, model.onnx.",
                    flag_values=FLAGS)
flags.DEFINE_list("formats", list(FORMATS), "Any of saved_model, tflite, onnx.", flag_values=FLAGS)
flags.DEFINE_list("tflite_variants", ["float32", "dynamic", "fp16", "int8"], "TFLite variants: float32, dynamic, "
                  "fp16, int8 (int8: only with --representative_data).", flag_values=FLAGS)
flags.DEFINE_string("representative_data", None, "The int8 file's calibration videos: a video or rawframe list, a "
                    "folder per class, or TFRecords (as --train takes them).", flag_values=FLAGS)
flags.DEFINE_integer("representative_count", 32, "Videos read from --representative_data, spread over it.",
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("num_units", None, "U of the TFLite input (default: the saved train_units; SavedModel: free "
                     "unless given).", flag_values=FLAGS)
flags.DEFINE_integer("frames_per_unit", None, "T (default: the model's, else the saved settings').", flag_values=FLAGS)
flags.DEFINE_string("class_names", None, "A file with one class name per line for the whole-video signatures "
                    "(default: the saved class names of the run or the tag; without any: class indices only).",
                    flag_values=FLAGS)
flags.DEFINE_integer("top_k", 5, "Classes the whole-video signatures name.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("crop_size", None, "H = W of the TFLite input (default: the saved crop_size; SavedModel: "
                     "free unless given).", flag_values=FLAGS)


def _checked_flags(argv):
    """The flags' own consistency, before anything is loaded; returns whether an int8 file is asked for."""
    import keras

    from keras_v4d.export import TFLITE_VARIANTS

    if len(argv) > 1:
        raise CommandError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.checkpoint or not FLAGS.output:
        raise CommandError("--checkpoint and --output are required")
    unknown = set(FLAGS.formats) - set(FORMATS) or set(FLAGS.tflite_variants) - set(TFLITE_VARIANTS)
    if unknown:
        raise CommandError(f"unknown format or variant {sorted(unknown)}")
    int8 = "tflite" in FLAGS.formats and "int8" in FLAGS.tflite_variants
    if FLAGS.representative_data and not int8:
        raise CommandError("--representative_data calibrates the int8 TFLite file, which --formats / "
                           "--tflite_variants leave out")
    if keras.backend.backend() != "tensorflow":
        raise CommandError("export needs KERAS_BACKEND=tensorflow")
    return int8


def _saved_model_static(model):
    """The ``serving_default`` dimensions fixed to the sampling's: U and H = W where given, T where a
    flag, the model or the saved settings say it (else it stays free)."""
    from keras_v4d.records.run_files import read_settings
    from keras_v4d.weights import weights_tag

    known_frames = (FLAGS.frames_per_unit or model.inputs[0].shape[2] or weights_tag(FLAGS.checkpoint)
                    or read_settings(FLAGS.checkpoint)[0].get("frames_per_unit"))
    named = (("train_units", FLAGS.num_units), ("frames_per_unit", known_frames), ("crop_size", FLAGS.crop_size))
    return tuple(field for field, given in named if given)


def _representative(sampling, int8):
    """The int8 file's calibration videos, or ``None`` (then the int8 file is left out, said so)."""
    from keras_v4d.export import representative_videos

    if int8 and FLAGS.representative_data:
        try:
            return representative_videos(FLAGS.representative_data, sampling, FLAGS.representative_count)
        except (OSError, ValueError) as error:
            raise CommandError(f"--representative_data: {error}") from None
    if int8:
        print("TFLite (int8): left out; it is calibrated on videos like those it will see: give "
              "--representative_data SOURCE (a video list, a folder or TFRecords)")
    return None


def _export(model, class_names, sampling, representative):
    """Writes each asked-for format into ``--output``, saying what each file takes."""
    from keras_v4d.export import export_onnx, export_saved_model, export_tflite

    if "saved_model" in FLAGS.formats:
        path = export_saved_model(model, os.path.join(FLAGS.output, "saved_model"), sampling,
                                  static=_saved_model_static(model), class_names=class_names, top_k=FLAGS.top_k)
        print(f"SavedModel: {path} (serving_default: units uint8 → probabilities; video_frames, video_jpeg: "
              f"one video → probabilities and top {FLAGS.top_k} classes, {sampling.test_num_units} units × "
              f"{sampling.test_num_crops} crops of {sampling.test_crop}²)")
    units, frames, crop = sampling.train_units, sampling.frames_per_unit, sampling.crop_size
    shape = f"input {units * frames}×{crop}×{crop}×3: {units} units × {frames} frames"
    if "tflite" in FLAGS.formats:
        for variant in FLAGS.tflite_variants:
            if variant == "int8" and representative is None:
                continue
            path = export_tflite(model, os.path.join(FLAGS.output, f"model_{variant}.tflite"), sampling, variant,
                                 representative if variant == "int8" else None)
            calibrated = f", calibrated on {len(representative)} videos" if variant == "int8" else ""
            print(f"TFLite ({variant}, {shape}{calibrated}): {path}, {os.path.getsize(path) / 1e6:.1f} MB")
    if "onnx" in FLAGS.formats:
        path = export_onnx(model, os.path.join(FLAGS.output, "model.onnx"), sampling)
        print(f"ONNX ({shape}): {path}, {os.path.getsize(path) / 1e6:.1f} MB")


def main(argv):
    from keras_v4d.export import ExportError
    from keras_v4d.records.atomic import write_failure

    int8 = _checked_flags(argv)
    model, class_names, sampling = load_inference_model(FLAGS, export=True)
    if FLAGS.crop_size:
        try:
            sampling = dataclasses.replace(sampling, crop_size=FLAGS.crop_size)
        except ValueError as error:
            raise CommandError(f"--crop_size: {error}") from None
    representative = _representative(sampling, int8)
    try:
        with output_lock(FLAGS.output, "export", "--output"):
            _export(model, class_names, sampling, representative)
    except ExportError as error:
        raise CommandError(str(error), EXIT_NOT_WRITTEN) from None
    except OSError as error:
        raise CommandError(f"--output: {getattr(error, 'filename', None) or FLAGS.output} could not be written "
                           f"({write_failure(error)})", EXIT_NOT_WRITTEN) from None
    except ValueError as error:
        raise CommandError(str(error)) from None
    return 0


if __name__ == "__main__":
    run("export", main, FLAGS, __doc__)
