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
import multiprocessing
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = [  # (model, batch, U, T, size)
    ("V4DResNet18", 2, 4, 4, 160),
    ("I3DSlowResNet18", 2, 4, 4, 160),
    ("V4DResNet18", 1, 4, 4, 224),
]
CLASSES = 200


def _peak_rss_gb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB → GB


def keras_worker(connection, case, options):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    import keras_v4d
    from keras_v4d.training import compile_for_training, use_low_memory_allocator

    imported = _peak_rss_gb()
    if options.get("low_memory"):
        use_low_memory_allocator()

    name, batch, units, frames, size = case
    if options.get("mixed_precision"):
        keras.mixed_precision.set_global_policy(options["mixed_precision"])
    keras.utils.set_random_seed(0)
    model = getattr(keras_v4d, name)(classes=CLASSES, classifier_activation=None)
    compile_for_training(model, steps_per_epoch=1000, **({"jit_compile": options["jit_compile"]}
                                                         if "jit_compile" in options else {}))
    x = np.random.rand(batch, units, frames, size, size, 3).astype("float32")
    y = np.random.randint(0, CLASSES, (batch,))
    model.train_on_batch(x, y)  # build and trace
    connection.send("ready")
    while (steps := connection.recv()) is not None:
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times.append(time.perf_counter() - start)
        connection.send(times)
    connection.send((_peak_rss_gb(), imported))


def torch_worker(connection, case, options):
    import numpy as np
    import torch
    from torch.nn import functional as F

    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
    from torch_reference import TSN

    imported = _peak_rss_gb()
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    name, batch, units, frames, size = case
    net = TSN(CLASSES, 18, num_segments=units, fast_implementation=1, stages_4d=None if "V4D" in name else ())
    net.train()
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]  # BN and biases (as the Keras recipe)
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": 1e-5}, {"params": no_decay, "weight_decay": 0}],
                                lr=0.01, momentum=0.9)
    x = torch.from_numpy(np.random.rand(batch, units, frames, size, size, 3).astype("float32"))
    y = torch.from_numpy(np.random.randint(0, CLASSES, (batch,)))

    def step():
        optimizer.zero_grad(set_to_none=True)
        clips = x.reshape(batch * units, *x.shape[2:]).permute(0, 4, 1, 2, 3)
        logits = net.new_fc(net.base_model(clips)).reshape(batch, units, -1).mean(dim=1)
        F.cross_entropy(logits, y).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 20.0)
        optimizer.step()

    step()
    connection.send("ready")
    while (steps := connection.recv()) is not None:
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        connection.send(times)
    connection.send((_peak_rss_gb(), imported))


def _receive(process, connection):
    """The worker's next message; a clear error if the worker died instead of answering."""
    while not connection.poll(1.0):
        if not process.is_alive():
            raise RuntimeError(f"the {process.name} worker died (exit code {process.exitcode}); see its traceback above")
    return connection.recv()


def _start(context, target, args, name, env):
    """Spawns ``target(*args)``; ``env`` is the environment the new process starts with, on top of
    this one's (read at its start-up: glibc's ``MALLOC_*`` and TensorFlow's allocator switches)."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        process = context.Process(target=target, args=args, daemon=True, name=name)
        process.start()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value
    return process


def compare(case, rounds, steps, keras_options, keras_env=None):
    context = multiprocessing.get_context("spawn")
    workers = {}
    for label, target, options, env in (("keras", keras_worker, keras_options, keras_env or {}),
                                        ("pytorch", torch_worker, {}, {})):
        parent, child = context.Pipe()
        process = _start(context, target, (child, case, options), label, env)
        workers[label] = (process, parent)
        assert _receive(process, parent) == "ready"  # started one after the other: one builds while the other idles
    times = {label: [] for label in workers}
    for _ in range(rounds):
        for label, (process, connection) in workers.items():  # interleaved: keras, pytorch, keras, …
            connection.send(steps)
            times[label].extend(_receive(process, connection))
    peaks = {}
    for label, (process, connection) in workers.items():
        connection.send(None)
        peaks[label] = _receive(process, connection)
        process.join()
    return {label: statistics.median(t) for label, t in times.items()}, peaks


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
    print(f"training step, {args.rounds} interleaved rounds × {args.steps} steps, medians; {os.cpu_count()} CPU cores"
          + (f"; keras options {options}" if options else "")
          + (f"; keras environment {' '.join(args.keras_env)}" if keras_env else ""))
    print(f"{'model':<16} {'batch × U×T×S²':<16} {'keras ms':>9} {'pytorch ms':>10} {'speed ratio':>11} "
          f"{'keras GB (import)':>17} {'pytorch GB (import)':>19}")
    rows = []
    for index in args.cases if args.cases is not None else range(len(CASES)):
        case = CASES[index]
        medians, peaks = compare(case, args.rounds, args.steps, options, keras_env)
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
