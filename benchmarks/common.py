"""What the benchmarks share: the machine line at the head of every output, medians over repeats and
over interleaved rounds, the matmul roofline, and keras_v4d against PyTorch in worker processes, interleaved.

Every benchmark imports ``keras_v4d`` before Keras or TensorFlow, so that TensorFlow's oneDNN
kernels are on where TensorFlow would leave them off, as in the package's tools. This module
imports neither (a PyTorch worker stays free of TensorFlow).
"""

import multiprocessing
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSES = 200


def machine_line():
    """CPU model, cores, vector extensions, oneDNN on or off, TensorFlow's version (imports it)."""
    import keras_v4d  # noqa: F401  (before TensorFlow: the oneDNN setting)
    # isort: split
    import tensorflow as tf

    from keras_v4d._compat import describe_machine

    return f"{describe_machine()}; TensorFlow {tf.__version__}"


def print_machine():
    """The benchmark's first line (see ``machine_line``)."""
    print(machine_line(), flush=True)


def median_seconds(fn, repeats, warmup=1):
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(functions, rounds, warmup=1):
    """Median wall time of each of ``functions`` (name → callable), rounds interleaved: one call of
    each in turn (A, B, C, A, B, C, …) after ``warmup`` calls each; ``{name: seconds}``."""
    for fn in functions.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def tflite_runner(path, xnnpack=True):
    """``run(frames) → probabilities`` of a TFLite file on one interpreter, allocated once (LiteRT on every
    core; ``xnnpack=False``: the built-in kernels only)."""
    from keras_v4d.export import tflite_interpreter

    interpreter = tflite_interpreter(path, xnnpack, num_threads=os.cpu_count())
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()

    def run(frames):  # the file's input: one video's U·T frames
        interpreter.set_tensor(inp["index"], np.asarray(frames).reshape(tuple(inp["shape"])))
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return run


def matmul_gflops(size=2048, repeats=10):
    """Dense float32 matmul GFLOP/s (2·n³ per product) on this machine, measured now."""
    import tensorflow as tf

    a = tf.constant(np.random.rand(size, size).astype("float32"))
    b = tf.constant(np.random.rand(size, size).astype("float32"))
    product = tf.function(lambda: tf.matmul(a, b))
    seconds = median_seconds(lambda: product().numpy(), repeats, warmup=2)
    return 2 * size**3 / seconds / 1e9


def _peak_rss_gb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB → GB


def _serve(connection, step, imported, ready="ready"):
    """Answers the driver: ``steps`` → that many step times; ``None`` → (peak GB, GB after imports)."""
    step()  # build and trace
    connection.send(ready)
    while (steps := connection.recv()) is not None:
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        connection.send(times)
    connection.send((_peak_rss_gb(), imported))


def keras_worker(connection, case, mode, options):
    """keras_v4d's model of ``case``: a training step (``mode="train"``) or an inference forward pass."""
    import keras_v4d  # before Keras: the oneDNN setting
    # isort: split

    import keras

    from keras_v4d.training import compile_for_training, use_low_memory_allocator

    imported = _peak_rss_gb()
    if options.get("low_memory"):
        use_low_memory_allocator()
    name, batch, units, frames, size = case
    if options.get("mixed_precision"):
        keras.mixed_precision.set_global_policy(options["mixed_precision"])
    keras.utils.set_random_seed(0)
    model = getattr(keras_v4d, name)(classes=CLASSES, classifier_activation=None)
    x = np.random.rand(batch, units, frames, size, size, 3).astype("float32")
    y = np.random.randint(0, CLASSES, (batch,))
    if mode == "train":
        compile_for_training(model, steps_per_epoch=1000, **({"jit_compile": options["jit_compile"]}
                                                             if "jit_compile" in options else {}))
        _serve(connection, lambda: model.train_on_batch(x, y), imported, machine_line())
    else:
        import tensorflow as tf

        forward = tf.function(lambda videos: model(videos, training=False))
        videos = tf.constant(x)
        _serve(connection, lambda: forward(videos).numpy(), imported, machine_line())


def torch_worker(connection, case, mode, options):
    """The same network in PyTorch (the tests' official-layout reference), the same step."""
    import torch
    from torch.nn import functional as F

    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
    from torch_reference import TSN

    imported = _peak_rss_gb()
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    name, batch, units, frames, size = case
    net = TSN(CLASSES, 18, num_segments=units, fast_implementation=1, stages_4d=None if "V4D" in name else ())
    x = torch.from_numpy(np.random.rand(batch, units, frames, size, size, 3).astype("float32"))
    y = torch.from_numpy(np.random.randint(0, CLASSES, (batch,)))

    def logits():
        clips = x.reshape(batch * units, *x.shape[2:]).permute(0, 4, 1, 2, 3)
        return net.new_fc(net.base_model(clips)).reshape(batch, units, -1).mean(dim=1)

    if mode == "train":
        net.train()
        decay = [p for n, p in net.named_parameters() if p.ndim > 1]
        no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]  # BN and biases (as the Keras recipe)
        optimizer = torch.optim.SGD([{"params": decay, "weight_decay": 1e-5},
                                     {"params": no_decay, "weight_decay": 0}], lr=0.01, momentum=0.9)

        def step():
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(logits(), y).backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 20.0)
            optimizer.step()
    else:
        net.eval()

        def step():
            with torch.no_grad():
                logits().numpy()

    _serve(connection, step, imported)


def _receive(process, connection):
    """The worker's next message; a clear error if the worker died instead of answering."""
    while not connection.poll(1.0):
        if not process.is_alive():
            raise RuntimeError(f"the {process.name} worker died (exit code {process.exitcode}); "
                               "see its traceback above")
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


def compare_with_pytorch(case, mode, rounds, steps, keras_options=None, keras_env=None):
    """Median step seconds and (peak GB, GB after imports) of keras_v4d and PyTorch on ``case``
    ``(model, batch, U, T, size)``: each in its own process, rounds interleaved (keras, pytorch, …);
    and the Keras worker's ``machine_line()``.

    The caller should not have imported TensorFlow: a started process's peak memory includes its
    parent's at the start (Linux carries the peak across ``exec``)."""
    context = multiprocessing.get_context("spawn")
    workers, machine = {}, None
    for label, target, options, env in (("keras", keras_worker, keras_options or {}, keras_env or {}),
                                        ("pytorch", torch_worker, {}, {})):
        parent, child = context.Pipe()
        process = _start(context, target, (child, case, mode, options), label, env)
        workers[label] = (process, parent)
        ready = _receive(process, parent)  # started one after the other: one builds while the other idles
        machine = ready if label == "keras" else machine
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
    return {label: statistics.median(t) for label, t in times.items()}, peaks, machine
