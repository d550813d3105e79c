"""Decoding training videos on other hosts with the tf.data service (``tf.data.experimental.service``).

A dispatcher (``start_dispatcher``) hands out work; workers (``start_worker``) decode and augment; the
trainer (``service_video_dataset``) reads the finished videos. Video files are decoded by PyAV in
Python, and a tf.data service worker cannot run a ``tf.py_function`` of the trainer's process (its
graph names the function by a token of the trainer's Python registry: ``Could not find callback with
key=pyfunc_0``; tensorflow/tensorflow#50252). So each worker registers the decoding function of the
list it was started with under a token named after that list's content (``video_token``), and the
trainer's graph calls that token: the frames are decoded, cropped and normalised on the workers.

Every epoch is a new job over a new permutation of the list (``distributed_epoch``: the dispatcher
hands each index to one worker), so each video is read once per epoch. A worker that stops loses the
videos it had taken (the service visits each at most once); the trainer counts what each epoch
received by index and reports the rest (``ServiceReader.lost``). Observed here (TensorFlow 2.20): after a
worker is killed the service does not always end the job (the reader keeps waiting for the dead
worker's task), so an epoch that has delivered nothing for ``STALL_SECONDS`` ends there. An epoch's
read is cancelled when the epoch ends, however it ends (``cancellable_iterator``), so its service
client, which would otherwise keep calling the dispatcher, ends with it; ``ServiceReader.close`` ends
the epochs being read.
"""

import hashlib
import json
import logging
import queue
import socket
import threading
import urllib.parse

import numpy as np
import tensorflow as tf

from keras_v4d._compat import cancellable_iterator, register_py_callback
from keras_v4d.data.options import DEFAULT_OPTIONS, VideoDatasetInfo, record_argument
from keras_v4d.data.pipeline import sample_arguments, sample_shape
from keras_v4d.data.skip_log import SkipLog, check_labels
from keras_v4d.data.sources import VideoFiles, resolve_source
from keras_v4d.data.transforms import train_transform
from keras_v4d.data.video_io import VideoReadError, sample_video
from keras_v4d.records.sampling import DEFAULT_SAMPLING, check_positive_int

logger = logging.getLogger("keras_v4d.data")
AUTOTUNE = tf.data.AUTOTUNE
WAIT_SECONDS = 300  # the trainer's wait for an epoch's first video before it gives up (no worker running)
STALL_SECONDS = 60  # nothing more for this long: the epoch ends, what did not come is lost (a worker stopped)
CONNECT_SECONDS = 10  # the wait for the dispatcher's port to answer at start-up
JOIN_SECONDS = 10  # the wait for an ended epoch's reading thread to let go of its service client
_OUTPUTS = (tf.uint8, tf.int32, tf.string, tf.string, tf.int32, tf.int32)  # frames, label, id, reason, repair


class DataServiceError(ValueError):
    """The tf.data service cannot deliver (no dispatcher, no worker, a worker serving other data)."""


def service_address(address, name="data_service"):
    """``"grpc://HOST:PORT"`` from ``"grpc://HOST:PORT"`` or ``"HOST:PORT"``; a ``ValueError`` naming
    ``name`` otherwise."""
    text = str(address or "").strip()
    parsed = urllib.parse.urlsplit(text if "://" in text else f"grpc://{text}")
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme != "grpc" or not parsed.hostname or not port or parsed.path not in ("", "/"):
        raise ValueError(f"{name}: expected grpc://HOST:PORT (a tf.data service dispatcher), got {address!r}")
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    return f"grpc://{host}:{port}"


def check_dispatcher(address, timeout=CONNECT_SECONDS):
    """Raises ``DataServiceError`` naming ``address`` when nothing listens there within ``timeout`` s."""
    parsed = urllib.parse.urlsplit(service_address(address))
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=timeout).close()
    except OSError as error:
        raise DataServiceError(
            f"no tf.data service dispatcher answers at {address} ({error.strerror or error}; waited up to "
            f"{timeout:g} s): start one with `keras-v4d data-service --dispatcher --port {parsed.port}`") from None


def video_token(videos):
    """The name under which workers serve the video list ``videos``: a digest of its ids and labels."""
    content = json.dumps([list(map(str, videos.ids)), [int(label) for label in videos.labels]])
    return f"keras_v4d/video_files/{hashlib.sha256(content.encode()).hexdigest()[:20]}"


