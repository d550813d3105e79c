"""``video_dataset``: tf.data pipelines of whole-video samples ``(B, U, T, H, W, 3)``.

Three sources go through the same sampler, transforms and rules: video files (decoded with PyAV
in a ``py_function``), rawframe folders (only the sampled frames' JPEG files are read, in the
graph) and TFRecord shards (only the sampled frames' JPEGs are decoded, in the graph).

Damaged data never stops a run (unless ``strict``) and is never lost without a trace: every
sample that cannot be used is counted in the pipeline's ``SkipLog`` with its name and reason, every
partly decodable video that was used is recorded there as *repaired*.

``video_dataset`` returns a ``VideoDataset``: the ``tf.data.Dataset`` and what travels with it
(the skip log, the class names, the number of videos), which no ``.map()`` can drop.
"""

import concurrent.futures
import dataclasses
import logging
import threading

import numpy as np
import tensorflow as tf

from keras_v4d.data.frame_indices import segment_indices
from keras_v4d.data.frame_size import (
    MAX_FRAME_PIXELS,
    check_max_frame_pixels,
    encoded_frame_size,
    frame_size_error,
    frame_size_of,
)
from keras_v4d.data.sources import (
    DEFAULT_FRAME_TEMPLATE,
    RawFrames,
    TFRecordFiles,
    parse_frame_template,
    resolve_source,
)
from keras_v4d.data.tfrecord import parse_example, scan_shard
from keras_v4d.data.transforms import eval_transform, train_transform
from keras_v4d.data.video_io import VideoReadError, read_rawframe_folder, sample_video
from keras_v4d.records.sampling import DEFAULT_SAMPLING

logger = logging.getLogger("keras_v4d.data")
AUTOTUNE = tf.data.AUTOTUNE


class BadVideoError(ValueError):
    """A sample that cannot be used; the message names the video."""


class SkipLog:
    """Counts and logs what a pipeline skipped or repaired, with the video (or shard) and why.

    ``entries``: ``(video, reason)`` for every sample skipped (a damaged TFRecord shard is one
    entry named by the shard's path). ``repaired``: ``(video, frames_decoded, frames_claimed)`` for
    every partly decodable video that was re-sampled over its decodable frames and used. Each
    pass over the dataset (epoch) logs again what it meets. In strict mode ``reject`` raises
    ``BadVideoError`` instead of skipping (a repair is not an error and never raises).
    """

    def __init__(self, strict=False):
        self.strict = strict
        self.entries = []
        self.repaired = []
        self._lock = threading.Lock()

    @property
    def count(self):
        return len(self.entries)

    def counts(self):
        with self._lock:
            return {"skipped": len(self.entries), "repaired": len(self.repaired)}

    def reject(self, video, reason):
        message = f"{video}: {reason}"
        if self.strict:
            raise BadVideoError(message)
        with self._lock:
            self.entries.append((video, reason))
            count = len(self.entries)
        logger.warning("skipped %s (%d skipped so far)", message, count)

    def repair(self, video, decoded, claimed):
        with self._lock:
            self.repaired.append((video, int(decoded), int(claimed)))
        logger.warning("repaired %s: only %d of the %d frames it claims decode; units sampled over those",
                       video, decoded, claimed)

    def rows(self):
        """``(skipped, repaired)``: lists of ``(video, reason)`` so far."""
        with self._lock:
            entries, repaired = list(self.entries), list(self.repaired)
        return ([(str(video), str(reason)) for video, reason in entries],
                [(str(video), f"only {decoded} of the {claimed} frames it claims decode; units sampled over those")
                 for video, decoded, claimed in repaired])

    def summary(self):
        with self._lock:
            entries, repaired = list(self.entries), list(self.repaired)
        text = f"{len(entries)} video(s) skipped, {len(repaired)} repaired"
        text += "".join(f"\n  {v}: {r}" for v, r in entries)
        if repaired:
            text += "\n  repaired (frames decoded / claimed):"
            text += "".join(f"\n  {v}: {d} / {c}" for v, d, c in repaired)
        return text


def bad_video_message(error):
    """The message of a ``BadVideoError`` raised inside a ``tf.data`` pipeline (TensorFlow wraps it in
    an ``OpError`` followed by a node trace), or ``None`` when ``error`` is not one."""
    text = str(error)
    if "BadVideoError" not in text and type(error).__name__ != "BadVideoError":
        return None
    message = text.split("BadVideoError: ")[-1].strip()
    return message.split("\n")[0].split(" [[{{node")[0].strip() or text


