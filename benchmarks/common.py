"""Timing helpers shared by the benchmarks: medians over repeats, and the matmul roofline."""

import statistics
import time

import numpy as np


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


def matmul_gflops(size=2048, repeats=10):
    """Dense float32 matmul GFLOP/s (2·n³ per product) on this machine, measured now."""
    import tensorflow as tf

    a = tf.constant(np.random.rand(size, size).astype("float32"))
    b = tf.constant(np.random.rand(size, size).astype("float32"))
    product = tf.function(lambda: tf.matmul(a, b))
    seconds = median_seconds(lambda: product().numpy(), repeats, warmup=2)
    return 2 * size**3 / seconds / 1e9
