"""The frame-size limit: video files, rawframe folders and TFRecords whose frames are over
``max_frame_pixels`` are skipped and logged without being decoded; the others are unaffected."""

import io
import os
import re
import struct

import av
import numpy as np
import pytest
import tensorflow as tf

from keras_v4d.data import (
    MAX_FRAME_PIXELS,
    DataOptions,
    VideoReadError,
    load_video_views,
    read_frames,
    video_dataset,
    video_io,
    write_video,
)
from keras_v4d.data.frame_size import encoded_frame_size, frame_size_of
from keras_v4d.data.tfrecord import encode_example, encode_jpeg_example
from keras_v4d.data.video_io import read_rawframe_folder, sample_video
from tests.data import unit_sampling

LIMIT = 32 * 32  # the tests' limit: 32×32 frames pass, 64×64 ones are over it
SAMPLING = unit_sampling(2, 2, 2, 32, 32)


def frames(size, num_frames=6):
    return np.stack([np.full((size, size, 3), 20 * k, np.uint8) for k in range(num_frames)])


def over_limit(where, size, limit=LIMIT):
    return f"{where}: a frame of {size}×{size} ({size * size} pixels) is over the limit of {limit} pixels"


def test_frame_headers_give_the_size_without_decoding():
    jpeg = tf.io.encode_jpeg(np.zeros((40, 300, 3), np.uint8)).numpy()
    png = tf.io.encode_png(np.zeros((70, 3, 3), np.uint8)).numpy()
    gif = b"GIF89a" + struct.pack("<HH", 640, 480) + b"\x00" * 8  # a header alone: nothing to decode
    for data, size in ((jpeg, [40, 300]), (png, [70, 3]), (gif, [480, 640]), (os.urandom(600), [-1, -1]),
                       (b"", [-1, -1])):
        assert encoded_frame_size(tf.constant(data)).numpy().tolist() == size
        assert list(frame_size_of(data)) == size
    assert tf.io.decode_jpeg(png).shape == (70, 3, 3)  # what decode_jpeg takes besides JPEG is covered


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("frame_size")
    write_video(str(root / "small.mp4"), frames(32))
    write_video(str(root / "large.mp4"), frames(64))
    # A genuinely large frame in a tiny file: 4104×4096 black, two frames, about 5 kB.
    write_video(str(root / "huge.mp4"), np.zeros((2, 4104, 4096, 3), np.uint8))
    assert os.path.getsize(root / "huge.mp4") < 50_000
    (root / "list.txt").write_text("small.mp4 0\nlarge.mp4 1\n")
    (root / "huge.txt").write_text("small.mp4 0\nhuge.mp4 1\n")
    return root


def test_a_video_over_the_limit_is_refused_from_its_header_before_decoding(videos, monkeypatch):
    decoded = []
    real_decode = video_io._decode
    monkeypatch.setattr(video_io, "_decode", lambda path, *args, **kwargs: decoded.append(path)
                        or real_decode(path, *args, **kwargs))
    large = str(videos / "large.mp4")
    with pytest.raises(VideoReadError, match=re.escape(over_limit(large, 64))):
        sample_video(large, 2, 2, 2, max_frame_pixels=LIMIT)
    assert decoded == []  # refused from the stream header: nothing was decoded
    assert sample_video(str(videos / "small.mp4"), 2, 2, 2, max_frame_pixels=LIMIT)[0].shape == (4, 32, 32, 3)
    assert sample_video(large, 2, 2, 2, max_frame_pixels=None)[0].shape == (4, 64, 64, 3)  # None: no limit
    huge = str(videos / "huge.mp4")
    with pytest.raises(VideoReadError, match=f"huge.mp4: a frame of 4096×4104 .* over the limit of {MAX_FRAME_PIXELS}"):
        read_frames(huge, [0])
    with pytest.raises(VideoReadError, match=re.escape(over_limit(large, 64))):
        load_video_views(large, unit_sampling(2, 2, 2, 32, 32, crops=1), max_frame_pixels=LIMIT)


def test_video_file_pipeline_skips_and_logs_a_video_over_the_limit(videos, caplog):
    with caplog.at_level("WARNING", logger="keras_v4d.data"):
        dataset, info = video_dataset(str(videos / "list.txt"), SAMPLING, batch_size=1, training=True,
                                      options=DataOptions(max_frame_pixels=LIMIT), with_info=True)
        labels = [int(y[0]) for _, y in dataset]
    assert labels == [0]
    (video, reason), = info.skip_log.entries
    assert video == "large.mp4" and reason.startswith(over_limit(str(videos / "large.mp4"), 64))
    assert "large.mp4" in caplog.text and "max_frame_pixels" in caplog.text
    # The default limit: a 4104×4096 file of a few kB is skipped, the small video is read.
    dataset, info = video_dataset(str(videos / "huge.txt"), SAMPLING, batch_size=1, training=False,
                                  options=DataOptions(strict=False), with_info=True)
    assert [ids[0].numpy().decode() for _, _, ids in dataset] == ["small.mp4"]
    assert info.skip_log.entries[0][0] == "huge.mp4" and str(MAX_FRAME_PIXELS) in info.skip_log.entries[0][1]
    with pytest.raises(ValueError, match="`max_frame_pixels` must be a positive int or None"):
        video_dataset(str(videos / "list.txt"), SAMPLING, batch_size=1, training=True,
                      options=DataOptions(max_frame_pixels=0))