@dataclasses.dataclass
class VideoDataset:
    """A pipeline of ``video_dataset`` and what is known about it without decoding.

    Attributes:
        dataset: the ``tf.data.Dataset`` (elements: see ``video_dataset``).
        skip_log: the ``SkipLog`` of what was skipped or repaired and why, filled as it is read.
        class_names: the source's class names (``None`` when it names none).
        num_videos: the videos the source holds (list entries whose label is in range, or
            TFRecord records counted from the shards' framing; ``None`` if a shard cannot be read).
    """

    dataset: tf.data.Dataset
    skip_log: SkipLog
    class_names: list | None
    num_videos: int | None


def read_video_units(path, num_units, frames_per_unit, stride, training=False, skip_log=None, seed=None,
                     max_frame_pixels=MAX_FRAME_PIXELS):
    """The frames of U units sampled from the video file at ``path``: ``(U·T, H, W, 3)`` uint8.

    A partly decodable file is sampled over the frames that decode and recorded with
    ``skip_log.repair`` (or logged as a warning without a ``skip_log``). Raises
    ``VideoReadError`` naming ``path`` when the file cannot be opened, no frame decodes or its
    frames are larger than ``max_frame_pixels`` (width × height, from the header; None: no limit).
    """
    frames, repair = sample_video(path, num_units, frames_per_unit, stride, training, seed, max_frame_pixels)
    if repair is not None:
        if skip_log is not None:
            skip_log.repair(path, *repair)
        else:
            logger.warning("repaired %s: only %d of the %d frames it claims decode; units sampled over those",
                           path, *repair)
    return frames


def load_video_views(path, num_units=DEFAULT_SAMPLING.test_num_units, frames_per_unit=DEFAULT_SAMPLING.frames_per_unit,
                     stride=DEFAULT_SAMPLING.stride, crop_size=DEFAULT_SAMPLING.test_crop,
                     short_side=DEFAULT_SAMPLING.short_side, num_crops=DEFAULT_SAMPLING.test_num_crops,
                     skip_log=None, max_frame_pixels=MAX_FRAME_PIXELS):
    """One video file as evaluation views ``(num_crops, U, T, S, S, 3)`` float32 (centred units,
    the same preprocessing as ``video_dataset(training=False)``). Raises ``VideoReadError``;
    a partly decodable file is repaired (see ``read_video_units``)."""
    frames = read_video_units(path, num_units, frames_per_unit, stride, skip_log=skip_log,
                              max_frame_pixels=max_frame_pixels)
    views = eval_transform(tf.convert_to_tensor(frames), crop_size, short_side, num_crops)
    return tf.reshape(views, (num_crops, num_units, frames_per_unit, crop_size, crop_size, 3))


def _decode_jpegs(jpegs):
    """JPEG strings ``(n,)`` → RGB uint8 ``(n, H, W, 3)`` (``preprocess_ops_3d.decode_jpeg`` without its
    deprecated ``map_fn`` arguments, which print warnings)."""
    return tf.map_fn(lambda data: tf.io.decode_jpeg(data, channels=3), jpegs, fn_output_signature=tf.uint8)


def _frames_fit(jpegs, max_frame_pixels):
    """Whether every encoded frame of ``jpegs`` ``(n,)`` has an image header (JPEG, PNG, GIF) whose size
    is within ``max_frame_pixels``: read before anything is decoded, so a bomb is never decoded."""
    sizes = tf.map_fn(encoded_frame_size, jpegs, fn_output_signature=tf.int64)
    known = tf.reduce_all(sizes >= 0)
    if max_frame_pixels is None:
        return known
    return known & tf.reduce_all(sizes[:, 0] * sizes[:, 1] <= max_frame_pixels)


def _guarded(dataset, load, fallback, training):
    """``dataset.map(load)`` where an element whose ``load`` raises becomes ``fallback(element)``.

    tf.data has no try/except: each element runs in a one-element dataset whose error is dropped
    (``ignore_errors``), followed by the fallback; ``take(1)`` keeps whichever comes first. The
    fallback marks the element as failed, so it is reported (not silently lost) downstream.
    """
    def one(*element):
        loaded = tf.data.Dataset.from_tensors(element).map(load).ignore_errors()
        return loaded.concatenate(tf.data.Dataset.from_tensors(fallback(*element))).take(1)

    return dataset.interleave(one, cycle_length=AUTOTUNE, block_length=1, num_parallel_calls=AUTOTUNE,
                              deterministic=not training)


