r"""Export a trained model for deployment: a TF Serving SavedModel, TFLite files and an ONNX file
(uint8 video in).

    keras-v4d export --checkpoint runs/v4d/last.keras --output exported/v4d \
        --representative_data train.txt

writes, by default, saved_model/, model_{float32,dynamic,fp16,int8}.tflite and model.onnx. The int8
file (full-integer) is calibrated on ``--representative_count`` videos of ``--representative_data``
(any source the data pipeline reads: a video or rawframe list, a folder per class, TFRecords),
sampled as the file takes them; without it the int8 file is left out, with a message saying so.

U, T and the crop default to the checkpoint's saved settings (``settings.json`` beside it: the
TFLite and ONNX input is one video's frames ``(U_train·T, crop, crop, 3)``, unit-major, the network
lowered to rank-4 tensors and Conv2D for LiteRT's XNNPACK delegate); the SavedModel's
``serving_default`` keeps U, H and W free unless given. Its whole-video signatures ``video_frames``
(uint8 frames ``(N, H, W, 3)``) and ``video_jpeg`` (encoded frames ``(N,)``) run the saved test
protocol in the graph and name the top ``--top_k`` classes with ``class_names.txt`` beside the
checkpoint (or ``--class_names``).

Each output is written whole or not at all: a failed export (a TFLite conversion the converter
refuses, a full disk) leaves the previous file or folder as it was, says which output failed and
exits with code 4.
"""

import os

from absl import flags

from keras_v4d.cli.common import EXIT_NOT_WRITTEN, CommandError, run

FORMATS = ("saved_model", "tflite", "onnx")
FLAGS = flags.FlagValues()
flags.DEFINE_string("checkpoint", None, "A .keras model, or a .weights.h5 file with --model.", flag_values=FLAGS)
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
                    "(default: class_names.txt beside the checkpoint; without one: class indices only).",
                    flag_values=FLAGS)
flags.DEFINE_integer("top_k", 5, "Classes the whole-video signatures name.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("crop_size", None, "H = W of the TFLite input (default: the saved crop_size; SavedModel: "
                     "free unless given).", flag_values=FLAGS)


def main(argv):
    import keras

    from keras_v4d.export import (
        TFLITE_VARIANTS,
        ExportError,
        export_onnx,
        export_saved_model,
        export_tflite,
        representative_videos,
    )
    from keras_v4d.records.run_files import read_settings
    from keras_v4d.records.sampling import resolve_sampling
    from keras_v4d.weights import load_trained_model
    from keras_v4d.weights.loading import find_class_names

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
    try:
        model = load_trained_model(FLAGS.checkpoint, FLAGS.model)
        saved, _ = read_settings(FLAGS.checkpoint)
        sampling = resolve_sampling(model, saved, train_units=FLAGS.num_units, frames_per_unit=FLAGS.frames_per_unit)
        class_names = find_class_names(FLAGS.checkpoint, FLAGS.class_names)
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from None
    # The SavedModel keeps T free where nothing (flag, model or settings.json) says it.
    known_frames = FLAGS.frames_per_unit or model.inputs[0].shape[2] or saved.get("frames_per_unit")
    frames = sampling.frames_per_unit if known_frames else None
    units, crop = sampling.train_units, FLAGS.crop_size or sampling.crop_size
    variants = list(FLAGS.tflite_variants)
    representative = None
    if int8 and FLAGS.representative_data:
        try:
            representative = representative_videos(FLAGS.representative_data, sampling, FLAGS.representative_count,
                                                   crop)
        except (OSError, ValueError) as error:
            raise CommandError(f"--representative_data: {error}") from None
    elif int8:
        variants.remove("int8")
        print("TFLite (int8): left out; it is calibrated on videos like those it will see: give "
              "--representative_data SOURCE (a video list, a folder or TFRecords)")
    os.makedirs(FLAGS.output, exist_ok=True)
    try:
        if "saved_model" in FLAGS.formats:
            path = export_saved_model(model, os.path.join(FLAGS.output, "saved_model"), FLAGS.num_units,
                                      frames, FLAGS.crop_size, sampling=sampling, class_names=class_names,
                                      top_k=FLAGS.top_k)
            print(f"SavedModel: {path} (serving_default: units uint8 → probabilities; video_frames, video_jpeg: "
                  f"one video → probabilities and top {FLAGS.top_k} classes, {sampling.test_num_units} units × "
                  f"{sampling.test_num_crops} crops of {sampling.test_crop}²)")
        frames = sampling.frames_per_unit
        shape = f"input {units * frames}×{crop}×{crop}×3: {units} units × {frames} frames"
        if "tflite" in FLAGS.formats:
            for variant in variants:
                path = export_tflite(model, os.path.join(FLAGS.output, f"model_{variant}.tflite"), units, frames,
                                     crop, variant, representative if variant == "int8" else None)
                calibrated = f", calibrated on {len(representative)} videos" if variant == "int8" else ""
                print(f"TFLite ({variant}, {shape}{calibrated}): {path}, {os.path.getsize(path) / 1e6:.1f} MB")
        if "onnx" in FLAGS.formats:
            path = export_onnx(model, os.path.join(FLAGS.output, "model.onnx"), units, frames, crop)
            print(f"ONNX ({shape}): {path}, {os.path.getsize(path) / 1e6:.1f} MB")
    except (ExportError, OSError) as error:
        raise CommandError(str(error), EXIT_NOT_WRITTEN) from None
    except ValueError as error:
        raise CommandError(str(error)) from None
    return 0


if __name__ == "__main__":
    run("export", main, FLAGS, __doc__)
