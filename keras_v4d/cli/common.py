"""What the command-line tools share: error reporting, exit codes and the inference flags."""

import sys

from absl import app, flags

EXIT_BAD_ARGUMENTS = 2  # bad flags, missing or mismatching files: nothing was done
EXIT_BAD_INPUT = 1  # the run went through but some input (e.g. a video) could not be used


class CommandError(Exception):
    """A user-facing error: printed as ``error: <message>``; the tool exits with ``code``."""

    def __init__(self, message, code=EXIT_BAD_ARGUMENTS):
        super().__init__(message)
        self.code = code


def run(main):
    """``absl.app.run`` for a ``main(argv) -> exit code`` that may raise ``CommandError``."""

    def wrapped(argv):
        try:
            code = main(argv)
        except CommandError as error:
            print(f"error: {error}", file=sys.stderr)
            code = error.code
        sys.exit(code or 0)

    app.run(wrapped)


def define_inference_flags():
    """Flags of ``evaluate`` and ``predict``: the checkpoint and the test-time sampling (V4D §3.1, §4.2).

    Sampling flags left unset take the checkpoint's saved settings (``settings.json`` beside it,
    written by the training tool), else the paper's test protocol.
    """
    flags.DEFINE_string("checkpoint", None, "A .keras model, or a .weights.h5 file with --model.")
    flags.DEFINE_string("model", None, "Builder name for a .weights.h5 checkpoint, e.g. V4DResNet18.")
    flags.DEFINE_string("class_names", None, "File with one class name per line "
                        "(default: the checkpoint's settings.json or class_names.txt beside it).")
    flags.DEFINE_integer("train_units", None, "U the model was trained with (default: saved settings, the "
                         "model's fixed U, else 4).")
    flags.DEFINE_integer("num_units", None, "U_infer: units sampled per video at test time (default 10).")
    flags.DEFINE_integer("frames_per_unit", None, "T (default: saved settings, the model's fixed T, else 4).")
    flags.DEFINE_integer("stride", None, "Frame stride τ inside a unit (default: saved settings, else 8).")
    flags.DEFINE_integer("crop_size", None, "Test crop size (default: the short side, the papers' fully "
                         "convolutional testing).")
    flags.DEFINE_integer("short_side", None, "Short side before cropping (default: saved settings, else 256).")
    flags.DEFINE_integer("num_crops", None, "Views per video: 1 (centre) or 3 (default 3).")
    flags.DEFINE_enum("mode", "combinations", ["combinations", "all_units"],
                      "combinations: Algorithm 1; all_units: every unit through the network at once.")


def load_inference_model(flag_values):
    """The model, its class names, ``train_units`` and the sampling settings from the inference flags."""
    from keras_v4d.settings import inference_settings, load_settings
    from keras_v4d.weights import find_class_names, load_trained_model

    if not flag_values.checkpoint:
        raise CommandError("--checkpoint is required")
    try:
        model = load_trained_model(flag_values.checkpoint, flag_values.model)
        saved = load_settings(flag_values.checkpoint)
        class_names = (find_class_names(flag_values.checkpoint, flag_values.class_names)
                       if flag_values.class_names or not saved.get("class_names") else saved["class_names"])
        train_units, sampling = inference_settings(
            model, saved, train_units=flag_values.train_units, num_units=flag_values.num_units,
            frames_per_unit=flag_values.frames_per_unit, stride=flag_values.stride,
            crop_size=flag_values.crop_size, short_side=flag_values.short_side, num_crops=flag_values.num_crops,
            mode=flag_values.mode)
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from None
    num_classes = model.outputs[0].shape[-1]
    if class_names is not None and len(class_names) != num_classes:
        raise CommandError(f"{flag_values.class_names or 'the class names'} list {len(class_names)} classes but "
                           f"the model {flag_values.checkpoint} has {num_classes} outputs")
    return model, class_names, train_units, sampling
