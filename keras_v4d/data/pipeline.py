"""``video_dataset``: tf.data pipelines of whole-video samples ``(B, U, T, H, W, 3)``.

Three sources go through the same sampler, transforms and rules: video files (decoded with PyAV
in a ``py_function``), rawframe folders (only the sampled frames' JPEG files are read, in the
graph) and TFRecord shards (only the sampled frames' JPEGs are decoded, in the graph).

Damaged data never stops a run (unless ``strict``) and is never lost without a trace: every
sample that cannot be used is counted in the pipeline's ``SkipLog`` with its name and reason, every
partly decodable video that was used is recorded there as *repaired*.

``video_dataset`` returns the ``tf.data.Dataset`` itself (``model.fit`` takes it); with
``with_info=True`` also a ``VideoDatasetInfo``: the skip log, the class names, the number of videos.
"""

import concurrent.futures
import logging

import numpy as np
import tensorflow as tf

from keras_v4d.data.frame_indices import segment_indices
from keras_v4d.data.frame_size import MAX_FRAME_PIXELS, encoded_frame_size, frame_size_error, frame_size_of
from keras_v4d.data.options import DEFAULT_OPTIONS, VideoDatasetInfo, record_argument
from keras_v4d.data.skip_log import INT32_LABELS, BadVideoError, SkipLog, check_labels, label_problem
from keras_v4d.data.sources import RawFrames, TFRecordFiles, parse_frame_template, resolve_source
from keras_v4d.data.tfrecord import parse_example, scan_shard
from keras_v4d.data.transforms import eval_transform, train_transform
from keras_v4d.data.video_io import VideoReadError, read_rawframe_folder, sample_video
from keras_v4d.records.sampling import DEFAULT_SAMPLING, check_positive_int

logger = logging.getLogger("keras_v4d.data")
AUTOTUNE = tf.data.AUTOTUNE


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
        (skip_log if skip_log is not None else SkipLog()).repair(path, *repair)  # no log: the warning alone
    return frames


def load_video_views(path, sampling=None, *, skip_log=None, max_frame_pixels=MAX_FRAME_PIXELS):
    """One video file as evaluation views ``(V, U_infer, T, S, S, 3)`` float32, sampled by the test
    protocol of ``sampling`` (default ``DEFAULT_SAMPLING``) as ``video_dataset(training=False)`` samples
    it. Raises ``VideoReadError``; a partly decodable file is repaired (see ``read_video_units``)."""
    sampling = record_argument(sampling, DEFAULT_SAMPLING, "load_video_views", "sampling")
    units, frames_per_unit, stride = sample_arguments(sampling, training=False)
    frames = read_video_units(path, units, frames_per_unit, stride, skip_log=skip_log,
                              max_frame_pixels=max_frame_pixels)
    views = eval_transform(tf.convert_to_tensor(frames), sampling.test_crop, sampling.short_side,
                           sampling.test_num_crops)
    return tf.reshape(views, sample_shape(sampling, training=False))


def sample_arguments(sampling, training):
    """``(U, T, τ)`` of ``sampling`` for a training (U_train) or an evaluation (U_infer) sample."""
    units = sampling.train_units if training else sampling.test_num_units
    return units, sampling.frames_per_unit, sampling.stride


def sample_shape(sampling, training):
    """One sample's shape: ``(U, T, S, S, 3)`` in training, ``(V, U_infer, T, S, S, 3)`` in evaluation."""
    units, frames_per_unit, _ = sample_arguments(sampling, training)
    if training:
        return (units, frames_per_unit, sampling.crop_size, sampling.crop_size, 3)
    return (sampling.test_num_crops, units, frames_per_unit, sampling.test_crop, sampling.test_crop, 3)


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


def _from_video_files(videos, num_classes, training, sample_args, skip_log, options):
    seed, max_frame_pixels = options.seed, options.max_frame_pixels
    keep = check_labels(videos, num_classes, skip_log)
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


def _from_rawframes(videos, num_classes, training, sample_args, skip_log, options):
    seed, max_frame_pixels = options.seed, options.max_frame_pixels
    keep = check_labels(videos, num_classes, skip_log)
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


