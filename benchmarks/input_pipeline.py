"""Input pipeline throughput at the Mini-Kinetics setting vs the V4D-R18 training step rate.

Generates 320×256 H.264 videos of ~300 frames, converts them to TFRecords and extracts their
frames into rawframe folders (``img_00001.jpg …``, JPEG quality 90, as TSN/MMAction2 datasets
come), then measures videos/s of ``video_dataset`` (U=4, T=4, stride 8, 224 crops, training mode)
from video files, from TFRecords and from rawframes, and the V4D-R18 training step rate
(videos/s) in the same run.
Run: ``python benchmarks/input_pipeline.py [--videos N]``.
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

from keras_v4d.data import read_all_frames, read_annotations, video_dataset, write_video
from keras_v4d.data.convert import convert

SETTING = dict(num_units=4, frames_per_unit=4, stride=8, crop_size=224, short_side=256)


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
    iterator = iter(videos.dataset.repeat())
    next(iterator)  # warm-up: tracing, thread pools
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


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
    args = parser.parse_args()
    print_machine()
    with tempfile.TemporaryDirectory() as folder:
        listing = make_videos(folder, args.videos)
        convert(read_annotations(listing), os.path.join(folder, "records", "train"), num_shards=4,
                workers=2, short_side=256, progress_bar=False)
        common = dict(training=True, batch_size=args.batch_size, **SETTING)
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
