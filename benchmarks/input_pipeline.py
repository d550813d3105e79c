"""Input pipeline throughput at the Mini-Kinetics setting vs the V4D-R18 training step rate.

Generates 320×256 H.264 videos of ~300 frames, converts them to TFRecords and extracts their
frames into rawframe folders (``img_00001.jpg …``, JPEG quality 90, as TSN/MMAction2 datasets
come), then measures videos/s of ``video_dataset`` (U=4, T=4, stride 8, 224 crops, training mode)
from video files, from TFRecords and from rawframes, and the V4D-R18 training step rate
(videos/s) in the same run.
Run: ``python benchmarks/input_pipeline.py [--videos N]``.

``--decord``: instead, decoding alone, ``read_frames`` against decord 0.6.0 (``pip install
decord==0.6.0``; not a dependency) on three 340×256 30 fps H.264 videos (x264 ``veryfast``, CRF 23 —
``write_video``'s settings): 10 s with x264's default GOP (250), 10 s with GOP 30, 60 s with the
default GOP. The same frame indices for both (``segment_indices``; test: 10 units × 8 frames τ 8;
training: 4 units × 8 frames τ 8, a new seed each round), on one core: the process is pinned to one
CPU (``sched_setaffinity``) so that FFmpeg's automatic thread count is 1 for both (PyAV's
``thread_type`` stays ``read_frames``' ``AUTO``; decord's ``num_threads=1``). Each call opens the file
(ours also demuxes it for its seek plan: the plan cache is emptied before each call; decord builds its
index). Rounds interleave the two readers (alternating which goes first); medians in ms.
Run: ``python benchmarks/input_pipeline.py --decord [--rounds N]``.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import print_machine

import keras_v4d  # before TensorFlow: the oneDNN setting

# isort: split
import keras
import numpy as np
import tensorflow as tf

from keras_v4d import VideoSampling
from keras_v4d.data import read_all_frames, read_annotations, video_dataset, write_video
from keras_v4d.data.convert import convert

SETTING = VideoSampling()  # the training protocol measured: U=4, T=4, τ=8, 224² crops of short side 256


def make_videos(folder, count, frames=300):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(count):
        base = rng.integers(0, 255, (256 // 8, 320 // 8, 3), dtype=np.uint8)
        clip = np.empty((frames, 256, 320, 3), np.uint8)
        for t in range(frames):  # a moving textured pattern, so the codec has real work
            clip[t] = np.roll(np.kron(base, np.ones((8, 8, 1), np.uint8)), t, axis=1)
        write_video(os.path.join(folder, f"v{i}.mp4"), clip, quality=23)
        lines.append(f"v{i}.mp4 {i % 5}")
    with open(os.path.join(folder, "list.txt"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return os.path.join(folder, "list.txt")


def make_rawframes(folder, listing, quality=90):
    """Every frame of every listed video as ``rawframes/<name>/img_00001.jpg …``; returns the list."""
    lines = []
    for line in open(listing).read().split("\n"):
        if not line.strip():
            continue
        name, label = line.split()
        frames = read_all_frames(os.path.join(folder, name))
        target = os.path.join(folder, "rawframes", os.path.splitext(name)[0])
        os.makedirs(target)
        for k, frame in enumerate(frames, 1):
            with open(os.path.join(target, f"img_{k:05d}.jpg"), "wb") as handle:
                handle.write(tf.io.encode_jpeg(frame, quality=quality).numpy())
        lines.append(f"rawframes/{os.path.splitext(name)[0]} {len(frames)} {label}")
    path = os.path.join(folder, "rawframes.txt")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def videos_per_second(videos, batch_size, batches):
    iterator = iter(videos.repeat())
    next(iterator)  # warm-up: tracing, thread pools
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def make_h264(path, seconds, gop=None, width=340, height=256, fps=30):
    """A moving textured pattern, H.264 as ``write_video`` encodes it; ``gop``: x264's keyframe interval."""
    import av

    rng = np.random.default_rng(0)
    base = np.kron(rng.integers(0, 255, (height // 4, width // 4 * 2, 3), dtype=np.uint8), np.ones((4, 4, 1), np.uint8))
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast", **({"g": str(gop)} if gop else {})}
        for t in range(seconds * fps):
            frame = np.ascontiguousarray(np.roll(base, t, axis=1)[:, :width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def compare_decord(rounds):
    """``read_frames`` vs decord on one core (see the module's docstring); prints the table."""
    import statistics

    import decord

    from keras_v4d.data import count_frames, read_frames, segment_indices, video_io

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    samplings = {"test": dict(num_units=10, training=False), "training": dict(num_units=4, training=True)}
    with tempfile.TemporaryDirectory() as folder:
        videos = {"10 s, default GOP": make_h264(os.path.join(folder, "a.mp4"), 10),
                  "10 s, GOP 30": make_h264(os.path.join(folder, "b.mp4"), 10, gop=30),
                  "60 s, default GOP": make_h264(os.path.join(folder, "c.mp4"), 60)}

        def ours(path, indices):
            video_io._PLANS.clear()  # each call builds its seek plan, as decord builds its index
            return read_frames(path, indices)

        def theirs(path, indices):
            return decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1).get_batch(indices).asnumpy()

        rows = [(video, sampling) for video in videos for sampling in samplings]
        times = {(row, reader): [] for row in rows for reader in ("ours", "decord")}
        for r in range(rounds + 1):  # round 0: warm-up, not counted
            for video, sampling in rows:
                path = videos[video]
                indices = segment_indices(count_frames(path), frames_per_unit=8, stride=8, seed=r, **samplings[sampling]
                                          ).numpy().reshape(-1).tolist()
                order = [("ours", ours), ("decord", theirs)][:: 1 if r % 2 else -1]
                for name, reader in order:
                    start = time.perf_counter()
                    frames = reader(path, indices)
                    elapsed = time.perf_counter() - start
                    assert frames.shape[0] == len(indices)
                    if r:
                        times[(video, sampling), name].append(elapsed * 1000)
    print(f"read_frames vs decord {decord.__version__}: 340×256 H.264 at 30 fps, 8 frames τ 8 a unit "
          f"(test 10 units, training 4), one core, {rounds} interleaved rounds, medians")
    print(f"{'video':<20}{'sampling':<10}{'ours (ms)':>11}{'decord (ms)':>13}{'ratio':>8}")
    for row in rows:
        mine, other = (statistics.median(times[row, name]) for name in ("ours", "decord"))
        print(f"{row[0]:<20}{row[1]:<10}{mine:>11.1f}{other:>13.1f}{other / mine:>7.2f}×")
    print("ratio: decord's time / ours (above 1: ours is faster)")
    sys.stdout.flush()


def train_step_rate(batch_size, steps):
    model = keras_v4d.V4DResNet18(input_shape=(4, 4, 224, 224, 3), classes=5)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
    x = np.random.rand(batch_size, 4, 4, 224, 224, 3).astype("float32")
    y = np.zeros(batch_size, "int32")
    model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--decord", action="store_true", help="decoding alone: read_frames vs decord, one core")
    parser.add_argument("--rounds", type=int, default=7, help="with --decord: rounds (medians)")
    args = parser.parse_args()
    print_machine()
    if args.decord:
        compare_decord(args.rounds)
        return
    with tempfile.TemporaryDirectory() as folder:
        listing = make_videos(folder, args.videos)
        convert(read_annotations(listing), os.path.join(folder, "records", "train"), num_shards=4,
                workers=2, short_side=256, progress_bar=False)
        common = dict(sampling=SETTING, training=True, batch_size=args.batch_size)
        files_rate = videos_per_second(video_dataset(listing, **common), args.batch_size, args.batches)
        records_rate = videos_per_second(video_dataset(os.path.join(folder, "records"), **common),
                                         args.batch_size, args.batches)
        rawframes_rate = videos_per_second(video_dataset(make_rawframes(folder, listing), **common),
                                           args.batch_size, args.batches)
    step_rate = train_step_rate(args.batch_size, 3)
    print(f"setting: U=4 T=4 stride 8, 320×256 H.264 videos of 300 frames, 224² crops, batch {args.batch_size}, "
          f"{os.cpu_count()} CPU cores")
    print(f"V4D-R18 training step:   {step_rate:7.2f} videos/s")
    print(f"TFRecord pipeline:       {records_rate:7.2f} videos/s  ({records_rate / step_rate:5.1f}× the step rate)")
    print(f"rawframe pipeline:       {rawframes_rate:7.2f} videos/s  "
          f"({rawframes_rate / step_rate:5.1f}× the step rate)")
    print(f"video-file pipeline:     {files_rate:7.2f} videos/s  ({files_rate / step_rate:5.1f}× the step rate)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
