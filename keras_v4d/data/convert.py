"""Videos or rawframe folders + annotation list → sharded TFRecords in the Model Garden video format.

    convert(read_annotations("train.txt"), "records/train", num_shards=8, workers=2)
    convert(read_rawframe_annotations("train_rawframes.txt"), "records/train")

(command line: ``keras-v4d convert-data``).

Each video is decoded one frame at a time; each frame is resized (when ``short_side`` is given) and
stored as a JPEG as it comes, so a video is held as JPEG bytes only, never as decoded frames.
Rawframe folders keep their JPEG files as they are (no second JPEG loss) unless they are resized;
every frame is decoded once to check it.

Shards are written by worker processes, with a progress bar, each under a temporary name
(``.tmp-<pid>-…``) beside its own; only when every shard is complete are they renamed into place,
so a set is written whole or not at all. The shards of an earlier run with another shard count are
removed then (the reader would read both sets), and temporary files a killed conversion left are
removed at the start; both are said on stderr. A shard that cannot be written or a worker that dies
(killed, out of memory) stops the conversion with a ``ConversionError`` naming the shards; the
workers end with the converter (an exception, Ctrl-C, or the converter killed: ``_compat.end_with_parent``).
At the end a summary lists every video that was skipped and why, and every video that decoded only
partly (stored with the frames that decode); ``convert`` returns them.
"""

import contextlib
import multiprocessing
import os
import re
import signal
import sys
import threading
import time

from keras_v4d.records.atomic import TEMPORARY_PREFIX, temporary_path

_POLL_SECONDS = 0.25  # how often the converter checks that its workers are alive
_STOP_SECONDS = 5  # how long a worker has to end after SIGTERM before it is killed
_NAMES_SHOWN = 8  # shards named in an error message


class ConversionError(RuntimeError):
    """The shard set could not be written (a shard could not be written, a worker died), or an earlier
    set could not be removed; the message names the shards and says what was left."""