def _sample_seeds(dataset, seed):
    """Zips each element with a sampling seed drawn from a seeded stream (new draws every epoch),
    so with ``seed`` set the same list gives the same units whatever the source format."""
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return tf.data.Dataset.zip(dataset, seeds).map(lambda element, sample_seed: (*element, sample_seed))


def _units(num_frames, sample_args, training, sample_seed, seeded):
    seed = tf.stack([sample_seed, tf.constant(0, tf.int64)]) if seeded else None
    return segment_indices(num_frames, *sample_args, training, seed=seed)


_INT32_LABELS = 2**31  # labels travel as int32: a larger one would wrap around to another class


def _label_problem(label, num_classes):
    """Why ``label`` is no class index (outside ``[0, num_classes)``, or beyond int32), or None."""
    if num_classes is not None and not 0 <= label < num_classes:
        return f"label {label} outside [0, {num_classes})"
    if not 0 <= label < _INT32_LABELS:
        return f"label {label} outside [0, {_INT32_LABELS - 1}], the int32 range of class indices"
    return None


def _check_labels(videos, num_classes, skip_log):
    keep = []
    counts = getattr(videos, "num_frames", None)
    for i, label in enumerate(videos.labels):
        problem = _label_problem(label, num_classes)
        if problem is not None:
            skip_log.reject(videos.ids[i], problem)
        elif counts is not None and counts[i] < 1:
            skip_log.reject(videos.ids[i], f"total_frames is {counts[i]}: the folder has no frames to sample")
        else:
            keep.append(i)
    return keep


def _listed(videos, keep, columns, training, seed):
    if not keep:
        raise ValueError("video_dataset: no usable videos (every entry was rejected)")
    dataset = tf.data.Dataset.from_tensor_slices(tuple(
        np.array([column[i] for i in keep], np.int32) if isinstance(column[0], (int, np.integer))
        else [column[i] for i in keep] for column in columns))
    if training:
        dataset = _sample_seeds(dataset, seed)
        dataset = dataset.shuffle(len(keep), seed=seed, reshuffle_each_iteration=True)
    else:
        dataset = dataset.map(lambda *element: (*element, tf.constant(0, tf.int64)))
    return dataset


def _from_video_files(videos, num_classes, training, sample_args, skip_log, seed, max_frame_pixels):
    keep = _check_labels(videos, num_classes, skip_log)
    dataset = _listed(videos, keep, (videos.paths, videos.labels, videos.ids), training, seed)
    num_units, frames_per_unit, stride = sample_args
    empty = np.zeros((num_units * frames_per_unit, 1, 1, 3), np.uint8)
    seeded = training and seed is not None

    def load(path, video_id, sample_seed):
        path, video_id = path.numpy().decode(), video_id.numpy().decode()
        unit_seed = tf.constant([int(sample_seed.numpy()), 0], tf.int64) if seeded else None
        try:
            frames, repair = sample_video(path, *sample_args, training, unit_seed, max_frame_pixels)
        except VideoReadError as error:
            skip_log.reject(video_id, str(error))
            return empty, False
        except Exception as error:  # noqa: BLE001 - nothing a file does may stop a long run
            if isinstance(error, BadVideoError):
                raise
            skip_log.reject(video_id, f"{path}: cannot be read ({type(error).__name__}: {error})")
            return empty, False
        if repair is not None:
            skip_log.repair(video_id, *repair)
        return frames, True

    def decode(path, label, video_id, sample_seed):
        frames, ok = tf.py_function(load, [path, video_id, sample_seed], Tout=(tf.uint8, tf.bool))
        frames.set_shape((num_units * frames_per_unit, None, None, 3))
        return frames, label, video_id, ok

    dataset = dataset.map(decode, num_parallel_calls=AUTOTUNE, deterministic=not training or seed is not None)
    return dataset.filter(lambda frames, label, video_id, ok: ok).map(
        lambda frames, label, video_id, ok: (frames, label, video_id)), len(keep)