def _raw_h264(size, num_frames):
    """A raw H.264 stream (no container) of ``num_frames`` grey frames of ``size`` × ``size``."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="h264") as output:
        stream = output.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        for frame in frames(size, num_frames):
            output.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        output.mux(stream.encode())
    return buffer.getvalue()


def test_frames_larger_than_the_header_said_are_refused_as_they_come(tmp_path):
    path = tmp_path / "grows.h264"  # the header (first SPS) says 32×32; later frames are 64×64
    path.write_bytes(_raw_h264(32, 6) + _raw_h264(64, 6))
    assert read_frames(str(path), [0, 5], max_frame_pixels=LIMIT).shape == (2, 32, 32, 3)
    with pytest.raises(VideoReadError, match=re.escape(over_limit(str(path), 64))):
        read_frames(str(path), [0, 8], max_frame_pixels=LIMIT)


def _write_rawframes(folder, images, encode=tf.io.encode_jpeg):
    os.makedirs(folder)
    for k, image in enumerate(images, 1):
        tf.io.write_file(os.path.join(folder, f"img_{k:05d}.jpg"), encode(image))


def test_rawframe_pipeline_skips_and_logs_a_folder_over_the_limit(tmp_path, caplog):
    _write_rawframes(tmp_path / "small", frames(32))
    _write_rawframes(tmp_path / "large", frames(64))
    _write_rawframes(tmp_path / "png", frames(64), tf.io.encode_png)  # PNG data under .jpg names decodes too
    (tmp_path / "list.txt").write_text("small 6 0\nlarge 6 1\npng 6 1\n")
    with caplog.at_level("WARNING", logger="keras_v4d.data"):
        dataset, info = video_dataset(str(tmp_path / "list.txt"), SAMPLING, batch_size=1, training=True,
                                      options=DataOptions(max_frame_pixels=LIMIT), with_info=True)
        labels = [int(y[0]) for _, y in dataset]
    assert labels == [0]
    reasons = dict(info.skip_log.entries)
    assert sorted(reasons) == ["large", "png"]
    for name in ("large", "png"):
        assert reasons[name].startswith(over_limit(f"frame file {tmp_path / name / 'img_00001.jpg'}", 64)), reasons
        assert name in caplog.text
    first = tmp_path / "large" / "img_00001.jpg"
    with pytest.raises(VideoReadError, match=re.escape(over_limit(f"frame file {first}", 64))):
        read_rawframe_folder(str(tmp_path / "large"), 6, "img_{:05d}.jpg", 1, max_frame_pixels=LIMIT)
    unlimited, unlimited_info = video_dataset(str(tmp_path / "list.txt"), SAMPLING, batch_size=1, training=True,
                                              options=DataOptions(max_frame_pixels=None), with_info=True)
    assert sorted(int(y[0]) for _, y in unlimited) == [0, 1, 1] and unlimited_info.skip_log.count == 0


def test_tfrecord_pipeline_skips_and_logs_a_record_over_the_limit(tmp_path, caplog):
    path = str(tmp_path / "x.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(encode_example(frames(32), 0, "small"))
        writer.write(encode_example(frames(64), 1, "large"))
        writer.write(encode_jpeg_example([tf.io.encode_png(f).numpy() for f in frames(64)], 1, "png"))
        writer.write(encode_example(frames(32), 2, "also_small"))
    with caplog.at_level("WARNING", logger="keras_v4d.data"):
        dataset, info = video_dataset(path, SAMPLING, batch_size=1, training=False, options=DataOptions(strict=False,
                                      max_frame_pixels=LIMIT), with_info=True)
        ids = [ids[0].numpy().decode() for _, _, ids in dataset]
    assert sorted(ids) == ["also_small", "small"]
    reasons = dict(info.skip_log.entries)
    assert reasons["large"] == f"{over_limit('frame 0 of 6', 64)} (max_frame_pixels); not decoded (record #1 of {path})"
    assert reasons["png"] == f"{over_limit('frame 0 of 6', 64)} (max_frame_pixels); not decoded (record #2 of {path})"
    assert "large" in caplog.text and "record #1" in caplog.text
    strict = video_dataset(path, SAMPLING, batch_size=1, training=False, options=DataOptions(strict=True,
                           max_frame_pixels=LIMIT))
    with pytest.raises(tf.errors.OpError, match="large: frame 0 of 6: a frame of 64×64"):
        list(strict)
    unlimited = video_dataset(path, SAMPLING, batch_size=1, training=False, options=DataOptions(strict=True,
                              max_frame_pixels=None))
    assert len(list(unlimited)) == 4
