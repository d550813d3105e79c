"""What the command-line tools share: error reporting, exit codes and the inference flags."""

import os
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
    flags.DEFINE_string("checkpoint", None, "A .keras model, a .weights.h5 file with --model, or a registered "
                        "weights tag (e.g. v4d_resnet50_kinetics400: architecture, settings and class names from "
                        "the registry).")
    flags.DEFINE_string("model", None, "Builder name for a .weights.h5 checkpoint, e.g. V4DResNet18.")
    flags.DEFINE_string("class_names", None, "File with one class name per line (default: the registry entry "
                        "of a tag, the checkpoint's settings.json or class_names.txt beside it; else Kinetics-400's "
                        "names for a 400-way classifier).")
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
    """The model, its class names, ``train_units`` and the sampling settings from the inference flags.

    ``--checkpoint`` is a ``.keras`` model, a ``.weights.h5`` file with ``--model``, or a registered
    weights tag (``keras_v4d.weights.list_weights()``, e.g. ``v4d_resnet50_kinetics400``): then the
    architecture, the sampling settings and the class names come from the registry entry. Class
    names: ``--class_names``; else the registry entry, or the ``settings.json``/``class_names.txt``
    beside the checkpoint; else, for a 400-way classifier, Kinetics-400's names (said on stderr).
    """
    from keras_v4d.models.class_names import KINETICS400_SIZE, kinetics400_class_names
    from keras_v4d.settings import inference_settings, load_settings
    from keras_v4d.weights import find_class_names, list_weights, load_pretrained, load_trained_model, registry_settings

    checkpoint = flag_values.checkpoint
    if not checkpoint:
        raise CommandError("--checkpoint is required (a .keras file, a .weights.h5 file with --model, or a "
                           f"registered weights tag: {', '.join(list_weights())})")
    tag = checkpoint if checkpoint in list_weights() and not os.path.exists(checkpoint) else None
    if tag and flag_values.model:
        raise CommandError(f"--model is for .weights.h5 checkpoints; the weights tag {tag!r} names its architecture")
    try:
        if tag:
            model = load_pretrained(tag)
            saved = registry_settings(tag)
        else:
            model = load_trained_model(checkpoint, flag_values.model)
            saved = load_settings(checkpoint)
        if flag_values.class_names:
            class_names = find_class_names(checkpoint, flag_values.class_names)
        elif saved.get("class_names") or tag:
            class_names = saved.get("class_names")
        else:
            class_names = find_class_names(checkpoint)
        train_units, sampling = inference_settings(
            model, {k: v for k, v in saved.items() if k != "class_names"}, train_units=flag_values.train_units,
            num_units=flag_values.num_units, frames_per_unit=flag_values.frames_per_unit, stride=flag_values.stride,
            crop_size=flag_values.crop_size, short_side=flag_values.short_side, num_crops=flag_values.num_crops,
            mode=flag_values.mode)
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from None
    num_classes = model.outputs[0].shape[-1]
    if class_names is None and num_classes == KINETICS400_SIZE:
        class_names = kinetics400_class_names()
        print(f"note: {checkpoint} names no classes; its 400 outputs are named with Kinetics-400's classes "
              "(pass --class_names FILE if it was trained on another dataset)", file=sys.stderr)
    if class_names is not None and len(class_names) != num_classes:
        raise CommandError(f"{flag_values.class_names or 'the class names'} lists {len(class_names)} classes but "
                           f"the model {checkpoint} has {num_classes} outputs")
    return model, class_names, train_units, sampling
