"""What the command-line tools share: flag parsing and help, error reporting, exit codes, the
sampling and inference flags.

Each tool defines its flags on its own ``flags.FlagValues`` (not absl's global ``FLAGS``), so that
every tool lives in one process without clashes (``keras-v4d`` imports them all).
"""

import contextlib
import signal
import sys
import threading

from absl import flags

from keras_v4d.records.sampling import DEFAULT_SAMPLING

EXIT_BAD_ARGUMENTS = 2  # bad flags, missing or mismatching files: nothing was done
EXIT_BAD_INPUT = 1  # the run went through but some input (e.g. a video) could not be used
EXIT_DIVERGED = 3  # training stopped at a NaN/inf loss or weight; the last finite checkpoint is kept
EXIT_NOT_WRITTEN = 4  # an output could not be written whole; what was there before is as it was
EXIT_INTERRUPTED = 128 + signal.SIGINT  # as a shell reports a process ended by Ctrl-C
EXIT_TERMINATED = 128 + signal.SIGTERM


class CommandError(Exception):
    """A user-facing error: printed as ``error: <message>``; the tool exits with ``code``."""

    def __init__(self, message, code=EXIT_BAD_ARGUMENTS):
        super().__init__(message)
        self.code = code


def command_help(command, flag_values, doc):
    """The ``--help`` text of a tool: its docstring, then its flags."""
    lines = []
    for name in sorted(set(flag_values)):
        flag = flag_values[name]
        default = "" if flag.default is None else f" (default: {flag.default_as_str})"
        lines.append(f"  --{name}: {flag.help}{default}")
    flag_help = "\n".join(lines)
    return f"usage: keras-v4d {command} [flags]\n\n{(doc or '').strip()}\n\nflags:\n{flag_help}\n"