def _video_files(source, root, class_names, name):
    resolved = resolve_source(source, root, class_names)  # a resolved source comes back as it is
    if not isinstance(resolved, VideoFiles):
        raise ValueError(f"{name}: the tf.data service serves video files (a `path label` list or class "
                         f"folders); {source!r} is {type(resolved).__name__}, decoded with TensorFlow ops in the "
                         "graph — read it on the trainer, or list the videos it was made from")
    return resolved


def serve_videos(source, root=None, class_names=None):
    """Registers, in this (worker) process, the decoding function of the video list ``source``; returns
    its token. ``start_worker`` calls it; call it before the worker starts."""
    videos = _video_files(source, root, class_names, "serve_videos")

    def load(index, num_units, frames_per_unit, stride, max_frame_pixels):
        i, units, frames_per, step = int(index), int(num_units), int(frames_per_unit), int(stride)
        limit = None if int(max_frame_pixels) < 0 else int(max_frame_pixels)
        path, video_id = videos.paths[i], videos.ids[i]
        empty = np.zeros((units * frames_per, 1, 1, 3), np.uint8)
        try:
            frames, repair = sample_video(path, units, frames_per, step, True, None, limit)
        except Exception as error:  # noqa: BLE001 - nothing a file does may stop the workers
            reason = str(error) if isinstance(error, VideoReadError) else (
                f"{path}: cannot be read ({type(error).__name__}: {error})")
            logger.warning("skipped %s: %s", video_id, reason)
            return empty, videos.labels[i], video_id, reason, 0, 0
        decoded, claimed = repair or (0, 0)
        return frames, videos.labels[i], video_id, "", decoded, claimed

    token = video_token(videos)
    register_py_callback(token, load, list(_OUTPUTS))
    return token


def start_dispatcher(port=0, worker_timeout=10.0):
    """A tf.data service dispatcher on ``port`` (0: any free port; its address: ``.target``). A worker
    silent for ``worker_timeout`` s is dropped and the videos it had taken are lost to their epoch."""
    # Missing workers are looked for at each job GC check (default: every 10 minutes).
    config = tf.data.experimental.service.DispatcherConfig(port=int(port), worker_timeout_ms=int(1000 * worker_timeout),
                                                           job_gc_check_interval_ms=int(500 * worker_timeout))
    return tf.data.experimental.service.DispatchServer(config)


def start_worker(dispatcher, sources, port, host="localhost", heartbeat=1.0):
    """A tf.data service worker on ``port`` serving the video lists ``sources`` (``serve_videos``) to the
    dispatcher at ``dispatcher`` (``HOST:PORT``); the trainer reaches it at ``host:port``."""
    sources = [sources] if isinstance(sources, str) else list(sources)
    if not sources:
        raise ValueError("start_worker: give at least one video list to serve")
    tokens = [serve_videos(source) for source in sources]
    address = service_address(dispatcher, "dispatcher").split("://", 1)[1]
    config = tf.data.experimental.service.WorkerConfig(dispatcher_address=address, worker_address=f"{host}:{port}",
                                                       port=int(port), heartbeat_interval_ms=int(1000 * heartbeat))
    server = tf.data.experimental.service.WorkerServer(config)
    return server, tokens


