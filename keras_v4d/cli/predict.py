"""Top-k classes of video files with video-level inference (Algorithm 1, multi-crop).

    keras-v4d predict --checkpoint runs/v4d/last.keras video1.mp4 video2.webm

Sampling flags default to the checkpoint's saved settings; class names come from --class_names,
the saved settings or ``class_names.txt`` beside the checkpoint. A video that cannot be read is
reported with its path and the others are still predicted; the exit code is then 1 (2 for bad
flags or a missing checkpoint).
"""

import json
import sys

from absl import flags

from keras_v4d.cli.common import EXIT_BAD_INPUT, CommandError, define_inference_flags, load_inference_model, run

FLAGS = flags.FlagValues()
define_inference_flags(FLAGS)
flags.DEFINE_integer("top_k", 5, "Classes listed per video.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_bool("json", False, "Print one JSON object per video instead of a table.", flag_values=FLAGS)


def main(argv):
    from keras_v4d.data import MAX_FRAME_PIXELS
    from keras_v4d.inference.prediction import predict_videos

    videos = argv[1:]
    if not videos:
        raise CommandError("give one or more video files: keras-v4d predict --checkpoint C VIDEO...")
    model, class_names, sampling = load_inference_model(FLAGS)
    print(f"sampling: train_units={sampling.train_units} "
          + " ".join(f"{k}={v}" for k, v in sampling.test_arguments().items()), file=sys.stderr)
    failed = 0
    max_frame_pixels = FLAGS.max_frame_pixels or MAX_FRAME_PIXELS
    for path, best, error in predict_videos(model, videos, sampling, mode=FLAGS.mode, class_names=class_names,
                                            top_k=FLAGS.top_k, max_frame_pixels=max_frame_pixels):
        if error is not None:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
        elif FLAGS.json:
            print(json.dumps({"video": path, "top": [{"class": c, "probability": p} for c, p in best]}))
        else:
            print(path)
            for rank, (name, probability) in enumerate(best, 1):
                print(f"  {rank}. {100 * probability:5.1f}%  {name}")
    if failed:
        print(f"{failed} of {len(videos)} video(s) could not be read", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    run("predict", main, FLAGS, __doc__)
