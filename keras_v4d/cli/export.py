r"""Export a trained model for deployment: a TF Serving SavedModel and TFLite files (uint8 video in).

    keras-v4d export --checkpoint runs/v4d/last.keras --output exported/v4d \
        --formats saved_model,tflite

U, T and the crop default to the checkpoint's saved settings (``settings.json`` beside it: the
TFLite input is one video's frames ``(U_train·T, crop, crop, 3)``, unit-major, the network lowered to
rank-4 tensors and Conv2D for LiteRT's XNNPACK delegate); the SavedModel's ``serving_default`` keeps U,
H and W free unless given. Its whole-video signatures ``video_frames`` (uint8 frames ``(N, H, W, 3)``)
and ``video_jpeg`` (encoded frames ``(N,)``) run the saved test protocol in the graph and name the
top ``--top_k`` classes with ``class_names.txt`` beside the checkpoint (or ``--class_names``).

Each output is written whole or not at all: a failed export (a TFLite conversion the converter
refuses, a full disk) leaves the previous file or folder as it was, says which output failed and
exits with code 4.
"""

import os

from absl import flags

from keras_v4d.cli.common import EXIT_NOT_WRITTEN, CommandError, run

FLAGS = flags.FlagValues()
flags.DEFINE_string("checkpoint", None, "A .keras model, or a .weights.h5 file with --model.", flag_values=FLAGS)
flags.DEFINE_string("model", None, "Builder name for a .weights.h5 checkpoint.", flag_values=FLAGS)
flags.DEFINE_string("output", None, "Output folder: saved_model/ and model_<variant>.tflite.", flag_values=FLAGS)
flags.DEFINE_list("formats", ["saved_model", "tflite"], "saved_model and/or tflite.", flag_values=FLAGS)
flags.DEFINE_list("tflite_variants", ["float32", "dynamic", "fp16"], "TFLite variants: float32, dynamic, fp16.",
                  flag_values=FLAGS)
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

    from keras_v4d.export import TFLITE_VARIANTS, ExportError, export_saved_model, export_tflite
    from keras_v4d.sampling import read_settings, resolve_sampling
    from keras_v4d.weights import load_trained_model
    from keras_v4d.weights.loading import find_class_names

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
        saved, _ = read_settings(FLAGS.checkpoint)
        sampling = resolve_sampling(model, saved, train_units=FLAGS.num_units, frames_per_unit=FLAGS.frames_per_unit)
        class_names = find_class_names(FLAGS.checkpoint, FLAGS.class_names)
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from None
    # The SavedModel keeps T free where nothing (flag, model or settings.json) says it.
    known_frames = FLAGS.frames_per_unit or model.inputs[0].shape[2] or saved.get("frames_per_unit")
    frames = sampling.frames_per_unit if known_frames else None
    os.makedirs(FLAGS.output, exist_ok=True)
    try:
        if "saved_model" in FLAGS.formats:
            path = export_saved_model(model, os.path.join(FLAGS.output, "saved_model"), FLAGS.num_units,
                                      frames, FLAGS.crop_size, sampling=sampling, class_names=class_names,
                                      top_k=FLAGS.top_k)
            print(f"SavedModel: {path} (serving_default: units uint8 → probabilities; video_frames, video_jpeg: "
                  f"one video → probabilities and top {FLAGS.top_k} classes, {sampling.test_num_units} units × "
                  f"{sampling.test_num_crops} crops of {sampling.test_crop}²)")
        if "tflite" in FLAGS.formats:
            units, frames, crop = sampling.train_units, sampling.frames_per_unit, FLAGS.crop_size or sampling.crop_size
            for variant in FLAGS.tflite_variants:
                path = export_tflite(model, os.path.join(FLAGS.output, f"model_{variant}.tflite"), units, frames,
                                     crop, variant)
                print(f"TFLite ({variant}, input {units * frames}×{crop}×{crop}×3: {units} units × {frames} "
                      f"frames): {path}, {os.path.getsize(path) / 1e6:.1f} MB")
    except (ExportError, OSError) as error:
        raise CommandError(str(error), EXIT_NOT_WRITTEN) from None
    except ValueError as error:
        raise CommandError(str(error)) from None
    return 0


if __name__ == "__main__":
    run("export", main, FLAGS, __doc__)
