"""Top-k classes of video files with video-level inference (Algorithm 1, multi-crop).

    python -m keras_v4d.predict --checkpoint runs/v4d/last.keras video1.mp4 video2.webm

Class names come from --class_names or ``class_names.txt`` next to the checkpoint. A video that
cannot be read is reported with its path and the others are still predicted; the exit code is
then 1 (2 for bad flags or a missing checkpoint).
"""

import json
import sys

from absl import flags

from keras_v4d.cli import EXIT_BAD_INPUT, CommandError, define_inference_flags, load_inference_model, run

FLAGS = flags.FLAGS
define_inference_flags()
flags.DEFINE_integer("top_k", 5, "Classes listed per video.")
flags.DEFINE_bool("json", False, "Print one JSON object per video instead of a table.")


def top_classes(probabilities, class_names, k):
    """``[(class name, probability), ...]`` of the ``k`` highest of ``probabilities`` (classes,)."""
    import numpy as np

    order = np.argsort(-probabilities)[:k]
    return [(class_names[i] if class_names else f"class {i}", float(probabilities[i])) for i in order]


def main(argv):
    from keras import ops

    from keras_v4d.data import VideoReadError, load_video_views
    from keras_v4d.inference import VideoLevelPredictor, video_level_predict

    videos = argv[1:]
    if not videos:
        raise CommandError("give one or more video files: python -m keras_v4d.predict --checkpoint C VIDEO...")
    model, class_names, train_units, sampling = load_inference_model(FLAGS)
    predictor = VideoLevelPredictor(model)
    failed = 0
    for path in videos:
        try:
            views = load_video_views(path, **sampling)
        except (VideoReadError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        scores = video_level_predict(model, views[None], train_units, FLAGS.mode, predictor)
        best = top_classes(ops.convert_to_numpy(scores)[0], class_names, FLAGS.top_k)
        if FLAGS.json:
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
    run(main)