class ServiceReader:
    """The trainer's side: a ``tf.data.Dataset`` (``dataset``) whose every pass reads one epoch from
    the service — a new permutation of the usable videos, decoded and augmented on the workers — and
    counts by index what arrived. ``lost`` lists the videos of the last complete pass that no worker
    delivered (a worker stopped while it held them); skipped and repaired videos go to ``skip_log``."""

    def __init__(self, address, videos, keep, sampling, batch_size, skip_log, options=DEFAULT_OPTIONS,
                 timeout=WAIT_SECONDS, stall=STALL_SECONDS):
        self.address, self.videos, self.keep, self.skip_log = address, videos, np.asarray(keep, np.int32), skip_log
        self.token, self.timeout, self.stall, self.lost = video_token(videos), timeout, stall, []
        self.sampling = sampling
        self._max_frame_pixels = -1 if options.max_frame_pixels is None else int(options.max_frame_pixels)
        self._random, self._iterations = np.random.default_rng(), set()
        self._shape = sample_shape(sampling, training=True)
        spec = (tf.TensorSpec(self._shape, tf.float32), tf.TensorSpec((), tf.int32))
        self.dataset = tf.data.Dataset.from_generator(self._epoch, output_signature=spec).batch(
            batch_size, drop_remainder=options.drops_remainder(True)).prefetch(AUTOTUNE)

    def _epoch_dataset(self, order):
        """One epoch's job: the indices in ``order``, split among the workers, each decoded there."""
        sampling, token, shape = self.sampling, self.token, self._shape
        sample_args = sample_arguments(sampling, training=True)
        settings = [tf.constant(v, tf.int32) for v in sample_args] + [tf.constant(self._max_frame_pixels, tf.int64)]

        def decode(index):
            frames, label, video_id, reason, decoded, claimed = tf.raw_ops.EagerPyFunc(
                input=[index, *settings], token=token, Tout=list(_OUTPUTS))
            frames.set_shape((sample_args[0] * sample_args[1], None, None, 3))
            video = tf.cond(tf.equal(reason, ""), lambda: tf.reshape(train_transform(
                frames, sampling.crop_size, sampling.short_side, sampling.area_range), shape), lambda: tf.zeros(shape))
            return video, tf.reshape(label, ()), index, tf.reshape(reason, ()), decoded, claimed

        dataset = tf.data.Dataset.from_tensor_slices(order).map(decode, num_parallel_calls=AUTOTUNE,
                                                                deterministic=False)
        return dataset.apply(tf.data.experimental.service.distribute("distributed_epoch", self.address,
                                                                     compression=None))

    def _fill(self, iteration, order):
        """The reading thread of one epoch: puts the elements into ``iteration.elements``, then ``None``
        (the end) or the error; a ``stop`` ends it, also in the middle of a blocked read."""
        iterator = None
        try:
            iterator = cancellable_iterator(self._epoch_dataset(order))
            iteration.iterator = iterator
            if iteration.stopped.is_set():
                return
            for element in iterator:
                if not iteration.put(element):
                    return
            iterator.close()  # the job is done: its client goes before the end is known
            iteration.put(None)
        except Exception as error:  # noqa: BLE001 - handed to the reading thread
            if not iteration.stopped.is_set():  # else: the cancelled read
                iteration.put(error.with_traceback(None))
        finally:
            if iterator is not None:
                iterator.close()
            if iteration.stopped.is_set():  # wakes a reader waiting for an epoch stopped by close()
                try:
                    iteration.elements.put_nowait(None)
                except queue.Full:
                    pass

    def _error(self, error):
        text = str(error)
        if "Could not find callback with key=" + self.token in text:
            return DataServiceError(
                f"a worker of the tf.data service at {self.address} does not serve this training list (its "
                f"videos or labels differ from the list it was started with; token {self.token}): start every "
                "worker with `keras-v4d data-service --worker --train` on the same list")
        message = text.strip().splitlines()[0] if text.strip() else type(error).__name__
        return DataServiceError(f"the tf.data service at {self.address} failed: {message}")

    def _epoch(self):
        """One pass (epoch): yields ``(video, label)`` as the workers deliver them."""
        self.lost = []
        order = self._random.permutation(self.keep)
        iteration = _Iteration()
        iteration.thread = threading.Thread(target=self._fill, args=(iteration, order), daemon=True,
                                            name="keras_v4d_data_service")
        self._iterations.add(iteration)
        iteration.thread.start()
        received = np.zeros(len(self.videos), np.int64)
        try:
            while True:
                try:
                    element = iteration.elements.get(timeout=self.stall if received.any() else self.timeout)
                except queue.Empty:
                    if received.any():
                        logger.warning("nothing from the tf.data service at %s for %g s: the epoch ends here",
                                       self.address, self.stall)
                        break
                    raise DataServiceError(
                        f"no video from the tf.data service at {self.address} for {self.timeout:g} s: is a worker "
                        "serving this list running (`keras-v4d data-service --worker --dispatcher_address "
                        f"{self.address.split('://', 1)[1]} --train LIST`)?") from None
                if iteration.stopped.is_set():  # close(): the epoch ends, nothing counted as lost
                    return
                if element is None:
                    break
                if isinstance(element, Exception):
                    raise self._error(element) from None
                video, label, index, reason, decoded, claimed = element
                index = int(index)
                received[index] += 1
                video_id, reason = self.videos.ids[index], reason.numpy().decode()
                if reason:
                    self.skip_log.reject(video_id, reason)
                    continue
                if int(claimed):
                    self.skip_log.repair(video_id, int(decoded), int(claimed))
                yield video, label
        finally:
            iteration.end()
            self._iterations.discard(iteration)
        self.lost = [self.videos.ids[i] for i in self.keep if received[i] == 0]
        if self.lost:
            logger.warning("%d of %d video(s) lost to a tf.data service worker that stopped mid-epoch",
                           len(self.lost), len(self.keep))

    def close(self):
        """Ends the epochs being read now, as if their data had ended, and lets go of their tf.data
        service clients (without it, an epoch the trainer stopped reading keeps its client calling the
        dispatcher until it is collected). The reader can be read again afterwards."""
        for iteration in list(self._iterations):
            iteration.end()




