"""Algorithm 1 with one N3D pass vs the naive re-run of the whole network per combination.

V4D-R18, U_infer=10 → train_units=4 (36 combinations), 3 crops of 4×256² per unit. Prints the
measured speed-up and the MAC-count bound it can reach (N4D runs on every combination either way).
Run: ``python benchmarks/video_inference.py [--size 256]``.
"""

import argparse
import itertools
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import keras_v4d  # noqa: E402
from common import median_seconds  # noqa: E402
from keras_v4d.inference import VideoLevelPredictor, unit_sections, video_level_predict  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    model = keras_v4d.V4DResNet18(classes=200)
    predictor = VideoLevelPredictor(model)
    views = np.random.rand(1, 3, 10, args.frames, args.size, args.size, 3).astype("float32")
    combinations = list(itertools.product(*unit_sections(10, 4)))

    def naive():
        return np.mean([model.predict_on_batch(views[0][:, list(c)]) for c in combinations], axis=0)

    ours_s = median_seconds(lambda: video_level_predict(model, views, 4, predictor=predictor), args.repeats)
    naive_s = median_seconds(naive, args.repeats)
    unit_shape = (1, args.frames, args.size, args.size, 3)
    n3d_macs = keras_v4d.count_flops(predictor.n3d, unit_shape)
    full_macs = keras_v4d.count_flops(model, (4,) + unit_shape[1:]) / 4
    naive_macs = 3 * len(combinations) * 4 * full_macs
    ours_macs = 3 * 10 * n3d_macs + 3 * len(combinations) * 4 * (full_macs - n3d_macs)
    print(f"V4D-R18, U_infer=10 → 4 ({len(combinations)} combinations), 3 crops of {args.frames}×{args.size}²")
    print(f"naive (whole network per combination): {naive_s:7.2f} s")
    print(f"Algorithm 1, one N3D pass:             {ours_s:7.2f} s   speed-up {naive_s / ours_s:4.2f}×")
    print(f"MAC bound on the speed-up: {naive_macs / ours_macs:4.2f}× (N3D = {n3d_macs / full_macs:.0%} of a unit's MACs)")


if __name__ == "__main__":
    main()
