"""The TFRecord converter on real video files: streamed frames equal to the whole-video path it
replaced, one decoded frame in memory at a time, shard sets written whole, stale sets removed.
(Failures, kills and signals of the command are in tests/cli/test_convert_data.py.)"""

import io
import os
import tracemalloc

import av
import numpy as np
import pytest
import tensorflow as tf

from keras_v4d.data import VideoReadError, read_all_frames, read_annotations, video_dataset, write_video
from keras_v4d.data.convert import ConversionError, _encode_item, convert
from keras_v4d.data.sources import VideoFiles
from keras_v4d.data.tfrecord import parse_example
from keras_v4d.data.video_io import map_all_frames
from tests.damaged import write_cut_faststart_mp4
from tests.data import unit_sampling

QUALITY = 90


def textured(num_frames, height, width, seed=0):
    """Smooth gradients that move, plus a little noise: resizing and JPEG both have work to do."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    frames = [np.stack([(x * 5 + 7 * k) % 256, (y * 4 + 3 * k) % 256, (x + y + 11 * k) % 256], -1)
              for k in range(num_frames)]
    return np.clip(np.array(frames) + rng.integers(-6, 7, (num_frames, height, width, 3)), 0, 255).astype(np.uint8)


def whole_video_reference(frames, short_side):
    """The JPEGs the converter stored before it streamed: every frame at once, resized as one batch."""
    if short_side:
        height, width = frames.shape[1:3]
        scale = short_side / min(height, width)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        frames = tf.cast(tf.round(tf.image.resize(frames, size)), tf.uint8).numpy()
    return [tf.io.encode_jpeg(frame, quality=QUALITY).numpy() for frame in frames]


def stored_jpegs(shards):
    return {parse_example(record)["video_id"].numpy().decode(): list(parse_example(record)["frames"].numpy())
            for record in tf.data.TFRecordDataset(shards)}


def resolution_switch(path):
    """A raw H.264 stream of 48×32 frames followed by one of 64×48 frames (a camera that switched)."""
    data = b""
    for width, height in ((48, 32), (64, 48)):
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="h264") as output:
            stream = output.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for frame in textured(6, height, width):
                output.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            output.mux(stream.encode())
        data += buffer.getvalue()
    path.write_bytes(data)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("convert")
    write_video(str(root / "wide.mp4"), textured(12, 36, 52))
    write_video(str(root / "gray.mkv"), textured(9, 30, 30)[..., 0], codec="ffv1", pix_fmt="gray")
    write_cut_faststart_mp4(root / "cut.mp4", textured(30, 32, 32, seed=1))
    resolution_switch(root / "switch.h264")
    names = ["wide.mp4", "gray.mkv", "cut.mp4", "switch.h264"]
    return root, VideoFiles([str(root / name) for name in names], [0, 1, 0, 1], names)


def test_streamed_records_hold_the_jpegs_of_the_whole_video_path(videos, tmp_path):
    root, listing = videos
    shards, written, skipped, repaired = convert(listing, str(tmp_path / "rec"), num_shards=1, workers=1,
                                                 short_side=24, progress_bar=False, with_repaired=True)
    assert written == ["wide.mp4", "gray.mkv", "cut.mp4"]
    (switch, reason), = skipped
    assert switch == "switch.h264" and reason.startswith(f"{root / 'switch.h264'}: the resolution changes mid-stream")
    stored = stored_jpegs(shards)
    for name in written:
        frames, repair = read_all_frames(str(root / name), with_repair=True)
        expected = whole_video_reference(frames, 24)
        assert len(stored[name]) == len(expected), name
        assert stored[name] == expected, name  # byte for byte: the same pixels went into the same encoder
        assert min(tf.io.decode_jpeg(stored[name][0]).shape[:2]) == 24
    (name, decoded, claimed), = repaired
    assert (name, decoded, claimed) == ("cut.mp4", *read_all_frames(str(root / "cut.mp4"), with_repair=True)[1])
    assert decoded == len(stored["cut.mp4"]) < claimed == 30


def test_resized_rawframes_match_the_whole_folder_path(tmp_path):
    frames = textured(5, 40, 30)
    for k, frame in enumerate(frames):
        (tmp_path / f"img_{k + 1:05d}.jpg").write_bytes(tf.io.encode_jpeg(frame, quality=95).numpy())
    item = ("rawframes", str(tmp_path), 0, "folder", len(frames), "img_{:05d}.jpg", 1)
    record, repair = _encode_item(item, 24, QUALITY)
    decoded = np.stack([tf.io.decode_jpeg((tmp_path / f"img_{k + 1:05d}.jpg").read_bytes(), channels=3)
                        for k in range(len(frames))])
    assert repair is None
    assert list(parse_example(record)["frames"].numpy()) == whole_video_reference(decoded, 24)


def peak_memory(function):
    """``function()`` and the most memory that Python objects (NumPy arrays among them) took meanwhile."""
    tracemalloc.start()
    try:
        result = function()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_video_is_converted_holding_one_decoded_frame_at_a_time(tmp_path):
    path = str(tmp_path / "long.mkv")
    frames = textured(80, 96, 128)
    write_video(path, frames, codec="ffv1", pix_fmt="bgr0")  # lossless: the frames come back exactly
    whole = frames.nbytes  # 2.9 MB
    read, whole_peak = peak_memory(lambda: read_all_frames(path))
    means, streamed_peak = peak_memory(lambda: map_all_frames(path, lambda frame: float(frame.mean())))
    (record, _), converter_peak = peak_memory(lambda: _encode_item(("video", path, 0, "long", None, None, None),
                                                                   48, QUALITY))
    np.testing.assert_array_equal(read, frames)
    np.testing.assert_allclose(means, frames.mean(axis=(1, 2, 3)))
    assert whole_peak > whole  # the measure sees decoded frames …
    assert streamed_peak < whole / 8, (streamed_peak, whole)  # … and a stream holds a few of the 80 at most
    assert converter_peak < whole / 4, (converter_peak, whole)  # the converter: those and the JPEGs
    assert len(parse_example(record)["frames"]) == 80
    np.testing.assert_array_equal(np.stack(map_all_frames(path, lambda frame: frame)), frames)


def test_map_all_frames_names_a_video_that_changes_resolution(videos):
    root, _ = videos
    with pytest.raises(VideoReadError, match=r"switch\.h264: the resolution changes mid-stream \(frame 6 is 64×48, "
                                             r"the first 48×32\)"):
        map_all_frames(str(root / "switch.h264"), len)


def test_a_stale_shard_set_is_removed_once_the_new_set_is_complete(videos, tmp_path, capsys):
    root, _ = videos
    (root / "good.txt").write_text("wide.mp4 0\ngray.mkv 1\ncut.mp4 0\n")
    listing = read_annotations(str(root / "good.txt"))
    output = str(tmp_path / "rec")
    old, _, _ = convert(listing, output, num_shards=3, workers=1, progress_bar=False)
    leftover = tmp_path / ".tmp-99999-rec-00001-of-00002.tfrecord"  # what a killed writer leaves
    leftover.write_bytes(b"half a shard")
    others = [tmp_path / "rec-extra-00000-of-00003.tfrecord", tmp_path / ".tmp-99999-val-00000-of-00002.tfrecord"]
    for path in others:  # another prefix's: not ours to remove
        path.write_bytes(b"another set")
    capsys.readouterr()
    new, written, _ = convert(listing, output, num_shards=2, workers=1, progress_bar=False)
    messages = capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(p) for p in new] + [p.name for p in others])
    assert f"removed 1 temporary file(s) a killed conversion left: {leftover}" in messages
    assert ("removed 3 shard(s) of an earlier run with another shard count, now that the 2 new one(s) are "
            f"complete: {', '.join(old)}") in messages
    dataset, info = video_dataset(str(tmp_path / "rec-?????-of-?????.tfrecord"), unit_sampling(1, 2, 1, 16, 16),
                                  training=False, batch_size=1, num_classes=2, with_info=True)
    assert info.num_videos == 3
    assert sorted(ids.numpy()[0].decode() for _, _, ids in dataset) == sorted(written) == sorted(listing.ids)


def test_nothing_is_started_when_a_shard_cannot_be_written(videos, tmp_path):
    root, listing = videos
    earlier = tmp_path / "rec-00000-of-00003.tfrecord"
    earlier.write_bytes(b"an earlier set")
    (tmp_path / "rec-00001-of-00002.tfrecord").mkdir()  # in the way of the new set's second shard
    with pytest.raises(ConversionError, match=f"cannot write shard {tmp_path}/rec-00001-of-00002.tfrecord: "
                                              "something other than a file is in the way"):
        convert(listing, str(tmp_path / "rec"), num_shards=2, progress_bar=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConversionError, match=f"cannot create the output folder {tmp_path}/file/sub"):
        convert(listing, str(tmp_path / "file" / "sub" / "rec"), num_shards=2, progress_bar=False)
    assert earlier.read_bytes() == b"an earlier set"
    assert sorted(os.listdir(tmp_path)) == ["file", "rec-00000-of-00003.tfrecord", "rec-00001-of-00002.tfrecord"]
