"""``keras-v4d``: one command with a subcommand per tool.

    keras-v4d train | evaluate | predict | features | export | convert-weights | convert-data | data-service | summary
    keras-v4d SUBCOMMAND --help
"""

import importlib
import sys

from keras_v4d.cli.common import EXIT_BAD_ARGUMENTS, execute

# subcommand -> (module of keras_v4d.cli, one line of help)
SUBCOMMANDS = {
    "train": ("train", "train a model of the zoo (per-epoch checkpoints, resume)"),
    "evaluate": ("evaluate", "video-level evaluation (Algorithm 1, multi-crop): top-1, top-5, mean class"),
    "predict": ("predict", "top-k classes of video files"),
    "features": ("features", "pooled features before the classifier, per video or per window, as .npz"),
    "export": ("export", "SavedModel (TF Serving), TFLite and ONNX files"),
    "convert-weights": ("convert_weights", "official V4D PyTorch checkpoint -> .weights.h5"),
    "convert-data": ("convert_data", "videos or rawframes -> TFRecord shards"),
    "data-service": ("data_service", "a tf.data service dispatcher or worker: decode training videos on other hosts"),
    "summary": ("summary", "parameters and GMACs of every builder beside the papers' figures"),
}


def usage():
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in SUBCOMMANDS.items()]
    return ("usage: keras-v4d SUBCOMMAND [flags]   (keras-v4d SUBCOMMAND --help for its flags)\n\nsubcommands:\n"
            + "\n".join(lines) + "\n")


def main(argv=None):
    """Runs ``keras-v4d`` on ``argv`` (default ``sys.argv``); returns the exit code."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(usage())
        return 0 if len(argv) >= 2 else EXIT_BAD_ARGUMENTS
    command = argv[1]
    if command not in SUBCOMMANDS:
        print(f"error: unknown subcommand {command!r}\n\n{usage()}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    module = importlib.import_module(f"keras_v4d.cli.{SUBCOMMANDS[command][0]}")
    return execute(command, module.main, module.FLAGS, module.__doc__, [f"keras-v4d {command}"] + argv[2:])


def console_main():
    """The ``keras-v4d`` console script."""
    sys.exit(main())