# Said by `keras-v4d data-service` at start and in its help (docs/security.md).
EXPOSURE_WARNING = ("the tf.data service listens on every network interface without authentication: any host that "
                    "reaches the dispatcher can register a dataset graph that the workers run, TensorFlow's file "
                    "operations included. Run it on a private network only (docs/security.md).")

def put_until_stopped(elements, item, stopped, poll=1.0):
    """Puts ``item`` into the bounded queue ``elements``, waiting while it is full, unless the event
    ``stopped`` is set first (then ``False``): a producer thread that never blocks past its consumer."""
    while not stopped.is_set():
        try:
            elements.put(item, timeout=poll)
            return True
        except queue.Full:
            continue
    return False

class _Iteration:
    """One epoch's reading: its thread, the elements it read (a bounded queue), its iterator; ``end``
    (any thread) stops the thread, cancelling a read in progress, and waits for it to let go."""

    def __init__(self):
        self.elements, self.stopped = queue.Queue(maxsize=8), threading.Event()
        self.iterator = self.thread = None

    def put(self, item):
        """Puts ``item`` into ``elements`` unless the reading stops first (then ``False``)."""
        return put_until_stopped(self.elements, item, self.stopped)

    def end(self, wait=JOIN_SECONDS):
        self.stopped.set()
        iterator = self.iterator
        if iterator is not None:
            iterator.cancel()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(wait)


def service_video_dataset(address, source, sampling=None, *, batch_size=8, num_classes=None, options=None,
                          timeout=WAIT_SECONDS, stall=STALL_SECONDS):
    """``video_dataset(source, sampling, training=True, ...)`` read from the tf.data service at ``address``.

    Returns ``(dataset, info, reader)``: the dataset of the same elements ``(videos, labels)`` as the
    local pipeline, decoded and augmented by the workers serving ``source``, its ``VideoDatasetInfo``
    and the ``ServiceReader``. Each pass (epoch) is a new permutation of the list, every video read
    once unless a worker stops holding it (then it is listed in ``reader.lost`` for that pass).
    ``options``: ``DataOptions``; the service reads ``strict``, ``max_frame_pixels`` and
    ``drop_remainder`` (the order is the service's). ``timeout``: seconds to wait for an epoch's first
    video before ``DataServiceError``; ``stall``: seconds without a video after which an epoch ends.
    Raises ``ValueError`` naming the argument at fault, ``DataServiceError`` when no dispatcher answers
    at ``address`` within ``CONNECT_SECONDS``.
    """
    address = service_address(address)
    sampling = record_argument(sampling, DEFAULT_SAMPLING, "service_video_dataset", "sampling")
    options = record_argument(options, DEFAULT_OPTIONS, "service_video_dataset", "options")
    check_positive_int(batch_size, "batch_size", "service_video_dataset")
    videos = _video_files(source, None, None, "data_service")
    num_classes = num_classes or (len(videos.class_names) if videos.class_names else None)
    skip_log = SkipLog(strict=options.is_strict(training=True))
    keep = check_labels(videos, num_classes, skip_log)
    if not keep:
        raise ValueError("service_video_dataset: no usable videos (every entry was rejected)")
    check_dispatcher(address)
    reader = ServiceReader(address, videos, keep, sampling, batch_size, skip_log, options, timeout, stall)
    return reader.dataset, VideoDatasetInfo(skip_log, videos.class_names, len(keep)), reader