def _diagnose_rawframes(videos, i, max_frame_pixels):
    """Why folder ``i`` of a rawframe list cannot be read (runs only for a folder that failed)."""
    try:
        read_rawframe_folder(videos.dirs[i], videos.num_frames[i], videos.template, videos.start_index,
                             max_frame_pixels)
    except VideoReadError as error:
        return str(error)
    return f"frames in {videos.dirs[i]} could not be read (they can now: a transient error?)"


def _from_rawframes(videos, num_classes, training, sample_args, skip_log, seed, max_frame_pixels):
    keep = _check_labels(videos, num_classes, skip_log)
    dataset = _listed(videos, keep, (videos.dirs, videos.num_frames, videos.labels, videos.ids,
                                     list(range(len(videos)))), training, seed)
    num_units, frames_per_unit, stride = sample_args
    prefix, width, fill, suffix = parse_frame_template(videos.template)
    seeded = training and seed is not None
    empty = tf.zeros((num_units * frames_per_unit, 1, 1, 3), tf.uint8)

    def load(directory, total, label, video_id, index, sample_seed):
        indices = tf.reshape(_units(total, sample_args, training, sample_seed, seeded), (-1,))
        unique, position = tf.unique(indices)  # short folders repeat frames: read each file once
        names = tf.strings.join([directory, "/", prefix,
                                 tf.strings.as_string(unique + videos.start_index, width=width, fill=fill), suffix])
        # Only the sampled frames' files are read.
        jpegs = tf.map_fn(tf.io.read_file, names, fn_output_signature=tf.string)
        fits = _frames_fit(jpegs, max_frame_pixels)
        frames = tf.cond(fits, lambda: tf.gather(_decode_jpegs(jpegs), position), lambda: empty)
        frames.set_shape((num_units * frames_per_unit, None, None, 3))
        return frames, label, video_id, index, fits

    def failed(directory, total, label, video_id, index, sample_seed):
        return empty, label, video_id, index, tf.constant(False)

    def report(index):
        index = int(index.numpy())
        skip_log.reject(videos.ids[index], _diagnose_rawframes(videos, index, max_frame_pixels))
        return False

    dataset = _guarded(dataset, load, failed, training and seed is None)
    dataset = dataset.filter(lambda frames, label, video_id, index, ok: tf.cond(
        ok, lambda: tf.constant(True), lambda: tf.py_function(report, [index], Tout=tf.bool)))
    return dataset.map(lambda frames, label, video_id, index, ok: (frames, label, video_id)), len(keep)


def _shard_damage(path, records_read):
    """The skip-log reason for shard ``path`` after the reader stopped at ``records_read`` records,
    or None when the shard was read completely."""
    try:
        scan = scan_shard(path)
    except (OSError, tf.errors.OpError) as error:
        return f"cannot read the TFRecord shard ({getattr(error, 'message', error)}); {records_read} record(s) read"
    if records_read < scan.records:
        return (f"damaged TFRecord shard: {records_read} record(s) read, then record #{records_read} failed its "
                f"checksum or could not be read; the shard's remaining {scan.records - records_read} framed "
                f"record(s){' and ' + str(scan.size - scan.end) + ' damaged bytes' if scan.problem else ''} lost")
    if scan.problem:
        return (f"damaged TFRecord shard: {records_read} record(s) read before the damage ({scan.problem}); "
                f"the rest of the shard ({scan.size - scan.end} bytes) lost")
    return None


def count_tfrecords(files, workers=16):
    """Records in TFRecord ``files``, counted from their framing (no record is read or decoded).

    Returns None when a file cannot be read. Damaged shards count the records before the damage.
    """
    if not files:
        return 0
    try:
        with concurrent.futures.ThreadPoolExecutor(min(workers, len(files))) as pool:
            return sum(scan.records for scan in pool.map(scan_shard, files))
    except (OSError, tf.errors.OpError) as error:
        logger.warning("cannot count the records of the TFRecord source: %s", error)
        return None


