"""Where training runs: the ``tf.distribute`` strategies, a lower-memory allocator for CPU runs, and
``Distribution``, the record of both for a run."""

import ctypes
import ctypes.util
import dataclasses
import os
import platform

import keras
import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multiworker")
"""What ``make_strategy`` and ``--strategy`` take: one device, every local GPU, or one process per
host (``TF_CONFIG``)."""


def make_strategy(kind="default"):
    """``"default"``, ``"mirrored"`` (all local devices) or ``"multiworker"`` (TF_CONFIG)."""
    strategies = dict(zip(STRATEGIES, (tf.distribute.get_strategy, tf.distribute.MirroredStrategy,
                                       tf.distribute.MultiWorkerMirroredStrategy)))
    if kind not in strategies:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {kind!r}.")
    return strategies[kind]()


def chief_and_task(strategy):
    """``(is_chief, "worker-1")`` of this process in a multi-worker cluster; ``(True, None)`` otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if resolver is None or task_type is None:
        return True, None
    jobs = resolver.cluster_spec().as_dict()
    chief = task_type == "chief" or (task_type == "worker" and resolver.task_id == 0 and "chief" not in jobs)
    return chief, f"{task_type}-{resolver.task_id}"


def describe_devices(strategy):
    """One line, in a user's words: where the run's steps run (``"1 GPU (…)"``, ``"CPU (…)"``)."""
    from keras_v4d._compat import describe_machine

    gpus = tf.config.list_logical_devices("GPU")
    replicas = strategy.num_replicas_in_sync
    if not gpus:
        return f"{describe_machine()}; no GPU that TensorFlow can use"
    kind = type(strategy).__name__
    names = sorted({tf.config.experimental.get_device_details(d).get("device_name", "GPU")
                    for d in tf.config.list_physical_devices("GPU")})
    return f"{len(gpus)} GPU(s) ({', '.join(names)}); {replicas} replica(s) in sync ({kind})"


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)


def use_low_memory_allocator(mmap_threshold=64 * 1024):
    """Trades training speed for memory on CPU (TensorFlow backend, Linux with glibc).

    TensorFlow's oneDNN build allocates tensors from a pool that keeps the blocks it frees, and
    glibc keeps freed blocks below its (adaptive) mmap threshold. This makes TensorFlow use the
    system allocator (``TF_ONEDNN_USE_SYSTEM_ALLOCATOR``) and fixes glibc's threshold at
    ``mmap_threshold`` bytes (``mallopt(M_MMAP_THRESHOLD)``), so every larger tensor goes back to
    the system as soon as it is freed: a lower peak of resident memory for a slower step (the
    figures: benchmarks/README.md, ``benchmarks/training.py --low_memory``).

    Call it before TensorFlow allocates its first tensor (before building a model): TensorFlow
    picks its allocator once. Raises ``RuntimeError`` when that is too late, on another backend or
    without glibc. With oneDNN off (``TF_ENABLE_ONEDNN_OPTS=0``) TensorFlow has no pool and already
    allocates from the system: only the mmap threshold is set, at any time.
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"use_low_memory_allocator: TensorFlow's allocator only; the backend is "
                           f"{keras.backend.backend()!r}")
    if platform.libc_ver()[0] != "glibc":
        raise RuntimeError("use_low_memory_allocator: needs Linux with glibc (it sets glibc's mmap threshold)")
    before = os.environ.get("TF_ONEDNN_USE_SYSTEM_ALLOCATOR")
    os.environ["TF_ONEDNN_USE_SYSTEM_ALLOCATOR"] = "1"
    probe = tf.zeros((1 << 18,))  # 1 MiB: counted by the pool's statistics if the pool serves it
    try:
        in_pool = tf.config.experimental.get_memory_info("CPU:0")["current"]
    except ValueError:  # "Allocator stats not available": no oneDNN pool, TensorFlow's allocator is the system's
        in_pool = 0
    del probe
    if in_pool:
        if before is None:  # leave no setting behind for processes started later
            del os.environ["TF_ONEDNN_USE_SYSTEM_ALLOCATOR"]
        else:
            os.environ["TF_ONEDNN_USE_SYSTEM_ALLOCATOR"] = before
        raise RuntimeError("use_low_memory_allocator: TensorFlow already allocates from its oneDNN pool; call it "
                           "before building a model or running any TensorFlow op")
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) != 1:
        raise RuntimeError(f"use_low_memory_allocator: glibc refused mmap_threshold={mmap_threshold!r}")


@dataclasses.dataclass(frozen=True)
class Distribution:
    """Where a run trains.

    Attributes:
        strategy: ``"default"`` (one device), ``"mirrored"`` (all local GPUs) or ``"multiworker"``
            (the ``TF_CONFIG`` hosts).
        low_memory: ``use_low_memory_allocator()`` (CPU, glibc): a lower peak of resident memory for a
            slower step; start the run before anything else in the process has run TensorFlow.
    """

    strategy: str = "default"
    low_memory: bool = False

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")

    def start(self):
        """The ``tf.distribute.Strategy``, made before any other TensorFlow op runs (as
        ``MultiWorkerMirroredStrategy`` must be), then the allocator; ``ValueError`` naming ``low_memory``."""
        strategy = make_strategy(self.strategy)
        if self.low_memory:
            try:
                use_low_memory_allocator()
            except RuntimeError as error:
                raise ValueError(f"low_memory: {error}") from None
        return strategy