def _from_tfrecords(records, num_classes, training, sample_args, skip_log, options):
    seed, max_frame_pixels = options.seed, options.max_frame_pixels
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
        dataset = dataset.shuffle(options.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    # The labels are compared as int64, as stored: a label beyond int32 would wrap around to another class.
    upper = tf.constant(num_classes if num_classes is not None else INT32_LABELS, tf.int64)
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
            skip_log.reject(video_id, f"{label_problem(int(label.numpy()), num_classes)} ({where})")
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


def video_dataset(source, sampling=None, *, training, batch_size=8, num_classes=None, options=None,
                  with_info=False):
    """A ``tf.data.Dataset`` of whole-video samples with U action units each (V4D §3.1).

    Args:
        source: an annotation list of video files (``path label`` per line), a rawframe list
            (``frame_dir total_frames label`` per line, TSN / MMAction2 / official V4D), a folder
            per class, a folder or glob of TFRecord shards, a list of TFRecord files, or what
            ``resolve_source`` makes of one (to give a list's root, class names, format or frame
            template).
        sampling: the ``VideoSampling`` (default ``DEFAULT_SAMPLING``). Training reads ``train_units``,
            ``frames_per_unit``, ``stride``, ``short_side``, ``crop_size``, ``area_range`` (random unit
            offsets, shuffling, multi-scale random crop, flip); evaluation reads ``test_num_units``,
            ``frames_per_unit``, ``stride``, ``short_side``, ``test_crop``, ``test_num_crops``
            (centred units, fixed crops).
        training: training or evaluation mode.
        batch_size: videos per batch (training drops the last partial batch unless ``options`` say not).
        num_classes: labels outside ``[0, num_classes)`` are bad samples; default: the number of the
            source's class names when known.
        options: ``DataOptions`` (seed, shuffle buffer, strictness, frame-size limit, partial batches).
        with_info: also return a ``VideoDatasetInfo`` (skip log, class names, number of videos).
    Bad samples are skipped, counted in the skip log and logged (``strict``: ``BadVideoError`` naming
    the first); partly decodable video files are sampled over the frames that decode and recorded as
    repaired.
    Returns:
        The dataset; with ``with_info``, ``(dataset, info)``. Training elements: ``(videos (B, U, T, S,
        S, 3) float32, labels (B,) int32)``; evaluation: ``(views (B, V, U_infer, T, S, S, 3), labels
        (B,), video ids (B,) string)`` (see ``single_view`` for ``model.evaluate``).
    """
    sampling = record_argument(sampling, DEFAULT_SAMPLING, "video_dataset", "sampling")
    options = record_argument(options, DEFAULT_OPTIONS, "video_dataset", "options")
    check_positive_int(batch_size, "batch_size", "video_dataset")
    resolved = resolve_source(source)
    if num_classes is None and resolved.class_names:
        num_classes = len(resolved.class_names)
    skip_log = SkipLog(strict=options.is_strict(training))
    sample_args = sample_arguments(sampling, training)
    build = {TFRecordFiles: _from_tfrecords, RawFrames: _from_rawframes}.get(type(resolved), _from_video_files)
    dataset, num_videos = build(resolved, num_classes, training, sample_args, skip_log, options)
    dataset = _transformed(dataset, sampling, training, options.seed)
    dataset = dataset.batch(batch_size, drop_remainder=options.drops_remainder(training)).prefetch(AUTOTUNE)
    if with_info:
        return dataset, VideoDatasetInfo(skip_log, resolved.class_names, num_videos)
    return dataset


def _transformed(dataset, sampling, training, seed):
    """Decoded frames ``(U·T, H, W, 3)`` → training samples ``(videos, labels)`` or evaluation views
    ``(views, labels, ids)``; with ``seed`` the crops and flips, like the units, come from a seeded stream."""
    shape = sample_shape(sampling, training)
    if training:
        def transform(frames, label, video_id, augment_seed=None):
            frames = train_transform(frames, sampling.crop_size, sampling.short_side, sampling.area_range,
                                     seed=augment_seed)
            return tf.reshape(frames, shape), label

        if seed is not None:
            augment_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
            dataset = tf.data.Dataset.zip(dataset, augment_seeds).map(
                lambda element, augment_seed: (*element, tf.stack([augment_seed, tf.constant(1, tf.int64)])))
    else:
        def transform(frames, label, video_id):
            views = eval_transform(frames, sampling.test_crop, sampling.short_side, sampling.test_num_crops)
            return tf.reshape(views, shape), label, video_id

    return dataset.map(transform, num_parallel_calls=AUTOTUNE, deterministic=not training or seed is not None)


def single_view(dataset):
    """Evaluation elements ``(views, labels, ids)`` → ``(first view (B, U, T, S, S, 3), labels)``."""
    return dataset.map(lambda views, labels, ids: (views[:, 0], labels))
