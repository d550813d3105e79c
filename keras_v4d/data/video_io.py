"""Reading and writing video files with PyAV (FFmpeg bundled; the last ``tensorflow-io`` release fails
to load its ops with this TensorFlow), and reading whole rawframe folders (for conversion and for
diagnosing a folder that failed).

Frames are numbered in presentation order: frame ``k`` is the ``k``-th frame the file presents.
Where the file's packets carry unique timestamps (``_seek_plan``), a decoded frame's number comes from
its timestamp, so a frame lost to a damaged packet is missing rather than moving every later frame to
another number; elsewhere frames are numbered in the order they decode.

Damaged files: decoding goes on past a damaged packet and stops where the data stops; a file that
decodes only partly gives the frames that decode (``sample_video`` re-samples over them and says so).
Requesting a frame whose own packet does not decode is a ``VideoReadError`` naming the file.

Seeking: ``read_frames`` and ``sample_video`` jump to the keyframe before a wanted frame when that
keyframe lies past the frame the decoder would reach next, instead of decoding on (see
``_seek_plan``); the frames are the same as a sequential decode's. A keyframe is a clean cut, so a
seek past a damaged group of pictures returns that video's true frames. Any doubt while seeking (a
decoding error, a frame that does not come out where the packets said) falls back to the sequential
decoder.
"""

import os
import threading
from collections import OrderedDict

import av
import numpy as np

from keras_v4d.data.frame_size import MAX_FRAME_PIXELS, frame_size_error, frame_size_of


class VideoReadError(ValueError):
    """A video file (or frame folder) that cannot be read; the message names it and the reason."""


def _open(path, max_frame_pixels=MAX_FRAME_PIXELS):
    if not os.path.isfile(path):
        raise VideoReadError(f"{path}: file not found")
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise VideoReadError(f"{path}: cannot open as a video ({error})") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path}: no video stream (an empty or audio-only file)")
    context = container.streams.video[0].codec_context
    reason = frame_size_error(path, context.width, context.height, max_frame_pixels)
    if reason is not None:
        container.close()
        raise VideoReadError(reason)
    return container


def count_frames(path, max_frame_pixels=MAX_FRAME_PIXELS):
    """Number of frames of the first video stream as the file claims it.

    Uses the header's count; without one, counts the packets (a damaged tail ends the count, so
    the packets before it are what is claimed). Frames larger than ``max_frame_pixels`` (width ×
    height in the stream's header; None: no limit) are a ``VideoReadError``.
    """
    container = _open(path, max_frame_pixels)
    try:
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        count = 0
        try:
            for packet in container.demux(stream):
                count += bool(packet.size)
        except av.FFmpegError as error:
            if not count:
                raise VideoReadError(f"{path}: cannot read ({error})") from None
        return count
    finally:
        container.close()


def _frames(path, threaded=True, max_frame_pixels=MAX_FRAME_PIXELS, errors=None):
    """Yields every frame that decodes (``av.VideoFrame``, in order), tolerating damaged packets.

    Decoding goes on past a packet that fails and stops where the demuxer stops (a cut file); the
    frames still held by the decoder are flushed. Errors met on the way are appended to ``errors``.
    ``threaded=False`` decodes on one thread: slower, but FFmpeg's frame threads drop the frames in
    flight when a packet is damaged, so it finds every frame of a damaged file. A frame larger than
    ``max_frame_pixels`` (the resolution grew mid-stream) is a ``VideoReadError``.
    """
    errors = [] if errors is None else errors
    container = _open(path, max_frame_pixels)
    try:
        stream = container.streams.video[0]
        if threaded:
            stream.thread_type = "AUTO"
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.FFmpegError as error:  # the demuxer cannot go on (cut or garbled container)
                errors.append(error)
                packet = None  # flush the frames the decoder still holds
            try:
                frames = packet.decode() if packet is not None else stream.codec_context.decode(None)
            except av.FFmpegError as error:  # a damaged packet: skip it, keep decoding
                errors.append(error)
                continue
            for frame in frames:
                reason = frame_size_error(path, frame.width, frame.height, max_frame_pixels)
                if reason is not None:
                    raise VideoReadError(reason)
                yield frame
            if packet is None:
                return
    finally:
        container.close()


