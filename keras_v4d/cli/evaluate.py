"""Evaluate a trained model with video-level inference (Algorithm 1) and multi-crop testing.

    keras-v4d evaluate --checkpoint runs/v4d/last.keras --data val.txt --output runs/v4d/eval

Sampling flags default to the checkpoint's saved settings. Writes ``metrics.json``,
``per_class.csv``, ``predictions.csv`` and ``unreadable.csv`` under --output. Every readable video is
evaluated; one that cannot be read is listed with the reason in ``unreadable.csv`` and left out of
the metrics (``metrics.json`` says over how many videos they were computed); --strict stops at the
first one instead. Exit codes: 0 every video evaluated, 1 some video could not be read, 2 bad flags
or files.
"""

import os
import sys

from absl import flags

from keras_v4d.cli.common import (
    EXIT_BAD_INPUT,
    CommandError,
    define_inference_flags,
    load_inference_model,
    output_lock,
    run,
)

FLAGS = flags.FlagValues()
define_inference_flags(FLAGS)
flags.DEFINE_string("data", None, "Test source: annotation list, rawframe list, class folders or TFRecords.",
                    flag_values=FLAGS)
flags.DEFINE_string("output", None, "Folder for metrics.json, per_class.csv, predictions.csv and unreadable.csv.",
                    flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 2, "Videos per batch.", flag_values=FLAGS)
flags.DEFINE_bool("progress", True, "Show a progress bar.", flag_values=FLAGS)
flags.DEFINE_bool("strict", False, "Stop at the first video that cannot be read (exit code 1, naming it) instead "
                  "of evaluating the others and listing it in unreadable.csv.", flag_values=FLAGS)


def main(argv):
    from keras_v4d.data import MAX_FRAME_PIXELS, BadVideoError, bad_video_message
    from keras_v4d.inference.evaluation import evaluate

    if len(argv) > 1:
        raise CommandError(f"unexpected arguments {argv[1:]}; the test data goes in --data")
    if not FLAGS.data or not FLAGS.output:
        raise CommandError("--data and --output are required")
    model, class_names, sampling = load_inference_model(FLAGS)
    try:
        with output_lock(FLAGS.output, "evaluate", "--output"):
            metrics = evaluate(model, FLAGS.data, sampling, mode=FLAGS.mode,
                               batch_size=FLAGS.batch_size, class_names=class_names, output=FLAGS.output,
                               progress=FLAGS.progress, metadata={"checkpoint": FLAGS.checkpoint},
                               strict=FLAGS.strict, max_frame_pixels=FLAGS.max_frame_pixels or MAX_FRAME_PIXELS)
    except BadVideoError as error:
        raise CommandError(f"--data: {error}", code=EXIT_BAD_INPUT) from None
    except (OSError, ValueError) as error:
        raise CommandError(f"--data: {error}") from None
    except Exception as error:  # noqa: BLE001  (tf.errors.* from inside the pipeline)
        message = bad_video_message(error)
        if message is None:
            raise
        raise CommandError(f"--data: {message}", code=EXIT_BAD_INPUT) from None
    k = min(5, model.outputs[0].shape[-1])
    print(f"{metrics['videos']} videos, {sampling.test_num_crops} crop(s) × {sampling.test_num_units} units, "
          f"{FLAGS.mode}: top-1 {metrics['top1']:.2f}%  top-{k} {metrics[f'top{k}']:.2f}%  "
          f"mean class {metrics['mean_class_accuracy']:.2f}%")
    print(f"per-class accuracy: {os.path.join(FLAGS.output, 'per_class.csv')}")
    if metrics["videos_repaired"]:
        print(f"{metrics['videos_repaired']} video(s) decoded only partly and were evaluated on the frames that "
              "did decode (repaired)")
    if metrics["videos_unreadable"]:
        print(f"{metrics['videos_unreadable']} video(s) could not be read and were not evaluated (the metrics are "
              f"over the {metrics['videos_evaluated']} readable ones); listed with the reason in "
              f"{os.path.join(FLAGS.output, 'unreadable.csv')}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    run("evaluate", main, FLAGS, __doc__)