def execute(command, main, flag_values, doc, argv):
    """Parses ``argv`` (``[program, args…]``) into ``flag_values`` and runs ``main(remaining argv)``;
    returns the exit code. ``--help`` prints the tool's help; a bad flag or a ``CommandError`` prints
    ``error: …`` (no traceback)."""
    if "tf_logs" not in flag_values:  # read from the command line at import keras_v4d (_compat)
        flags.DEFINE_bool("tf_logs", False, "Show TensorFlow's own C++ log lines (hidden in the tools unless "
                          "TF_CPP_MIN_LOG_LEVEL is set).", flag_values=flag_values)
    if any(arg in ("-h", "--help", "--helpfull", "--helpshort") for arg in argv[1:]):
        print(command_help(command, flag_values, doc))
        return 0
    flag_values.unparse_flags()  # a tool run twice in one process starts from its defaults again
    try:
        remaining = flag_values(list(argv))
    except flags.Error as error:
        print(f"error: {error}\n(keras-v4d {command} --help lists the flags)", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()  # absl's logging reads the global flags; they take no values here
    try:
        return main(remaining) or 0
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that the work unwinds (its ``finally`` blocks run)."""


def _raise_terminated(signum, frame):
    raise _Terminated()


def until_stopped(work, stopped):
    """``work()``, with Ctrl-C and SIGTERM turned into a ``CommandError`` saying ``"interrupted: "`` or
    ``"terminated (SIGTERM): "`` + ``stopped`` (exit codes 130 and 143); the work unwinds first."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        return work()
    except KeyboardInterrupt:
        raise CommandError(f"interrupted: {stopped}", EXIT_INTERRUPTED) from None
    except _Terminated:
        raise CommandError(f"terminated (SIGTERM): {stopped}", EXIT_TERMINATED) from None
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def run(command, main, flag_values, doc):
    """``python -m keras_v4d.cli.<tool>``: ``execute`` on ``sys.argv``, then exit with its code."""
    sys.exit(execute(command, main, flag_values, doc, sys.argv))


@contextlib.contextmanager
def output_lock(folder, tool, flag):
    """Holds ``folder`` for this tool (``records.folder_lock``) while the block writes there; another
    process holding it is a ``CommandError`` naming ``flag`` and that process (exit code 2)."""
    from keras_v4d.records.folder_lock import FolderBusyError, folder_lock

    try:
        lock = folder_lock(folder, tool).acquire()
    except FolderBusyError as error:
        raise CommandError(f"{flag}: {error}") from None
    except OSError as error:  # not a folder, no permission, a read-only file system: nothing was done
        raise CommandError(f"{flag}: cannot create the folder {folder} or its lock file ({_write_failure(error)})",
                           EXIT_BAD_ARGUMENTS) from None
    try:
        yield
    finally:
        lock.release()


def _write_failure(error):
    from keras_v4d.records.atomic import write_failure

    return write_failure(error)


def unique_stem(path, taken):
    """``path``'s file name without its extension, made unique among ``taken`` (and added to it): two
    videos of the same name from different folders get ``name`` and ``name_``."""
    import os

    name = os.path.splitext(os.path.basename(path))[0]
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def define_sampling_flags(flag_values):
    """The training sampler's flags (U, T, τ, crop, short side), their defaults ``VideoSampling``'s."""
    flags.DEFINE_integer("num_units", DEFAULT_SAMPLING.train_units, "Action units U per video.",
                         flag_values=flag_values)
    flags.DEFINE_integer("frames_per_unit", DEFAULT_SAMPLING.frames_per_unit, "Frames T per unit.",
                         flag_values=flag_values)
    flags.DEFINE_integer("stride", DEFAULT_SAMPLING.stride, "Frame stride τ inside a unit.", flag_values=flag_values)
    flags.DEFINE_integer("crop_size", DEFAULT_SAMPLING.crop_size, "Training crop size.", flag_values=flag_values)
    flags.DEFINE_integer("short_side", DEFAULT_SAMPLING.short_side, "Short side before cropping.",
                         flag_values=flag_values)


def define_inference_flags(flag_values):
    """Flags of ``evaluate`` and ``predict``: the checkpoint and the test-time sampling (V4D §3.1, §4.2).

    Sampling flags left unset take the checkpoint's saved settings (``settings.json`` beside it,
    written by the training tool), else the paper's test protocol.
    """
    flags.DEFINE_string("checkpoint", None, "A .keras model, a .weights.h5 file with --model, or a registered "
                        "weights tag (e.g. v4d_resnet50_kinetics400: architecture, settings and class names from "
                        "the registry).", flag_values=flag_values)
    flags.DEFINE_string("model", None, "Builder name for a .weights.h5 checkpoint, e.g. V4DResNet18.",
                        flag_values=flag_values)
    flags.DEFINE_string("class_names", None, "File with one class name per line (default: the registry entry "
                        "of a tag, or the run's settings.json beside the checkpoint; else Kinetics-400's "
                        "names for a 400-way classifier).", flag_values=flag_values)
    flags.DEFINE_integer("train_units", None, "U the model was trained with (default: saved settings, the "
                         f"model's fixed U, else {DEFAULT_SAMPLING.train_units}).", flag_values=flag_values)
    flags.DEFINE_integer("num_units", None, "U_infer: units sampled per video at test time (default: saved "
                         f"settings, else {DEFAULT_SAMPLING.test_num_units}).", flag_values=flag_values)
    flags.DEFINE_integer("frames_per_unit", None, f"T (default: saved settings, the model's fixed T, else "
                         f"{DEFAULT_SAMPLING.frames_per_unit}).", flag_values=flag_values)
    flags.DEFINE_integer("stride", None, "Frame stride τ inside a unit (default: saved settings, else "
                         f"{DEFAULT_SAMPLING.stride}).", flag_values=flag_values)
    flags.DEFINE_integer("crop_size", None, "Test crop size (default: the short side, the papers' fully "
                         "convolutional testing).", flag_values=flag_values)
    flags.DEFINE_integer("short_side", None, "Short side before cropping (default: saved settings, else "
                         f"{DEFAULT_SAMPLING.short_side}).", flag_values=flag_values)
    flags.DEFINE_integer("num_crops", None, "Views per video: 1 (centre) or 3 (default: saved settings, "
                         f"else {DEFAULT_SAMPLING.test_num_crops}).", flag_values=flag_values)
    flags.DEFINE_enum("mode", "combinations", ["combinations", "all_units"],
                      "combinations: Algorithm 1; all_units: every unit through the network at once.",
                      flag_values=flag_values)
    flags.DEFINE_integer("max_frame_pixels", None, "A video whose frames have more pixels (width × height, read from "
                         "its header before decoding) is reported as unreadable instead of decoded (default: "
                         "keras_v4d.data.MAX_FRAME_PIXELS, 4096×4096).", lower_bound=1, flag_values=flag_values)


def _test_sampling(model, saved, flag_values):
    """``evaluate``/``predict``: the test protocol from the sampling flags, else the saved settings."""
    from keras_v4d.inference.algorithm1 import check_unit_combinations
    from keras_v4d.records.sampling import resolve_sampling

    sampling = resolve_sampling(
        model, saved, train_units=flag_values.train_units, num_units=flag_values.num_units,
        frames_per_unit=flag_values.frames_per_unit, stride=flag_values.stride, crop_size=flag_values.crop_size,
        short_side=flag_values.short_side, num_crops=flag_values.num_crops, mode=flag_values.mode)
    if flag_values.mode == "combinations":  # refused here, before the model meets any video
        check_unit_combinations(sampling.test_num_units, sampling.train_units, name="--num_units")
    return sampling


def _export_sampling(model, saved, flag_values):
    """``export``: ``--num_units`` is U_train, ``--frames_per_unit`` T; the rest is saved or default."""
    from keras_v4d.records.sampling import resolve_sampling

    # getattr: a flag the tool does not define counts as unset
    return resolve_sampling(model, saved, train_units=getattr(flag_values, "num_units", None),
                            frames_per_unit=getattr(flag_values, "frames_per_unit", None))


def _has_head(model):
    from keras_v4d.models.video_model import VideoModel

    return not isinstance(model, VideoModel) or model.parts().head is not None


def load_inference_model(flag_values, *, export=False):
    """The model, its class names and its ``VideoSampling`` from the inference flags:
    ``(model, class_names or None, sampling)``.

    ``--checkpoint`` is resolved by ``keras_v4d.weights.load_model``: a ``.keras`` model, a
    ``.weights.h5`` file with ``--model``, or a registered weights tag (``keras_v4d.weights.list_weights()``,
    e.g. ``v4d_resnet50_kinetics400``), whose architecture, sampling settings and class names come
    from the registry. Class names: ``--class_names``; else the registry entry, or the run's
    ``settings.json`` (an older run's ``class_names.txt``) beside the checkpoint; else, for a 400-way
    classifier, Kinetics-400's names (said on stderr). Sampling flags left unset take the saved
    settings (``resolve_sampling``).

    ``export=True`` is what ``keras-v4d export`` needs: of the sampling flags only ``--num_units``
    (read as U_train) and ``--frames_per_unit`` are read, and a flag the tool does not define counts
    as unset; ``--mode`` is neither read nor checked; a model without a head is accepted, class names
    are checked against the outputs of a model with a head only, and no Kinetics-400 names are
    supplied (``None`` when none are given or saved). The saved settings themselves:
    ``keras_v4d.weights.load_model(checkpoint).saved_sampling``.

    Raises ``CommandError`` naming the flag or file at fault.
    """
    from keras_v4d.records.class_names import KINETICS400_SIZE, kinetics400_class_names
    from keras_v4d.weights import list_weights, load_model, weights_tag

    checkpoint = flag_values.checkpoint
    if not checkpoint:
        raise CommandError("--checkpoint is required (a .keras file, a .weights.h5 file with --model, or a "
                           f"registered weights tag: {', '.join(list_weights())})")
    tag = weights_tag(checkpoint)
    if tag and flag_values.model:
        raise CommandError(f"--model is for .weights.h5 checkpoints; the weights tag {tag!r} names its architecture")
    try:
        loaded = load_model(checkpoint, flag_values.model, flag_values.class_names or None)
        resolve = _export_sampling if export else _test_sampling
        sampling = resolve(loaded.model, loaded.saved_sampling, flag_values)
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from None
    model, class_names = loaded.model, loaded.class_names
    if export and not _has_head(model):
        return model, class_names, sampling
    num_classes = model.outputs[0].shape[-1]
    if class_names is None and num_classes == KINETICS400_SIZE and not export:
        class_names = kinetics400_class_names()
        print(f"note: {checkpoint} names no classes; its 400 outputs are named with Kinetics-400's classes "
              "(pass --class_names FILE if it was trained on another dataset)", file=sys.stderr)
    if class_names is not None and len(class_names) != num_classes:
        raise CommandError(f"{flag_values.class_names or 'the class names'} lists {len(class_names)} classes but "
                           f"the model {checkpoint} has {num_classes} outputs")
    return model, class_names, sampling
