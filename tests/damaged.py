"""Damaged video files as real crawls have them, made by the tests themselves."""

import av
import numpy as np


def _top_level_boxes(path):
    """The MP4 top-level box types in file order (read independently of any video library)."""
    data, boxes, at = path.read_bytes(), [], 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        boxes.append(data[at + 4:at + 8].decode("latin-1"))
        if size < 8:
            break
        at += size
    return boxes


def write_cut_faststart_mp4(path, frames, keep=0.7):
    """An H.264 mp4 with its index (moov) at the front, then cut to ``keep`` of its bytes: the header
    still claims every frame, only the first part of them decodes (a download that stopped)."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    boxes = _top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # faststart: the index survives the cut
    data = path.read_bytes()
    path.write_bytes(data[:int(keep * len(data))])


def decodable_frames(path):
    """Every frame FFmpeg decodes from ``path`` on one thread, skipping packets that fail to decode (the
    cut one) and flushing the decoder at the end (PyAV's last, empty packet), and the frame count the
    header claims."""
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        claimed = stream.frames
        for packet in container.demux(stream):
            try:
                frames += [frame.to_ndarray(format="rgb24") for frame in packet.decode()]
            except av.FFmpegError:
                continue
    return np.stack(frames), claimed