def shard_paths(prefix, num_shards):
    """The ``num_shards`` shard paths of ``prefix``: ``PREFIX-00000-of-00008.tfrecord``, …."""
    return [f"{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]


def _resize(frame, short_side):
    """An RGB frame ``(H, W, 3)`` resized (bilinear, as the whole video was before) to that short side."""
    import tensorflow as tf

    height, width = frame.shape[:2]
    scale = short_side / min(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return tf.cast(tf.round(tf.image.resize(frame, size)), tf.uint8)


def _encode_item(item, short_side, quality):
    """One video or frame folder → (serialised ``SequenceExample``, repair or None)."""
    import tensorflow as tf

    from keras_v4d.data.tfrecord import encode_jpeg_example
    from keras_v4d.data.video_io import map_all_frames, read_rawframe_folder

    def encode(frame):
        if short_side:
            frame = _resize(frame, short_side)
        return tf.io.encode_jpeg(frame, quality=quality).numpy()

    kind, source, label, video_id, num_frames, template, start_index = item
    repair = None
    if kind == "rawframes":
        jpegs, _ = read_rawframe_folder(source, num_frames, template, start_index)
        if short_side:
            jpegs = [encode(tf.io.decode_jpeg(data, channels=3)) for data in jpegs]
    else:
        jpegs, repair = map_all_frames(source, encode, with_repair=True)
    return encode_jpeg_example(jpegs, label, video_id), repair


def _write_shard(path, items, short_side, quality, progress):
    """Writes one shard under a temporary name beside ``path``, flushed to disk; returns that name, the
    written ids, ``[(id, reason)]`` skipped and ``[(id, decoded, claimed)]`` repaired.

    A video that cannot be read is skipped; anything else raises (the shard cannot be written), and
    the temporary file is removed.
    """
    import tensorflow as tf

    from keras_v4d.data.video_io import VideoReadError

    staging = temporary_path(path)
    written, skipped, repaired = [], [], []
    try:
        with tf.io.TFRecordWriter(staging) as writer:
            for item in items:
                video_id = item[3]
                try:
                    record, repair = _encode_item(item, short_side, quality)
                except VideoReadError as error:
                    skipped.append((video_id, str(error)))
                except Exception as error:  # noqa: BLE001 - one bad video must not stop a conversion
                    skipped.append((video_id, f"cannot be converted ({type(error).__name__}: {error})"))
                else:
                    writer.write(record)  # outside the video's try: a failed write is the shard's, not the video's
                    written.append(video_id)
                    if repair is not None:
                        repaired.append((video_id, *repair))
                progress()
        with open(staging, "rb+") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(staging)
        raise
    return staging, written, skipped, repaired


def _reason(error):
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    message = getattr(error, "message", None)  # tf.errors.OpError's, without TensorFlow's op context
    return message if isinstance(message, str) and message else f"{type(error).__name__}: {error}"


def _work(connection, short_side, quality):
    """A worker process: writes the shards ``(index, path, items)`` it receives on ``connection`` until
    it receives None, and reports each video and shard there."""
    from keras_v4d import _compat

    _compat.end_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the converter stops us
    for _, path, items in iter(connection.recv, None):
        try:
            outcome = _write_shard(path, items, short_side, quality, lambda: connection.send(("video", None)))
        except Exception as error:  # noqa: BLE001 - reported: the converter names the shard and stops
            connection.send(("failed", f"cannot write shard {path}: {_reason(error)}"))
        else:
            connection.send(("done", outcome))


def _start(processes):
    """Starts the workers with SIGINT ignored, which they keep from their first instruction on."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        for process in processes:
            process.start()
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


def _stop(processes):
    """Ends the workers still running: SIGTERM, then SIGKILL for those that do not end in time."""
    started = [process for process in processes if process.pid is not None]
    for process in started:
        if process.exitcode is None:
            process.terminate()
    deadline = time.monotonic() + _STOP_SECONDS
    for process in started:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.exitcode is None:
            process.kill()
            process.join()


def _how_it_ended(code):
    if code > 0:
        return f"ended with exit code {code}"
    name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
    if -code == getattr(signal, "SIGKILL", None):
        return f"was killed ({name}; the system may have run out of memory)"
    return f"was ended by {name}"


def _failed(cause, jobs, outcomes):
    missing = [path for index, path, _ in jobs if index not in outcomes]
    names = ", ".join(missing[:_NAMES_SHOWN]) + (f" and {len(missing) - _NAMES_SHOWN} more"
                                                 if len(missing) > _NAMES_SHOWN else "")
    return ConversionError(
        f"{cause}. The conversion stopped: none of its {len(jobs)} shard(s) was written (a set is renamed into "
        f"place only whole; earlier shards are as they were); {len(missing)} were unfinished: {names}")


def _write_shards(jobs, workers, short_side, quality, total, progress_bar):
    """Runs ``jobs`` ``(index, path, items)`` in ``workers`` processes; returns ``{index: (temporary
    path, written, skipped, repaired)}`` or raises ``ConversionError`` (the workers are stopped).

    Each worker has a pipe of its own, read only here: a worker that dies closes it, so its death is
    seen at once, and it leaves no lock or half-written message that the others would wait on.
    """
    from multiprocessing.connection import wait

    from tqdm import tqdm

    context = multiprocessing.get_context("spawn")
    pending, outcomes, writing = list(reversed(jobs)), {}, {}
    ends = [context.Pipe() for _ in range(workers)]
    processes = {mine: context.Process(target=_work, args=(theirs, short_side, quality), daemon=True,
                                       name=f"keras-v4d-convert-{i}") for i, (mine, theirs) in enumerate(ends)}

    def failure(connection, code=None):
        process = processes[connection]
        if code is None:
            process.join(_STOP_SECONDS)
            code = process.exitcode
        how = _how_it_ended(code) if code is not None else "stopped answering"
        shard = writing.get(connection)
        where = f" while writing {jobs[shard][1]}" if shard is not None else ""
        return _failed(f"a worker process (pid {process.pid}) {how}{where}", jobs, outcomes)

    def give(connection):
        job = pending.pop() if pending else None
        writing[connection] = None if job is None else job[0]
        try:
            connection.send(job)
        except OSError:  # the worker is gone
            raise failure(connection) from None

    try:
        _start(list(processes.values()))
        for _, theirs in ends:
            theirs.close()  # the worker holds the only writing end: the pipe closes when it ends
        for connection in processes:
            give(connection)
        listening = dict(processes)
        with tqdm(total=total, desc="videos", unit="video", disable=not progress_bar, file=sys.stderr) as bar:
            while len(outcomes) < len(jobs):
                if not listening:
                    raise _failed("the worker processes ended without writing every shard", jobs, outcomes)
                sentinels = {process.sentinel: connection for connection, process in listening.items()}
                for ready in wait([*listening, *sentinels], timeout=_POLL_SECONDS):
                    if ready in sentinels:
                        code = processes[sentinels[ready]].exitcode
                        if code:  # killed, or ended by an error: no need to read what it said before
                            raise failure(sentinels[ready], code)
                        continue
                    if ready not in listening:
                        continue
                    try:
                        kind, value = ready.recv()
                    except (EOFError, OSError):  # the worker ended
                        if writing[ready] is not None:
                            raise failure(ready) from None
                        del listening[ready]
                        continue
                    if kind == "video":
                        bar.update(1)
                    elif kind == "failed":
                        raise _failed(value, jobs, outcomes)
                    else:
                        outcomes[writing[ready]] = value
                        give(ready)
        for process in processes.values():
            process.join(_STOP_SECONDS)
    finally:
        _stop(list(processes.values()))
        for connection in processes:
            connection.close()
    return outcomes


def _leftovers(prefix, num_shards):
    """``(stale shards, temporary files)`` of ``prefix``: shards with another shard count than
    ``num_shards``, and the temporary files of killed writers."""
    folder, base = os.path.split(os.path.abspath(prefix))
    shard = re.compile(rf"{re.escape(base)}-\d+-of-(\d+)\.tfrecord")
    temporary = re.compile(rf"{re.escape(TEMPORARY_PREFIX)}\d+-{re.escape(base)}-\d+-of-\d+\.tfrecord")
    stale, temporaries = [], []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(os.path.dirname(prefix), name)
        if not os.path.isfile(os.path.join(folder, name)):
            continue
        match = shard.fullmatch(name)
        if match and int(match[1]) != num_shards:
            stale.append(path)
        elif temporary.fullmatch(name):
            temporaries.append(path)
    return stale, temporaries


def _remove(paths):
    """Removes what it can of ``paths``; returns ``(removed, [(path, reason)] not removed)``."""
    removed, kept = [], []
    for path in paths:
        try:
            os.remove(path)
            removed.append(path)
        except FileNotFoundError:
            pass
        except OSError as error:
            kept.append((path, _reason(error)))
    return removed, kept


def _commit(outcomes, paths):
    """Renames every shard from its temporary name into place."""
    for index, path in enumerate(paths):
        try:
            os.replace(outcomes[index][0], path)
        except OSError as error:
            raise ConversionError(f"cannot rename {outcomes[index][0]} to shard {path}: {_reason(error)} "
                                  f"({index} of {len(paths)} shard(s) were renamed into place)") from None
    if os.name == "posix":  # the renames on disk too (a folder cannot be opened for fsync on Windows)
        with contextlib.suppress(OSError):
            descriptor = os.open(os.path.dirname(os.path.abspath(paths[0])), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)


def _items(videos):
    from keras_v4d.data.sources import RawFrames

    if isinstance(videos, RawFrames):
        return [("rawframes", d, label, video_id, n, videos.template, videos.start_index)
                for d, n, label, video_id in zip(videos.dirs, videos.num_frames, videos.labels, videos.ids)]
    return [("video", p, label, video_id, None, None, None)
            for p, label, video_id in zip(videos.paths, videos.labels, videos.ids)]


def convert(videos, output, num_shards=8, workers=1, short_side=None, jpeg_quality=90, progress_bar=True,
            with_repaired=False):
    """Writes ``videos`` (``VideoFiles`` or ``RawFrames``) to ``num_shards`` TFRecord shards at ``output``.

    Returns ``(shard paths, written ids, [(id, reason)] skipped)``, and with ``with_repaired`` also
    ``[(id, frames decoded, frames claimed)]`` for the videos stored with only the frames that decode.
    Raises ``ConversionError`` naming the shard or folder when the set cannot be written.
    """
    folder = os.path.dirname(os.path.abspath(output))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise ConversionError(f"cannot create the output folder {folder}: {_reason(error)}") from None
    num_shards = max(1, min(num_shards, len(videos)))
    paths = shard_paths(output, num_shards)
    for path in paths:
        if os.path.lexists(path) and not os.path.isfile(path):
            raise ConversionError(f"cannot write shard {path}: something other than a file is in the way")
    removed, _ = _remove(_leftovers(output, num_shards)[1])
    if removed:
        print(f"removed {len(removed)} temporary file(s) a killed conversion left: {', '.join(removed)}",
              file=sys.stderr)
    items = _items(videos)
    jobs = [(i, path, items[i::num_shards]) for i, path in enumerate(paths)]
    committed = False
    try:
        outcomes = _write_shards(jobs, max(1, min(workers, num_shards)), short_side, jpeg_quality, len(items),
                                 progress_bar)
        _commit(outcomes, paths)
        committed = True
    finally:
        if not committed:
            _remove(_leftovers(output, num_shards)[1])
    stale, kept = _remove(_leftovers(output, num_shards)[0])
    if stale:
        print(f"removed {len(stale)} shard(s) of an earlier run with another shard count, now that the "
              f"{num_shards} new one(s) are complete: {', '.join(stale)}", file=sys.stderr)
    if kept:
        raise ConversionError(f"the {num_shards} new shard(s) are complete, but these of an earlier run with another "
                              "shard count could not be removed (a reader would read both sets): "
                              + ", ".join(f"{path} ({reason})" for path, reason in kept))
    results = [outcomes[i] for i in range(num_shards)]
    written = [video_id for _, shard_written, _, _ in results for video_id in shard_written]
    skipped = [entry for _, _, shard_skipped, _ in results for entry in shard_skipped]
    repaired = [entry for _, _, _, shard_repaired in results for entry in shard_repaired]
    return (paths, written, skipped, repaired) if with_repaired else (paths, written, skipped)