def _from_tfrecords(records, num_classes, training, sample_args, skip_log, shuffle_buffer, seed, max_frame_pixels):
    if not records.files:
        raise ValueError("video_dataset: the TFRecord source has no files")
    num_units, frames_per_unit, stride = sample_args
    files = tf.data.Dataset.from_tensor_slices(records.files)
    if training:
        files = files.shuffle(len(records.files), seed=seed, reshuffle_each_iteration=True)

    def shard(path):
        # A damaged shard ends at the damage (TFRecordDataset moves to its next file on DataLoss);
        # a sentinel after its last record carries how many records were read, for the report.
        records_ = tf.data.TFRecordDataset(path).ignore_errors().map(lambda record: (record, False))
        tagged = records_.concatenate(tf.data.Dataset.from_tensors((tf.constant(b""), True)))
        counted = tagged.scan(tf.constant(0, tf.int64), lambda read, element: (
            read + tf.cast(tf.logical_not(element[1]), tf.int64), (element[0], element[1], read)))
        return counted.map(lambda record, last, index: (record, path, index, last))

    def check(path, records_read):
        reason = _shard_damage(path.numpy().decode(), int(records_read.numpy()))
        if reason is not None:
            skip_log.reject(path.numpy().decode(), reason)
        return False

    dataset = files.interleave(shard, cycle_length=min(8, len(records.files)), num_parallel_calls=AUTOTUNE,
                               deterministic=not training)
    dataset = dataset.filter(lambda record, path, index, last: tf.cond(
        last, lambda: tf.py_function(check, [path, index], Tout=tf.bool), lambda: tf.constant(True)))
    dataset = dataset.map(lambda record, path, index, last: (record, path, index))
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    # The labels are compared as int64, as stored: a label beyond int32 would wrap around to another class.
    upper = tf.constant(num_classes if num_classes is not None else _INT32_LABELS, tf.int64)
    empty = tf.zeros((num_units * frames_per_unit, 1, 1, 3), tf.uint8)
    OK, NO_FRAMES, BAD_LABEL, UNREADABLE = 0, 1, 2, 3

    def load(record, path, index):
        example = parse_example(record)
        num_frames, label = tf.shape(example["frames"])[0], example["label"]
        status = tf.where(num_frames == 0, NO_FRAMES,
                          tf.where((label < 0) | (label >= upper), BAD_LABEL, OK))

        def decode():
            indices = segment_indices(num_frames, num_units, frames_per_unit, stride, training)
            # Only the sampled frames' JPEGs are decoded, and only when their headers are within the limit.
            jpegs = tf.gather(example["frames"], tf.reshape(indices, (-1,)))
            return tf.cond(_frames_fit(jpegs, max_frame_pixels), lambda: (_decode_jpegs(jpegs), tf.constant(OK)),
                           lambda: (empty, tf.constant(UNREADABLE)))

        frames, status = tf.cond(status == OK, decode, lambda: (empty, status))
        frames.set_shape((num_units * frames_per_unit, None, None, 3))
        diagnose = tf.where(status == UNREADABLE, record, tf.constant(b""))  # only a failed record travels on
        return frames, label, example["video_id"], status, diagnose, path, index

    def failed(record, path, index):
        return (empty, tf.constant(-1, tf.int64), tf.constant(b""), tf.constant(UNREADABLE), record, path,
                index)

    def report(status, video_id, label, record, path, index):
        status, path, index = int(status.numpy()), path.numpy().decode(), int(index.numpy())
        video_id = video_id.numpy().decode() or f"{path} record #{index}"
        where = f"record #{index} of {path}"
        if status == NO_FRAMES:
            skip_log.reject(video_id, f"the video has no frames ({where})")
        elif status == BAD_LABEL:
            skip_log.reject(video_id, f"{_label_problem(int(label.numpy()), num_classes)} ({where})")
        else:
            video_id, reason = _diagnose_record(record.numpy(), path, index, max_frame_pixels)
            skip_log.reject(video_id, reason)
        return False

    dataset = _guarded(dataset, load, failed, training)
    dataset = dataset.filter(lambda frames, label, video_id, status, record, path, index: tf.cond(
        status == OK, lambda: tf.constant(True),
        lambda: tf.py_function(report, [status, video_id, label, record, path, index], Tout=tf.bool)))
    return (dataset.map(lambda frames, label, video_id, status, record, path, index:
                        (frames, tf.cast(label, tf.int32), video_id)),  # in range: checked above
            count_tfrecords(records.files))


