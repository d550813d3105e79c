"""Training-step time and peak memory: keras_v4d (Keras 3, TensorFlow backend) against the same
network in PyTorch (the tests' official-layout reference, ``tests/torch_reference.py``).

Each framework runs in its own worker process (so that peak resident memory is its own); the
driver interleaves rounds — keras, pytorch, keras, pytorch, … — and prints medians and ratios.
One step = forward, cross-entropy, backward, global-norm clipping (20) and SGD with momentum 0.9
and L2 weight decay 1e-5 on the kernels, as in the paper's recipe (V4D §4.2) and the released code
(the same update on both sides: ``keras_v4d.training.SGDWithL2`` and ``torch.optim.SGD``), on random
videos.
Run: ``python benchmarks/training.py [--rounds 3 --steps 3]``; ``--low_memory`` makes the Keras
worker call ``use_low_memory_allocator()`` (memory against speed); ``--keras_env NAME=VALUE …`` starts
it with extra environment variables.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import compare_with_pytorch

CASES = [  # (model, batch, U, T, size)
    ("V4DResNet18", 2, 4, 4, 160),
    ("I3DSlowResNet18", 2, 4, 4, 160),
    ("V4DResNet18", 1, 4, 4, 224),
]


def _memory(peaks):
    peak, imported = peaks
    return f"{peak:.2f} ({imported:.2f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="steps per round")
    parser.add_argument("--cases", type=int, nargs="*", default=None, help="indices into CASES")
    parser.add_argument("--mixed_precision", default=None, help="e.g. mixed_bfloat16 for the Keras worker")
    parser.add_argument("--jit_compile", default=None, choices=["true", "false", "auto"])
    parser.add_argument("--low_memory", action="store_true",
                        help="the Keras worker calls keras_v4d.training.use_low_memory_allocator() first")
    parser.add_argument("--keras_env", nargs="*", default=[], metavar="NAME=VALUE",
                        help="environment the Keras worker starts with, e.g. TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1 "
                             "MALLOC_MMAP_THRESHOLD_=65536")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    bad = [item for item in args.keras_env if "=" not in item or item.startswith("=")]
    if bad:
        parser.error(f"--keras_env takes NAME=VALUE items, got {bad}")
    keras_env = dict(item.split("=", 1) for item in args.keras_env)
    options = {}
    if args.mixed_precision:
        options["mixed_precision"] = args.mixed_precision
    if args.low_memory:
        options["low_memory"] = True
    if args.jit_compile:
        options["jit_compile"] = {"true": True, "false": False, "auto": "auto"}[args.jit_compile]
    header = (f"training step, {args.rounds} interleaved rounds × {args.steps} steps, medians; "
              f"{os.cpu_count()} CPU cores"
              + (f"; keras options {options}" if options else "")
              + (f"; keras environment {' '.join(args.keras_env)}" if keras_env else "") + "\n"
              + f"{'model':<16} {'batch × U×T×S²':<16} {'keras ms':>9} {'pytorch ms':>10} {'speed ratio':>11} "
              f"{'keras GB (import)':>17} {'pytorch GB (import)':>19}")
    rows = []
    for index in args.cases if args.cases is not None else range(len(CASES)):
        case = CASES[index]
        medians, peaks, machine = compare_with_pytorch(case, "train", args.rounds, args.steps, options, keras_env)
        if header:  # the Keras worker's machine line first (this process stays free of TensorFlow)
            print(machine + "\n" + header)
            header = None
        ratio = medians["pytorch"] / medians["keras"]
        name, batch, units, frames, size = case
        print(f"{name:<16} {f'{batch} × {units}×{frames}×{size}²':<16} {1e3 * medians['keras']:>9.0f} "
              f"{1e3 * medians['pytorch']:>10.0f} {ratio:>10.2f}× {_memory(peaks['keras']):>17} "
              f"{_memory(peaks['pytorch']):>19}", flush=True)
        rows.append(dict(case=case, medians=medians, peaks=peaks, ratio=ratio))
    print("speed ratio = PyTorch step time / Keras step time (> 1: keras_v4d is faster); GB: the worker's peak "
          "resident memory, in brackets its peak after its imports (framework, numpy, model code) alone")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