def _decode(path, wanted, last, threaded=True, max_frame_pixels=MAX_FRAME_PIXELS, plan=None):
    """Decodes sequentially up to frame ``last`` (or the end), tolerating damaged packets (``_frames``).

    Frames are numbered by their timestamps through ``plan`` (a ``_SeekPlan``) when given, so a frame
    lost to a damaged packet leaves a gap instead of moving every later frame to another number; else
    (or when a frame's timestamp is not in the plan) in the order they decode.

    Returns ``(found, decoded, error)``: RGB frames at the ``wanted`` positions, how many frames
    decoded, and the first decoding error (or None).
    """
    found, decoded, errors = {}, 0, []
    frames = _frames(path, threaded, max_frame_pixels, errors)
    try:
        for frame in frames:
            index = decoded if plan is None else plan.index(frame.pts)
            if index is None:  # a timestamp the packets did not have: number the frames as they decode
                frames.close()
                return _decode(path, wanted, last, threaded, max_frame_pixels)
            if index in wanted:
                found[index] = frame.to_ndarray(format="rgb24")
            decoded += 1
            if index >= last:
                break
    finally:
        frames.close()
    return found, decoded, (errors[0] if errors else None)


def frame_rate(path, max_frame_pixels=MAX_FRAME_PIXELS):
    """Frames per second of the first video stream as its header says (the average rate, else the
    rate FFmpeg guesses); a ``VideoReadError`` naming ``path`` when it says none."""
    container = _open(path, max_frame_pixels)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
    finally:
        container.close()
    if not rate or float(rate) <= 0:
        raise VideoReadError(f"{path}: the video stream has no frame rate")
    return float(rate)


def stream_frames(path, threaded=True, max_frame_pixels=MAX_FRAME_PIXELS, errors=None):
    """Yields ``(RGB uint8 (H, W, 3), time in seconds)`` for every frame that decodes, in order, one at
    a time: a long video is never held whole. The time is the frame's timestamp, or its index over
    the frame rate where it has none. ``VideoReadError`` when the resolution changes mid-stream;
    damaged packets are passed over as in ``read_all_frames`` (the errors appended to ``errors``).
    """
    rate, first = None, None
    for index, frame in enumerate(_frames(path, threaded, max_frame_pixels, errors)):
        array = frame.to_ndarray(format="rgb24")
        first = array.shape if first is None else first
        if array.shape != first:
            raise VideoReadError(f"{path}: the resolution changes mid-stream (frame {index} is "
                                 f"{array.shape[1]}×{array.shape[0]}, the first {first[1]}×{first[0]})")
        if frame.time is None:
            rate = rate or frame_rate(path, max_frame_pixels)
        yield array, (float(frame.time) if frame.time is not None else index / rate)


class _SeekPlan:
    """Where a file's frames are, from its demuxed packets (nothing decoded): ``pts`` sorted (frame
    ``k`` in decode order of presented frames is the one with the ``k``-th smallest pts) and ``keys``,
    the frame indices of the keyframes a decoder can start at and output exactly the frames from
    there on (sorted)."""

    def __init__(self, pts, keys):
        self.pts, self.keys = pts, keys

    def index(self, pts):
        """The frame index of ``pts``, or None when no packet has it."""
        if pts is None:
            return None
        k = int(np.searchsorted(self.pts, pts))
        return k if k < len(self.pts) and self.pts[k] == pts else None

    def key_before(self, index):
        """The last usable keyframe at or before frame ``index``."""
        return int(self.keys[np.searchsorted(self.keys, index, side="right") - 1])

    def seeks(self, targets):
        """Whether reading the sorted ``targets`` seeks at least once (see ``_seek_decode``)."""
        position = 0
        for target in targets:
            if target >= position:
                if self.key_before(target) > position + _SEEK_MIN_GAIN:
                    return True
                position = target + 1
        return False