def _diagnose_record(record, path, index, max_frame_pixels):
    """``(video, reason)`` for a record that could not be parsed or decoded (runs only for such a record)."""
    where = f"record #{index} of {path}"
    try:
        example = parse_example(tf.constant(record))
    except tf.errors.OpError as error:
        return f"{path} record #{index}", f"not a video SequenceExample ({error.message})"
    video_id = example["video_id"].numpy().decode() or f"{path} record #{index}"
    frames = example["frames"].numpy()
    shape = None
    for k, jpeg in enumerate(frames):
        try:
            height, width = frame_size_of(jpeg)
            if height < 0:
                return video_id, (f"frame {k} of {len(frames)} is not a decodable JPEG (no JPEG, PNG or GIF header) "
                                  f"({where})")
            too_large = frame_size_error(f"frame {k} of {len(frames)}", width, height, max_frame_pixels)
            if too_large is not None:
                return video_id, f"{too_large} ({where})"
            image = tf.io.decode_jpeg(jpeg, channels=3)
        except tf.errors.OpError as error:
            return video_id, f"frame {k} of {len(frames)} is not a decodable JPEG ({error.message}) ({where})"
        if shape is not None and image.shape != shape:
            return video_id, (f"frame {k} is {image.shape[1]}×{image.shape[0]}, "
                              f"the frames before it {shape[1]}×{shape[0]} ({where})")
        shape = image.shape
    return video_id, f"its frames could not be decoded (a transient error?) ({where})"


