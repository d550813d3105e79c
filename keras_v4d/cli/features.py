"""The pooled features before the classifier, per video (Algorithm 1's average over combinations
and crops, as ``evaluate`` averages scores) or per window of a long video, as ``.npz`` files.

    keras-v4d features --checkpoint runs/v4d/last.keras --output_dir feats videos/ clip.mp4

    keras-v4d features --checkpoint v4d_resnet50_kinetics400 --output_dir feats --timeline --window 10 match.mp4

SOURCE: video files, or folders (their video files, recursively, in name order). Writes
DIR/features.npz: ``features`` (N, C) float32, ``video_ids`` (N,) (each video's path as given),
``sampling`` (the sampling settings as JSON) and ``mode``. With --timeline, DIR/NAME.features.npz per
video: ``features`` (W, C), ``starts``/``ends`` (W,) in seconds, ``first_frames``, ``video_id``, ``fps``,
``sampling``, ``mode``. Files are written whole or not at all.

Sampling flags default to the checkpoint's saved settings. A video that cannot be read is reported
with its path and left out; the exit code is then 1 (2 for bad flags or a missing checkpoint).
"""

import os
import sys

from absl import flags

from keras_v4d.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_NOT_WRITTEN,
    CommandError,
    define_inference_flags,
    load_inference_model,
    output_lock,
    run,
    unique_stem,
)

FLAGS = flags.FlagValues()
define_inference_flags(FLAGS)
flags.DEFINE_string("output_dir", None, "Folder for features.npz (or NAME.features.npz per video with --timeline).",
                    flag_values=FLAGS)
flags.DEFINE_bool("timeline", False, "Features per window (every --hop seconds) instead of one row per video.",
                  flag_values=FLAGS)
flags.DEFINE_float("window", 10.0, "--timeline: seconds per window (rounded to whole unit steps).", lower_bound=0.001,
                   flag_values=FLAGS)
flags.DEFINE_float("hop", 1.0, "--timeline: seconds between window starts (rounded to whole unit steps).",
                   lower_bound=0.001, flag_values=FLAGS)


def video_files(sources):
    """The video files of ``sources``: files as given, folders as the video files under them."""
    from keras_v4d.data.sources import VIDEO_EXTENSIONS

    paths = []
    for source in sources:
        if not os.path.isdir(source):
            paths.append(source)
            continue
        found = sorted(os.path.join(folder, name) for folder, _, names in os.walk(source) for name in names
                       if name.lower().endswith(VIDEO_EXTENSIONS) and not name.startswith("."))
        if not found:
            raise CommandError(f"{source}: a folder with no video files ({', '.join(VIDEO_EXTENSIONS)})")
        paths.extend(found)
    return paths


def main(argv):
    from keras_v4d.data import MAX_FRAME_PIXELS
    from keras_v4d.inference.features import feature_model

    if not argv[1:]:
        raise CommandError("give one or more video files or folders: keras-v4d features --checkpoint C "
                           "--output_dir DIR SOURCE...")
    if not FLAGS.output_dir:
        raise CommandError("--output_dir is required: the folder for the features")
    videos = video_files(argv[1:])
    model, _, sampling = load_inference_model(FLAGS)
    try:
        model = feature_model(model)
    except ValueError as error:
        raise CommandError(f"--checkpoint {FLAGS.checkpoint}: {error}") from None
    print(f"sampling: train_units={sampling.train_units} num_units={sampling.test_num_units} "
          f"frames_per_unit={sampling.frames_per_unit} stride={sampling.stride} crop_size={sampling.test_crop} "
          f"short_side={sampling.short_side} num_crops={sampling.test_num_crops} mode={FLAGS.mode}", file=sys.stderr)
    with output_lock(FLAGS.output_dir, "features", "--output_dir"):
        failed = _features(model, videos, sampling, FLAGS.max_frame_pixels or MAX_FRAME_PIXELS)
    if failed:
        print(f"{failed} of {len(videos)} video(s) could not be read", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def _features(model, videos, sampling, max_frame_pixels):
    """Writes the features of ``videos`` into --output_dir; returns how many could not be read."""
    import numpy as np

    from keras_v4d.inference.features import extract_features, write_features

    if FLAGS.timeline:
        failed = _timelines(model, videos, sampling, max_frame_pixels)
    else:
        rows, ids, failed = [], [], 0
        for path, features, error in extract_features(model, videos, sampling, mode=FLAGS.mode,
                                                      max_frame_pixels=max_frame_pixels):
            if error is not None:
                print(f"error: {error}", file=sys.stderr)
                failed += 1
            else:
                rows.append(features)
                ids.append(path)
        width = model.outputs[0].shape[-1]
        features = np.stack(rows) if rows else np.zeros((0, width), np.float32)
        path = _written(write_features, os.path.join(FLAGS.output_dir, "features.npz"), features, ids, sampling,
                        FLAGS.mode)
        print(f"{path}: {len(ids)} video(s) × {width} features")
    return failed


def _written(write, path, *args):
    """``write(path, *args)``; an ``OSError`` becomes a ``CommandError`` naming the file (exit code 4)."""
    from keras_v4d.records.atomic import write_failure

    try:
        return write(path, *args)
    except OSError as error:
        raise CommandError(f"--output_dir {FLAGS.output_dir}: {path} cannot be written ({write_failure(error)})",
                           EXIT_NOT_WRITTEN) from None


def _timelines(model, videos, sampling, max_frame_pixels):
    """Writes NAME.features.npz per readable video; returns how many could not be read."""
    from keras_v4d.data import VideoReadError
    from keras_v4d.inference.features import window_features, write_window_features

    failed, names = 0, set()
    for video in videos:
        try:
            windows = window_features(model, video, sampling, window=FLAGS.window, hop=FLAGS.hop, mode=FLAGS.mode,
                                      max_frame_pixels=max_frame_pixels)
        except (VideoReadError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        name = unique_stem(video, names)
        path = _written(write_window_features, os.path.join(FLAGS.output_dir, f"{name}.features.npz"), windows,
                        sampling, FLAGS.mode)
        print(f"{video}: {path}: {len(windows.starts)} windows × {windows.features.shape[-1]} features")
    return failed


if __name__ == "__main__":
    run("features", main, FLAGS, __doc__)
