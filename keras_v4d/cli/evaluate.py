"""Evaluate a trained model with video-level inference (Algorithm 1) and multi-crop testing.

    python -m keras_v4d.cli.evaluate --checkpoint runs/v4d/last.keras --data val.txt --output runs/v4d/eval

Sampling flags default to the checkpoint's saved settings. Writes ``metrics.json``,
``per_class.csv`` and ``predictions.csv`` under --output. Exit codes: 0 done, 1 a video could
not be read, 2 bad flags or files.
"""

import os

from absl import flags

from keras_v4d.cli.common import EXIT_BAD_INPUT, CommandError, define_inference_flags, load_inference_model, run

FLAGS = flags.FLAGS
define_inference_flags()
flags.DEFINE_string("data", None, "Test source: annotation list, rawframe list, class folders or TFRecords.")
flags.DEFINE_string("output", None, "Folder for metrics.json, per_class.csv and predictions.csv.")
flags.DEFINE_integer("batch_size", 2, "Videos per batch.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")


def main(argv):
    from keras_v4d.data import BadVideoError
    from keras_v4d.evaluate import evaluate

    if len(argv) > 1:
        raise CommandError(f"unexpected arguments {argv[1:]}; the test data goes in --data")
    if not FLAGS.data or not FLAGS.output:
        raise CommandError("--data and --output are required")
    model, class_names, train_units, sampling = load_inference_model(FLAGS)
    try:
        metrics = evaluate(model, FLAGS.data, train_units=train_units, sampling=sampling, mode=FLAGS.mode,
                           batch_size=FLAGS.batch_size, class_names=class_names, output=FLAGS.output,
                           progress=FLAGS.progress, metadata={"checkpoint": FLAGS.checkpoint})
    except BadVideoError as error:
        raise CommandError(f"--data: {error}", code=EXIT_BAD_INPUT) from None
    except (OSError, ValueError) as error:
        if "BadVideoError" in str(error):  # tf.data wraps the pipeline's BadVideoError
            raise CommandError(f"--data: {str(error).split('BadVideoError: ')[-1].strip()}",
                               code=EXIT_BAD_INPUT) from None
        raise CommandError(f"--data: {error}") from None
    except Exception as error:  # noqa: BLE001  (tf.errors.* from inside the pipeline)
        if "BadVideoError" not in str(error):
            raise
        raise CommandError(f"--data: {str(error).split('BadVideoError: ')[-1].strip()}", code=EXIT_BAD_INPUT) from None
    k = min(5, model.outputs[0].shape[-1])
    print(f"{metrics['videos']} videos, {sampling['num_crops']} crop(s) × {sampling['num_units']} units, "
          f"{FLAGS.mode}: top-1 {metrics['top1']:.2f}%  top-{k} {metrics[f'top{k}']:.2f}%  "
          f"mean class {metrics['mean_class_accuracy']:.2f}%")
    print(f"per-class accuracy: {os.path.join(FLAGS.output, 'per_class.csv')}")
    return 0


if __name__ == "__main__":
    run(main)