def video_dataset(source, *, training, num_units=None, frames_per_unit=DEFAULT_SAMPLING.frames_per_unit,
                  stride=DEFAULT_SAMPLING.stride, crop_size=None, batch_size=8, num_classes=None,
                  short_side=DEFAULT_SAMPLING.short_side, num_crops=None, root=None,
                  class_names=None, strict=None, shuffle_buffer=256, seed=None, drop_remainder=None,
                  area_range=(0.25, 1.0), source_format=None, frame_template=DEFAULT_FRAME_TEMPLATE,
                  frame_start=1, max_frame_pixels=MAX_FRAME_PIXELS):
    """A ``VideoDataset``: a ``tf.data.Dataset`` of whole-video samples with U action units each (V4D §3.1).

    Args:
        source: an annotation list of video files (``path label`` per line), a rawframe list
            (``frame_dir total_frames label`` per line, TSN / MMAction2 / official V4D), a folder
            per class, a folder or glob of TFRecord shards, a list of TFRecord files, or a
            ``VideoFiles`` / ``RawFrames`` / ``TFRecordFiles`` object.
        source_format: ``"videos"``, ``"rawframes"`` or ``"tfrecord"`` to say what ``source`` is;
            None recognises it (a list is rawframes when its first entry has three fields, the
            middle one an int, and does not name a video file).
        frame_template, frame_start: rawframes: frame file names (``str.format`` or ``%``
            template) and the number of the first frame (TSN and MMAction2: ``img_{:05d}.jpg``
            from 1).
        training: training mode (random unit offsets, shuffling, multi-scale random crop,
            flip) or evaluation (centred units, ``num_crops`` fixed crops).
        num_units, frames_per_unit, stride: U, T, τ of the sampler (U default: ``VideoSampling``'s
            ``train_units`` in training, ``test_num_units`` in evaluation).
        crop_size: output spatial size (default: ``VideoSampling``'s training crop, or its test crop:
            the short side, for the papers' fully convolutional testing).
        batch_size: videos per batch (training drops the last partial batch by default, so every
            replica's batch holds whole videos).
        num_classes: labels outside ``[0, num_classes)`` are bad samples; defaults to the number of
            class names when known.
        short_side: frames are resized so that their short side is this before cropping.
        num_crops: evaluation only: 1 (centre) or 3 (covering the long side); default ``VideoSampling``'s.
        area_range: training only: range of the random crop's area, as a fraction of the frame.
        root, class_names: for annotation lists: path root and class names (list or file).
        strict: raise ``BadVideoError`` naming the video (or shard) at the first bad sample instead
            of skipping it; defaults to ``not training``. With ``strict=False`` evaluation yields
            every readable video and lists the others in ``skip_log.entries``.
        max_frame_pixels: a video whose frames have more pixels (width × height, read from the
            video's stream header, or each sampled frame file's or record frame's JPEG header, before
            anything is decoded) is a bad sample, not decoded; None: no limit. Default
            ``MAX_FRAME_PIXELS`` (4096², every 4K format in either orientation).
        seed: makes shuffling, the training units' offsets and the random crops and flips
            reproducible (for video files and rawframes the same seed and list give the same units
            for each video in each epoch; the parallel stages then keep their order, so batches
            are reproducible too).
    Bad samples (unreadable files or folders, missing or undecodable frames, frames over
    ``max_frame_pixels``, labels out of range (or beyond int32),
    undecodable TFRecord records, damaged shards — logged with the shard's path and how many
    records were read before the damage) are skipped, counted and logged; partly decodable video
    files are sampled over the frames that decode and recorded as repaired.
    Returns:
        Training: elements ``(videos (B, U, T, S, S, 3) float32, labels (B,) int32)``.
        Evaluation: ``(views (B, V, U, T, S, S, 3), labels (B,), video_ids (B,) string)`` with
        V = ``num_crops`` views per video (see ``single_view`` for ``model.evaluate``).
        These are the elements of the ``VideoDataset``'s ``dataset``; beside it travel its
        ``skip_log`` (what was skipped or repaired and why), ``class_names`` and ``num_videos``
        (known without decoding any video: for steps per epoch).
    """
    if num_units is None:
        num_units = DEFAULT_SAMPLING.train_units if training else DEFAULT_SAMPLING.test_num_units
    if crop_size is None:
        crop_size = DEFAULT_SAMPLING.crop_size if training else min(DEFAULT_SAMPLING.test_crop, short_side)
    if num_crops is None:
        num_crops = 1 if training else DEFAULT_SAMPLING.test_num_crops
    if crop_size > short_side:
        raise ValueError(f"video_dataset: `crop_size`={crop_size} is larger than `short_side`={short_side}.")
    if training and num_crops != 1:
        raise ValueError(f"video_dataset: `num_crops`={num_crops} applies to evaluation only.")
    for value, name in ((batch_size, "batch_size"), (num_units, "num_units"),
                        (frames_per_unit, "frames_per_unit"), (stride, "stride")):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"video_dataset: `{name}` must be a positive int, got {value!r}.")
    check_max_frame_pixels(max_frame_pixels, "video_dataset: `max_frame_pixels`")
    resolved = resolve_source(source, root, class_names, source_format, frame_template, frame_start)
    if num_classes is None and resolved.class_names:
        num_classes = len(resolved.class_names)
    skip_log = SkipLog(strict=not training if strict is None else strict)
    sample_args = (num_units, frames_per_unit, stride)
    if isinstance(resolved, TFRecordFiles):
        dataset, num_videos = _from_tfrecords(resolved, num_classes, training, sample_args, skip_log, shuffle_buffer,
                                              seed, max_frame_pixels)
    else:
        build = _from_rawframes if isinstance(resolved, RawFrames) else _from_video_files
        dataset, num_videos = build(resolved, num_classes, training, sample_args, skip_log, seed, max_frame_pixels)

    if training:
        def transform(frames, label, video_id, augment_seed=None):
            frames = train_transform(frames, crop_size, short_side, area_range=area_range, seed=augment_seed)
            return tf.reshape(frames, (num_units, frames_per_unit, crop_size, crop_size, 3)), label

        if seed is not None:  # the crops and flips, like the units, are drawn from a seeded stream
            augment_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
            dataset = tf.data.Dataset.zip(dataset, augment_seeds).map(
                lambda element, augment_seed: (*element, tf.stack([augment_seed, tf.constant(1, tf.int64)])))
    else:
        def transform(frames, label, video_id):
            views = eval_transform(frames, crop_size, short_side, num_crops)
            return tf.reshape(views, (num_crops, num_units, frames_per_unit, crop_size, crop_size, 3)), label, video_id

    dataset = dataset.map(transform, num_parallel_calls=AUTOTUNE, deterministic=not training or seed is not None)
    dataset = dataset.batch(batch_size, drop_remainder=training if drop_remainder is None else drop_remainder)
    dataset = dataset.prefetch(AUTOTUNE)
    return VideoDataset(dataset, skip_log, resolved.class_names, num_videos)


def single_view(dataset):
    """Evaluation elements ``(views, labels, ids)`` → ``(first view (B, U, T, S, S, 3), labels)``."""
    return dataset.map(lambda views, labels, ids: (views[:, 0], labels))
