"""What the command-line tools share: error reporting, exit codes and evaluation flags."""

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
    """Flags of ``evaluate`` and ``predict``: the checkpoint and the test-time sampling (V4D §3.1, §4.2)."""
    flags.DEFINE_string("checkpoint", None, "A .keras model, or a .weights.h5 file with --model.")
    flags.DEFINE_string("model", None, "Builder name for a .weights.h5 checkpoint, e.g. V4DResNet18.")
    flags.DEFINE_string("class_names", None, "File with one class name per line "
                        "(default: class_names.txt next to the checkpoint).")
    flags.DEFINE_integer("train_units", None, "U the model was trained with (default: the model's fixed U, else 4).")
    flags.DEFINE_integer("num_units", 10, "U_infer: units sampled per video at test time.")
    flags.DEFINE_integer("frames_per_unit", None, "T (default: the model's fixed T, else 4).")
    flags.DEFINE_integer("stride", 8, "Frame stride τ inside a unit.")
    flags.DEFINE_integer("crop_size", 256, "Test crop size (256: the papers' fully convolutional testing).")
    flags.DEFINE_integer("short_side", 256, "Short side before cropping.")
    flags.DEFINE_integer("num_crops", 3, "Views per video: 1 (centre) or 3.")
    flags.DEFINE_enum("mode", "combinations", ["combinations", "all_units"],
                      "combinations: Algorithm 1; all_units: every unit through the network at once.")


def load_inference_model(flag_values):
    """The model, its class names and the resolved sampling settings from the inference flags."""
    from keras_v4d.weights import find_class_names, load_trained_model

    if not flag_values.checkpoint:
        raise CommandError("--checkpoint is required")
    if flag_values.num_crops not in (1, 3):
        raise CommandError(f"--num_crops must be 1 or 3, got {flag_values.num_crops}")
    if flag_values.crop_size > flag_values.short_side:
        raise CommandError(f"--crop_size {flag_values.crop_size} is larger than --short_side {flag_values.short_side}")
    try:
        model = load_trained_model(flag_values.checkpoint, flag_values.model)
        class_names = find_class_names(flag_values.checkpoint, flag_values.class_names)
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from None
    num_classes = model.outputs[0].shape[-1]
    if class_names is not None and len(class_names) != num_classes:
        raise CommandError(f"{flag_values.class_names or 'class_names.txt'} lists {len(class_names)} classes but "
                           f"the model {flag_values.checkpoint} has {num_classes} outputs")
    fixed_units, fixed_frames = model.inputs[0].shape[1], model.inputs[0].shape[2]
    train_units = flag_values.train_units or fixed_units or 4
    frames_per_unit = flag_values.frames_per_unit or fixed_frames or 4
    if fixed_frames and frames_per_unit != fixed_frames:
        raise CommandError(f"--frames_per_unit {frames_per_unit}, but the model takes T={fixed_frames}")
    if flag_values.num_units < train_units:
        raise CommandError(f"--num_units {flag_values.num_units} is below --train_units {train_units}; "
                           "video-level inference needs U_infer >= U_train")
    if fixed_units and flag_values.num_units != fixed_units and flag_values.mode == "all_units":
        raise CommandError(f"the model takes exactly U={fixed_units}; use --mode combinations for U_infer > U_train")
    sampling = dict(num_units=flag_values.num_units, frames_per_unit=frames_per_unit, stride=flag_values.stride,
                    crop_size=flag_values.crop_size, short_side=flag_values.short_side,
                    num_crops=flag_values.num_crops)
    return model, class_names, train_units, sampling
