"""Reading and writing video files with PyAV (FFmpeg bundled; ``tensorflow-io`` is unusable, SPEC §10)."""

import os

import av
import numpy as np


class VideoReadError(ValueError):
    """A video file that cannot be read; the message names the file and the reason."""


def _open(path):
    if not os.path.isfile(path):
        raise VideoReadError(f"{path}: file not found")
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise VideoReadError(f"{path}: cannot open as a video ({error})") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path}: no video stream (an empty or audio-only file)")
    return container


def count_frames(path):
    """Number of frames of the first video stream (demuxes the packets when the header has no count)."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        return sum(1 for packet in container.demux(stream) if packet.size)
    except av.FFmpegError as error:
        raise VideoReadError(f"{path}: cannot read ({error})") from None
    finally:
        container.close()


def read_frames(path, indices):
    """RGB uint8 frames ``(len(indices), H, W, 3)`` at ``indices`` (any order, repeats allowed).

    Decodes sequentially up to the last requested frame and converts only the requested ones to
    RGB (grayscale and other pixel formats are converted). Raises ``VideoReadError`` naming the
    file if it cannot be decoded or has fewer frames than requested.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size == 0:
        raise VideoReadError(f"{path}: no frame indices requested")
    wanted = set(indices.tolist())
    last = int(indices.max())
    found = {}
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for position, frame in enumerate(container.decode(stream)):
            if position in wanted:
                found[position] = frame.to_ndarray(format="rgb24")
            if position >= last:
                break
    except av.FFmpegError as error:
        raise VideoReadError(f"{path}: decoding failed ({error})") from None
    finally:
        container.close()
    missing = sorted(wanted - found.keys())
    if missing:
        raise VideoReadError(
            f"{path}: frame {missing[0]} requested but the video decodes to {len(found) and max(found) + 1 or 0} frames")
    return np.stack([found[i] for i in indices.tolist()])


def read_all_frames(path):
    """Every frame, RGB uint8 ``(n, H, W, 3)``; raises ``VideoReadError`` for an empty or broken file."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    except av.FFmpegError as error:
        raise VideoReadError(f"{path}: decoding failed ({error})") from None
    finally:
        container.close()
    if not frames:
        raise VideoReadError(f"{path}: the video has no frames")
    return np.stack(frames)


CODECS = {".mp4": ("libx264", "yuv420p"), ".mkv": ("libx264", "yuv420p"), ".avi": ("mpeg4", "yuv420p"),
          ".webm": ("libvpx-vp9", "yuv420p")}


def write_video(path, frames, fps=25, codec=None, pix_fmt=None, quality=None):
    """Encodes RGB uint8 ``(n, H, W, 3)`` frames (or ``(n, H, W)`` gray) to ``path``.

    The codec follows the extension (H.264 for .mp4/.mkv, MPEG-4 for .avi, VP9 for .webm);
    ``quality`` is x264's CRF (lower is better).
    """
    frames = np.asarray(frames, dtype=np.uint8)
    extension = os.path.splitext(path)[1].lower()
    default_codec, default_pix_fmt = CODECS.get(extension, ("libx264", "yuv420p"))
    codec, pix_fmt = codec or default_codec, pix_fmt or default_pix_fmt
    with av.open(path, mode="w") as container:
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