_SEEK_MIN_GAIN = 2  # frames a seek must save: below that, decoding on costs less than flushing the decoder
_PLANS = OrderedDict()  # (path, size, mtime) → _SeekPlan or None; the most recent files
_PLANS_KEPT = 256
_PLANS_LOCK = threading.Lock()  # tf.data reads files on several threads


def _seek_plan(path):
    """The file's ``_SeekPlan``, or None when seeking is not safe in it.

    Demuxes every packet of the first video stream without decoding it (milliseconds for a minute of
    video; kept for the last ``_PLANS_KEPT`` files, keyed by size and modification time). None — read
    sequentially — when demuxing fails anywhere, a packet has no pts, two have the same, the count
    differs from the header's frame count, or no keyframe precedes all others. A keyframe is usable
    when it is a clean cut: the packets before it in decode order are exactly the frames presented
    before it (no leading B-frames of an open GOP).
    """
    try:
        stat = os.stat(path)
    except OSError:
        return None
    cache_key = (path, stat.st_size, stat.st_mtime_ns)
    with _PLANS_LOCK:
        if cache_key in _PLANS:
            _PLANS.move_to_end(cache_key)
            return _PLANS[cache_key]
    plan = None
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        return None
    try:
        if container.streams.video:
            stream = container.streams.video[0]
            pts, keyframe = [], []
            for packet in container.demux(stream):
                if packet.size:
                    pts.append(packet.pts)
                    keyframe.append(packet.is_keyframe)
            if pts and None not in pts and (not stream.frames or stream.frames == len(pts)):
                pts = np.asarray(pts, dtype=np.int64)
                order = np.sort(pts)
                if np.all(np.diff(order) > 0):
                    # a clean cut at decode position d: every packet before d presents before it, every
                    # one from d on at or after it
                    before_max = np.maximum.accumulate(np.concatenate([[np.iinfo(np.int64).min], pts[:-1]]))
                    from_min = np.minimum.accumulate(pts[::-1])[::-1]
                    clean = np.asarray(keyframe) & (before_max < pts) & (from_min == pts)
                    keys = np.searchsorted(order, pts[clean])
                    if len(keys) and keys.min() == 0:
                        plan = _SeekPlan(order, np.sort(keys))
    except av.FFmpegError:
        plan = None
    finally:
        container.close()
    with _PLANS_LOCK:
        _PLANS[cache_key] = plan
        while len(_PLANS) > _PLANS_KEPT:
            _PLANS.popitem(last=False)
    return plan


class _Unsure(Exception):
    """The seeking decoder met something the plan did not foresee: read sequentially instead."""


def _seek_decode(path, wanted, plan, max_frame_pixels):
    """RGB frames at the ``wanted`` positions (all of them), decoding from the keyframe before a wanted
    frame whenever that keyframe is more than ``_SEEK_MIN_GAIN`` frames past the frame the decoder
    would reach next, else decoding on. Each decoded frame's index comes from its pts through the plan
    and must be the next one expected (frames come out consecutively from the keyframe); anything
    else — a decoding or demuxing error, a frame out of place, the file ending early — raises
    ``_Unsure``. Frames larger than the limit are a ``VideoReadError``, as when decoding sequentially.
    """
    found = {}
    targets = sorted(wanted)
    container = _open(path, max_frame_pixels)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        packets, position = container.demux(stream), 0
        for target in targets:
            if target < position:
                continue  # decoded on the way to an earlier target
            key = plan.key_before(target)
            if key > position + _SEEK_MIN_GAIN:
                container.seek(int(plan.pts[key]), stream=stream, backward=True, any_frame=False)
                packets, position = container.demux(stream), None  # where it landed: the first frame says
            while position is None or position <= target:
                packet = next(packets, None)
                if packet is not None and not packet.size:
                    packet = None  # the demuxer's end: flush the frames the decoder still holds
                frames = packet.decode() if packet is not None else stream.codec_context.decode(None)
                for frame in frames:
                    index = plan.index(frame.pts)
                    if position is None:  # the first frame after a seek: a usable keyframe, not past the target
                        if index is None or index > target or plan.key_before(index) != index:
                            raise _Unsure()
                        position = index
                    if index != position:
                        raise _Unsure()
                    reason = frame_size_error(path, frame.width, frame.height, max_frame_pixels)
                    if reason is not None:
                        raise VideoReadError(reason)
                    if index in wanted:
                        found[index] = frame.to_ndarray(format="rgb24")
                    position += 1
                if packet is None:
                    break
            if position is None or position <= target:
                raise _Unsure()  # the file ended before the target
    except av.FFmpegError:
        raise _Unsure() from None
    finally:
        container.close()
    return found


