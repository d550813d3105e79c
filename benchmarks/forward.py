"""Forward throughput of V4D-R18 and I3D-S-R18 at 4×4×224² on this CPU, against dense matmul and
against the same network in PyTorch.

Prints the machine (CPU, vector extensions, oneDNN on or off); V4D-R18's inference forward pass
against PyTorch's (the tests' official-layout reference), each in its own process, rounds
interleaved, medians; clips/s, achieved GFLOP/s (2 × MACs / s) and that as a fraction of the
dense-matmul GFLOP/s measured in the same run; then Conv4D (3,3,1,1) at C=256 against an
equal-MAC Conv3D.
Run: ``python benchmarks/forward.py [--repeats N] [--rounds N]``.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import compare_with_pytorch, matmul_gflops, median_seconds, print_machine

import keras_v4d  # before TensorFlow: the oneDNN setting

# isort: split
import keras
import numpy as np
import tensorflow as tf

from keras_v4d.layers.conv4d import conv4d_shifted_sum, conv4d_spatial_pointwise

SHAPE = (4, 4, 224, 224, 3)


def model_rows(peak, repeats):
    for builder in (keras_v4d.I3DSlowResNet18, keras_v4d.V4DResNet18):
        model = builder(input_shape=SHAPE, classes=400)
        macs = keras_v4d.count_flops(model, SHAPE)
        forward = tf.function(lambda x, m=model: m(x, training=False))
        for batch in (1, 4):
            x = tf.constant(np.random.rand(batch, *SHAPE).astype("float32"))
            seconds = median_seconds(lambda: forward(x).numpy(), repeats)
            gflops = 2 * macs * batch / seconds / 1e9
            print(f"{model.name:<20} batch {batch}: {batch / seconds:6.2f} clips/s  "
                  f"{gflops:7.1f} GFLOP/s  {gflops / peak:5.1%} of matmul")


def conv4d_rows(peak, repeats, batch=4, units=4, frames=4, size=14, channels=256):
    x6 = tf.constant(np.random.rand(batch, units, frames, size, size, channels).astype("float32"))
    x5 = tf.reshape(x6, (batch * units, frames, size, size, channels))
    kernel4d = tf.constant(np.random.rand(3, 3, 1, 1, channels, channels).astype("float32"))
    kernel3d = tf.constant(np.random.rand(3, 3, 1, channels, channels).astype("float32"))
    macs = batch * units * frames * size * size * channels * channels * 9
    cases = {
        "Conv3D 3×3×1 (equal MACs)": tf.function(lambda: keras.ops.conv(x5, kernel3d, padding="same")),
        "Conv4D (3,3,1,1) fast path": tf.function(lambda: conv4d_spatial_pointwise(x6, kernel4d)),
        "Conv4D (3,3,1,1) shifted sum": tf.function(lambda: conv4d_shifted_sum(x6, kernel4d)),
    }
    times = {name: median_seconds(lambda f=f: f().numpy(), repeats * 3) for name, f in cases.items()}
    base = times["Conv3D 3×3×1 (equal MACs)"]
    print(f"\n4D conv at B={batch} U={units} T={frames} {size}×{size} C={channels} ({macs / 1e9:.2f} GMACs):")
    for name, seconds in times.items():
        gflops = 2 * macs / seconds / 1e9
        print(f"{name:<30} {seconds * 1e3:8.1f} ms  {gflops:7.1f} GFLOP/s  {gflops / peak:5.1%} of matmul  "
              f"{seconds / base:4.2f}× Conv3D")


def pytorch_rows(rounds, steps=5):
    print(f"V4D-R18 inference forward against PyTorch, {rounds} interleaved rounds × {steps} passes, medians:")
    for batch in (1, 4):
        medians, _, _ = compare_with_pytorch(("V4DResNet18", batch, *SHAPE[:3]), "forward", rounds, steps)
        print(f"batch {batch}: keras_v4d {1e3 * medians['keras']:7.0f} ms  PyTorch {1e3 * medians['pytorch']:7.0f} ms  "
              f"speed {medians['pytorch'] / medians['keras']:4.2f}× PyTorch", flush=True)
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds against PyTorch (0: none)")
    args = parser.parse_args()
    print_machine()
    if args.rounds:
        pytorch_rows(args.rounds)
    peak = matmul_gflops()
    print(f"dense matmul 2048²: {peak:.1f} GFLOP/s ({os.cpu_count()} CPU cores, TensorFlow {tf.__version__})\n")
    model_rows(peak, args.repeats)
    conv4d_rows(peak, args.repeats)


if __name__ == "__main__":
    main()
