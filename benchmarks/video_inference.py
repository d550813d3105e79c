"""Exact video-level inference (V4D Algorithm 1) three ways, timed in one run, with MAC counts.

V4D-R18, U_infer = 10 → train_units = 4 (36 combinations), 3 crops of T×S² per unit:
- official: the whole network re-run on every combination (the official code's way);
- one N3D pass: the 3D part once per unit, everything after it per combination (our previous code);
- memoised: each 4D block and its 3D tail once per distinct window of units (``VideoLevelPredictor``).
Rounds are interleaved (official, N3D-once, memoised, official, …); medians are printed, and each
way's multiply-accumulates are counted from the layer shapes (the memoised count includes the
4D block's one output unit per window). All three agree to 1e-5 (checked here too).
Run: ``python benchmarks/video_inference.py [--size 256 --rounds 3]``.
"""

import argparse
import itertools
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import print_machine

import keras_v4d  # before TensorFlow: the oneDNN setting

# isort: split
import keras
import numpy as np

from keras_v4d.inference import VideoLevelPredictor, unit_sections


def _softmax_mean(chunks):
    return np.mean(np.concatenate(chunks), axis=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=4, help="combinations per call")
    args = parser.parse_args()
    print_machine()
    keras.utils.set_random_seed(0)
    model = keras_v4d.V4DResNet18(classes=200)
    for block in model.parts().blocks4d:  # trained-like 4D kernels (zero at init would hide nothing, but be fair)
        block.set_weights([np.random.randn(*w.shape).astype("float32") * 0.01 for w in block.get_weights()])
    parts = model.parts()
    predictor = VideoLevelPredictor(model)
    views = np.random.rand(3, 10, args.frames, args.size, args.size, 3).astype("float32")  # 3 crops of one video
    combinations = [list(c) for c in itertools.product(*unit_sections(10, 4))]

    def official():
        chunks = []
        for i in range(0, len(combinations), args.chunk):
            clips = np.concatenate([views[:, c] for c in combinations[i:i + args.chunk]])
            chunks.append(keras.ops.convert_to_numpy(model(clips, training=False)))
        return _softmax_mean(chunks)

    def n3d_once():
        features = parts.n3d(views, training=False)  # (3, 10, T, h, w, C)
        features = keras.ops.reshape(features, (30,) + tuple(features.shape[2:]))  # one row per (crop, unit)
        chunks = []
        for i in range(0, len(combinations), args.chunk):
            rows = np.array([[crop * 10 + u for u in c] for c in combinations[i:i + args.chunk] for crop in range(3)])
            z = keras.ops.take(features, rows.reshape(-1), axis=0)
            z = keras.ops.reshape(z, rows.shape + tuple(features.shape[1:]))  # (clips, 4, T, h, w, C)
            for block, tail in zip(parts.blocks4d, parts.tails):
                z = tail(block(z, training=False), training=False)
            chunks.append(keras.ops.convert_to_numpy(parts.head(z, training=False)))
        return _softmax_mean(chunks)

    def memoised():
        return predictor(views, 4).mean(axis=0)

    ways = {"official (whole network per combination)": official, "one N3D pass, rest per combination": n3d_once,
            "memoised (block + tail per distinct window)": memoised}
    results = {name: fn() for name, fn in ways.items()}  # warm-up, and the exactness check
    reference = results[next(iter(ways))]
    for name, value in results.items():
        assert np.allclose(value, reference, atol=1e-5), f"{name} differs from the official way"
    times = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, fn in ways.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)

    # Multiply-accumulates per crop, from the layer shapes.
    unit = (1, args.frames, args.size, args.size, 3)
    n3d_unit = keras_v4d.count_flops(parts.n3d, unit)
    shape = parts.n3d.compute_output_shape((1,) + unit)
    block_unit, tail_unit = [], []
    for block, tail in zip(parts.blocks4d, parts.tails):
        block_unit.append(block.count_macs(shape))
        tail_unit.append(keras_v4d.count_flops(tail, shape[1:]))
        shape = tail.compute_output_shape(shape)
    head = keras_v4d.count_flops(parts.head, (4,) + shape[2:])
    full_unit = n3d_unit + sum(block_unit) + sum(tail_unit)
    n = len(combinations)
    macs = {
        "official": n * (4 * full_unit + head),
        "n3d_once": 10 * n3d_unit + n * (4 * (sum(block_unit) + sum(tail_unit)) + head),
    }
    levels = predictor.last_counts  # distinct windows per 4D block (each block ran for its centre unit)
    macs["memoised"] = 10 * n3d_unit + n * head + sum(
        (b + t) * count for count, b, t in zip(levels, block_unit, tail_unit))

    medians = {name: statistics.median(t) for name, t in times.items()}
    official_s, n3d_s, memo_s = medians.values()
    print(f"V4D-R18, U_infer=10 → 4 ({n} combinations), 3 crops of {args.frames}×{args.size}², "
          f"{args.rounds} interleaved rounds, medians; backend {keras.backend.backend()}")
    print(f"distinct windows per 4D block: {levels} (vs {4 * n} unit positions per block)")
    for (name, seconds), key in zip(medians.items(), ("official", "n3d_once", "memoised")):
        print(f"{name:<46} {seconds:7.2f} s   {3 * macs[key] / 1e9:7.0f} GMACs   "
              f"{official_s / seconds:4.2f}× the official speed")
    print(f"memoised vs one N3D pass: {n3d_s / memo_s:4.2f}× faster; its MACs are "
          f"{macs['official'] / macs['memoised']:.2f}× below the official count")

if __name__ == "__main__":
    main()