def _decode_wanted(path, wanted, last, max_frame_pixels):
    """``_decode(path, wanted, last)``'s result, seeking where that is cheaper (see ``_seek_decode``):
    with every wanted frame found; otherwise (a damaged file, or seeking unsure) ``_decode``'s."""
    plan = _seek_plan(path)
    if plan is not None and plan.seeks(sorted(wanted)):
        try:
            found = _seek_decode(path, wanted, plan, max_frame_pixels)
        except _Unsure:
            pass
        else:
            if wanted <= found.keys():
                return found, last + 1, None
    return _decode(path, wanted, last, max_frame_pixels=max_frame_pixels, plan=plan)


def _missing(path, index, decoded, error, plan=None):
    """The ``VideoReadError`` for a requested frame ``index`` that did not decode."""
    stopped = f" (decoding stopped: {error})" if error is not None else ""
    if plan is not None and index < len(plan.pts):  # the file has the frame: its packet is damaged
        return VideoReadError(f"{path}: frame {index} requested but it does not decode: {decoded} of the "
                              f"{len(plan.pts)} frames before it and up to it decode{stopped}")
    return VideoReadError(f"{path}: frame {index} requested but only {decoded} frame(s) decode{stopped}")


def read_frames(path, indices, max_frame_pixels=MAX_FRAME_PIXELS):
    """RGB uint8 frames ``(len(indices), H, W, 3)`` at ``indices`` (any order, repeats allowed).

    Decodes up to the last requested frame, seeking to the keyframe before a requested frame where
    that is cheaper than decoding on (the same frames), and converts only the requested ones to
    RGB (grayscale and other pixel formats are converted). Raises ``VideoReadError`` naming the
    file if it cannot be decoded, fewer frames decode than requested (the message says how many
    really decode) or its frames are larger than ``max_frame_pixels`` (None: no limit).
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size == 0:
        raise VideoReadError(f"{path}: no frame indices requested")
    if indices.min() < 0:
        raise VideoReadError(f"{path}: negative frame index {int(indices.min())} requested")
    wanted, last = set(indices.tolist()), int(indices.max())
    plan = _seek_plan(path)

    def decode(threaded):
        if threaded:
            return _decode_wanted(path, wanted, last, max_frame_pixels)
        return _decode(path, wanted, last, False, max_frame_pixels, plan)

    found, decoded, error = _retry_on_one_thread(decode, lambda result: wanted <= result[0].keys())
    missing = sorted(wanted - found.keys())
    if missing:
        raise _missing(path, missing[0], decoded, error, plan)
    return _stack(path, [found[i] for i in indices.tolist()])


def _retry_on_one_thread(decode, complete):
    """``decode(threaded)`` → ``(found, decoded, error)``: the threaded decode's result when it is
    ``complete``, else the decode on one thread unless that decodes fewer frames (FFmpeg's frame threads
    drop the frames in flight at a damaged packet; one thread loses none)."""
    result = decode(True)
    if complete(result):
        return result
    again = decode(False)
    return again if again[1] >= result[1] else result


def _decode_all(path, decode, max_frame_pixels):
    """``(results, decoded, repair)`` of ``decode(threaded)`` over every frame (see ``_retry_on_one_thread``);
    ``repair`` is ``(decoded, claimed)`` when fewer frames decode than the file claims, else None.
    ``VideoReadError`` naming ``path`` when no frame decodes."""
    claimed = count_frames(path, max_frame_pixels)
    results, decoded, error = _retry_on_one_thread(decode, lambda result: result[1] >= claimed)
    if not decoded:
        raise VideoReadError(f"{path}: no frame decodes (the file claims {claimed})"
                             + (f": {error}" if error is not None else ""))
    return results, decoded, ((decoded, claimed) if decoded < claimed else None)


class _Everything:
    def __contains__(self, item):
        return True


def _stack(path, frames):
    """``frames`` as one array, or ``VideoReadError`` naming ``path`` when their sizes differ (a video
    whose resolution changes mid-stream)."""
    for frame in frames[1:]:
        if frame.shape != frames[0].shape:
            raise VideoReadError(f"{path}: the resolution changes mid-stream (a sampled frame is "
                                 f"{frame.shape[1]}×{frame.shape[0]}, the first {frames[0].shape[1]}×"
                                 f"{frames[0].shape[0]})")
    return np.stack(frames)


def read_all_frames(path, with_repair=False, max_frame_pixels=MAX_FRAME_PIXELS):
    """Every frame that decodes, RGB uint8 ``(n, H, W, 3)``; raises ``VideoReadError`` when none does.

    With ``with_repair``, returns ``(frames, repair)``: ``repair`` is ``(frames_decoded,
    frames_claimed)`` when fewer frames decode than the file claims, else None.
    """
    found, decoded, repair = _decode_all(
        path, lambda threaded: _decode(path, _Everything(), float("inf"), threaded, max_frame_pixels), max_frame_pixels)
    frames = _stack(path, [found[i] for i in range(decoded)])
    return (frames, repair) if with_repair else frames


def map_all_frames(path, function, with_repair=False, max_frame_pixels=MAX_FRAME_PIXELS):
    """``[function(frame) for every frame that decodes]`` (RGB uint8 ``(H, W, 3)``, in order), decoding
    one frame at a time: a long video is never held whole as decoded frames, only as what ``function``
    returns (e.g. JPEG bytes).

    The same frames, ``VideoReadError``s and repair as ``read_all_frames``: with ``with_repair``,
    returns ``(results, repair)``.
    """
    def decode(threaded):
        errors = []
        results = [function(frame) for frame, _ in stream_frames(path, threaded, max_frame_pixels, errors)]
        return results, len(results), (errors[0] if errors else None)

    results, _, repair = _decode_all(path, decode, max_frame_pixels)
    return (results, repair) if with_repair else results


def sample_video(path, num_units, frames_per_unit, stride, training=False, seed=None,
                 max_frame_pixels=MAX_FRAME_PIXELS):
    """Frames of U action units sampled from a video file, repairing a partly decodable one.

    The units are placed over the frame count the file claims. When decoding stops before a
    sampled frame (a cut file, a header that claims too many frames), the units are placed again
    over the frames that do decode.

    Returns:
        ``(frames (U·T, H, W, 3) uint8, repair)`` where ``repair`` is None, or
        ``(frames_decoded, frames_claimed)`` when the video was re-sampled.
    Raises:
        ``VideoReadError`` naming ``path`` when no frame decodes, or when its frames are larger than
        ``max_frame_pixels`` (width × height, read from the stream's header before decoding; None:
        no limit).
    """
    from keras_v4d.data.frame_indices import segment_indices

    claimed = count_frames(path, max_frame_pixels)
    if claimed == 0:
        raise VideoReadError(f"{path}: the video has no frames")
    indices = segment_indices(claimed, num_units, frames_per_unit, stride, training, seed).numpy().reshape(-1)
    wanted = set(indices.tolist())
    found, decoded, error = _decode_wanted(path, wanted, int(indices.max()), max_frame_pixels)
    if wanted <= found.keys():
        return _stack(path, [found[i] for i in indices.tolist()]), None
    # Damaged: count the frames that decode (on one thread, which loses none), sample over them.
    _, decoded, error = _decode(path, (), float("inf"), False, max_frame_pixels)
    if decoded == 0:
        raise VideoReadError(f"{path}: no frame decodes (the file claims {claimed})"
                             + (f": {error}" if error is not None else ""))
    indices = segment_indices(decoded, num_units, frames_per_unit, stride, training, seed).numpy().reshape(-1)
    wanted = set(indices.tolist())
    found, again, error = _decode(path, wanted, int(indices.max()), False, max_frame_pixels)
    missing = sorted(wanted - found.keys())
    if missing:  # cannot happen unless decoding is not reproducible
        raise _missing(path, missing[0], again, error)
    return _stack(path, [found[i] for i in indices.tolist()]), (decoded, claimed)


def read_rawframe_folder(directory, num_frames, template, start_index, max_frame_pixels=MAX_FRAME_PIXELS):
    """The JPEG files of a rawframe folder (``bytes`` each, every one decoded once to check it) and
    the frames' size ``(H, W, 3)``.

    Raises ``VideoReadError`` naming the folder when it is missing, a frame file is missing, a
    frame is not a decodable JPEG, is larger than ``max_frame_pixels`` (read from its header,
    before decoding; None: no limit) or the frames differ in size.
    """
    import tensorflow as tf

    from keras_v4d.data.sources import frame_names

    if not os.path.isdir(directory):
        raise VideoReadError(f"frame folder {directory} not found")
    if num_frames < 1:
        raise VideoReadError(f"{directory}: total_frames is {num_frames}")
    names = frame_names(template, start_index, num_frames)
    present = set(os.listdir(directory)) if os.sep not in template else None
    jpegs, shape = [], None
    for k, name in enumerate(names):
        path = os.path.join(directory, name)
        if not (name in present if present is not None else os.path.isfile(path)):
            if present is not None and not present.intersection(names[k:]):
                raise VideoReadError(f"total_frames is {num_frames} but {directory} has only {k} frame(s)")
            raise VideoReadError(f"frame file {path} missing")
        with open(path, "rb") as handle:
            data = handle.read()
        try:
            height, width = frame_size_of(data)
            if height < 0:
                raise VideoReadError(f"frame file {path} is not a decodable JPEG (no JPEG, PNG or GIF header)")
            reason = frame_size_error(f"frame file {path}", width, height, max_frame_pixels)
            if reason is not None:
                raise VideoReadError(reason)
            image_shape = tuple(tf.io.decode_jpeg(data, channels=3).shape)
        except tf.errors.OpError as error:
            raise VideoReadError(f"frame file {path} is not a decodable JPEG ({error.message})") from None
        if shape is not None and image_shape != shape:
            raise VideoReadError(f"frame file {path} is {image_shape[1]}×{image_shape[0]}, "
                                 f"the frames before it {shape[1]}×{shape[0]}")
        shape = image_shape
        jpegs.append(data)
    return jpegs, shape


CODECS = {".mp4": ("libx264", "yuv420p"), ".mkv": ("libx264", "yuv420p"), ".avi": ("mpeg4", "yuv420p"),
          ".webm": ("libvpx-vp9", "yuv420p")}


def write_video(path, frames, fps=25, codec=None, pix_fmt=None, quality=None, faststart=False):
    """Encodes RGB uint8 ``(n, H, W, 3)`` frames (or ``(n, H, W)`` gray) to ``path``.

    The codec follows the extension (H.264 for .mp4/.mkv, MPEG-4 for .avi, VP9 for .webm);
    ``quality`` is x264's CRF (lower is better). ``faststart``: MP4 index (``moov``) before the
    frames, as web-ready files have it (a file cut short then still opens and claims every frame).
    """
    frames = np.asarray(frames, dtype=np.uint8)
    extension = os.path.splitext(path)[1].lower()
    default_codec, default_pix_fmt = CODECS.get(extension, ("libx264", "yuv420p"))
    codec, pix_fmt = codec or default_codec, pix_fmt or default_pix_fmt
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(path, mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        if codec == "libx264":
            stream.options = {"crf": str(quality if quality is not None else 18), "preset": "veryfast"}
        elif quality is not None:
            stream.options = {"qscale": str(quality)}
        source_format = "gray" if frames.ndim == 3 else "rgb24"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format=source_format)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
