"""Damaged data made by the tests themselves: cut and corrupted TFRecord shards, records whose frames
are not JPEGs, video files cut short. Nothing may stop a run; everything lost is in the skip log."""

import os
import re

import av
import numpy as np
import pytest
import tensorflow as tf

from keras_v4d.data import (
    DataOptions,
    VideoReadError,
    count_tfrecords,
    read_frames,
    scan_shard,
    segment_indices,
    video_dataset,
    write_video,
)
from keras_v4d.data.tfrecord import encode_example, encode_jpeg_example
from keras_v4d.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from tests.data import unit_sampling

LEVEL = 8
SAMPLING = unit_sampling(2, 2, 2, 32, 32)
NUM_FRAMES = 20


def index_coded(num_frames=NUM_FRAMES, size=32):
    return np.repeat(np.arange(num_frames, dtype=np.uint8)[:, None, None, None] * LEVEL, size * size * 3
                     ).reshape(num_frames, size, size, 3)


def frame_index_of(normalised):
    rgb = (normalised * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)) * 255
    return np.round(rgb.mean(axis=(-3, -2, -1)) / LEVEL).astype(int)


def write_shards(folder, shards=4, per_shard=3):
    """Shard s holds videos with labels 3s … 3s+2; returns {shard path: [record byte sizes]}."""
    sizes = {}
    for s in range(shards):
        path = str(folder / f"train-{s:05d}-of-{shards:05d}.tfrecord")
        sizes[path] = []
        with tf.io.TFRecordWriter(path) as writer:
            for k in range(per_shard):
                label = s * per_shard + k
                record = encode_example(index_coded(), label, f"video_{label}")
                writer.write(record)
                sizes[path].append(16 + len(record))  # TFRecord framing: 12-byte header, 4-byte footer
    return sizes


def whole_records_before(sizes, cut):
    """How many records end before byte ``cut`` (worked out from the sizes written, not from the shard)."""
    return int(np.sum(np.cumsum(sizes) <= cut))


@pytest.fixture
def shards(tmp_path):
    sizes = write_shards(tmp_path)
    damaged = sorted(sizes)[1]
    data = open(damaged, "rb").read()
    cut = len(data) // 2
    with open(damaged, "wb") as handle:
        handle.write(data[:cut])  # cut in half, inside the second record
    return tmp_path, sizes, damaged, whole_records_before(sizes[damaged], cut)


def test_a_shard_cut_in_half_loses_only_its_tail(shards):
    folder, sizes, damaged, before = shards
    assert before == 1
    dataset, info = video_dataset(str(folder), SAMPLING, training=True, num_classes=12, batch_size=1, with_info=True)
    labels = sorted(int(labels[0]) for _, labels in dataset)  # one whole epoch
    expected = [label for s, path in enumerate(sorted(sizes)) for label in range(3 * s, 3 * s + 3)
                if path != damaged or label - 3 * s < before]
    assert labels == expected
    assert len(info.skip_log.entries) == 1
    shard, reason = info.skip_log.entries[0]
    assert shard == damaged
    assert re.match(rf"damaged TFRecord shard: {before} record\(s\) read before the damage "
                    rf"\(a record cut short", reason)
    assert info.num_videos == 9 + before  # counted from the framing, nothing decoded


def test_evaluation_reads_every_other_video_and_names_the_shard(shards):
    folder, sizes, damaged, before = shards
    dataset, info = video_dataset(str(folder), SAMPLING, training=False, num_classes=12, batch_size=4,
                                  options=DataOptions(strict=False), with_info=True)
    ids = sorted(i.decode() for _, _, batch in dataset for i in batch.numpy())
    assert len(ids) == 9 + before
    assert [entry[0] for entry in info.skip_log.entries] == [damaged]


def test_strict_raises_naming_the_shard(shards):
    folder, _, damaged, _ = shards
    dataset = video_dataset(str(folder), SAMPLING, training=True, num_classes=12, batch_size=1,
                            options=DataOptions(strict=True))
    with pytest.raises(tf.errors.OpError, match=re.escape(damaged) + ": damaged TFRecord shard"):
        for _ in dataset:
            pass


def test_a_record_that_fails_its_checksum_ends_its_shard_there(tmp_path):
    sizes = write_shards(tmp_path, shards=2)
    damaged = sorted(sizes)[0]
    data = bytearray(open(damaged, "rb").read())
    data[sizes[damaged][0] + 12 + 100] ^= 0xFF  # a flipped byte inside the second record's data
    open(damaged, "wb").write(bytes(data))
    dataset, info = video_dataset(str(tmp_path), SAMPLING, training=False, num_classes=6, batch_size=8,
                                  options=DataOptions(strict=False), with_info=True)
    ids = sorted(i.decode() for _, _, batch in dataset for i in batch.numpy())
    assert ids == ["video_0", "video_3", "video_4", "video_5"]
    (shard, reason), = info.skip_log.entries
    assert shard == damaged and reason.startswith(
        "damaged TFRecord shard: 1 record(s) read, then record #1 failed its checksum or could not be read; "
        "the shard's remaining 2 framed record(s) lost")


def test_framing_scan_counts_records_without_reading_them(shards):
    folder, sizes, damaged, before = shards
    for path, record_sizes in sizes.items():
        scan = scan_shard(path)
        if path == damaged:
            assert scan.records == before and scan.end == sum(record_sizes[:before]) and scan.problem
        else:
            assert (scan.records, scan.end, scan.size, scan.problem) == (3, sum(record_sizes), sum(record_sizes), None)
    assert count_tfrecords(sorted(sizes)) == 9 + before


def test_records_with_garbage_frames_are_skipped_by_their_id(tmp_path, caplog):
    good = [tf.io.encode_jpeg(frame).numpy() for frame in index_coded()]
    path = str(tmp_path / "x.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(encode_example(index_coded(), 0, "good"))
        writer.write(encode_jpeg_example([os.urandom(600) for _ in good], 1, "garbage"))
        writer.write(encode_jpeg_example([data[: len(data) // 2] for data in good], 1, "cut_jpegs"))
        writer.write(b"not a SequenceExample at all")
        writer.write(encode_example(index_coded(), 2, "also_good"))
    with caplog.at_level("WARNING", logger="keras_v4d.data"):
        dataset, info = video_dataset(path, SAMPLING, training=True, num_classes=3, batch_size=1, with_info=True)
        assert sorted(int(labels[0]) for _, labels in dataset) == [0, 2]
    reasons = dict(info.skip_log.entries)
    assert sorted(reasons) == sorted(["garbage", "cut_jpegs", f"{path} record #3"])
    assert reasons["garbage"].startswith("frame 0 of 20 is not a decodable JPEG")
    assert reasons["cut_jpegs"].startswith("frame 0 of 20 is not a decodable JPEG")
    assert reasons[f"{path} record #3"].startswith("not a video SequenceExample")
    assert "garbage" in caplog.text and "cut_jpegs" in caplog.text
    strict = video_dataset(path, SAMPLING, training=False, num_classes=3, batch_size=1,
                           options=DataOptions(strict=True))
    with pytest.raises(tf.errors.OpError, match="garbage: frame 0 of 20 is not a decodable JPEG"):
        list(strict)


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory):
    """An H.264 mp4 with its index (moov) first, cut at 70 %: the header still claims every frame."""
    folder = tmp_path_factory.mktemp("cut")
    rng = np.random.default_rng(0)
    frames = index_coded()
    # fresh noise in every frame, coded losslessly: every frame costs about as many bytes
    frames = np.clip(frames.astype(int) + rng.integers(-3, 4, frames.shape), 0, 255).astype(np.uint8)
    write_video(str(folder / "whole.mp4"), frames, faststart=True, quality=0)
    data = (folder / "whole.mp4").read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")
    (folder / "cut.mp4").write_bytes(data[: int(0.7 * len(data))])
    (folder / "stub.mp4").write_bytes(data[: int(0.1 * len(data))])  # the header and no whole frame
    with av.open(str(folder / "cut.mp4")) as container:  # independent look: what plain PyAV gets
        claimed = container.streams.video[0].frames
        plain = 0
        try:
            for _ in container.decode(video=0):
                plain += 1
        except av.FFmpegError:
            pass
    assert claimed == NUM_FRAMES and 0 < plain < NUM_FRAMES
    (folder / "list.txt").write_text("whole.mp4 0\ncut.mp4 1\nstub.mp4 2\n")
    return folder, plain


def test_a_cut_video_is_used_and_recorded_as_repaired(cut_video):
    folder, plain = cut_video
    dataset, info = video_dataset(str(folder / "list.txt"), SAMPLING, training=True, batch_size=1, num_classes=3,
                                  with_info=True)
    units = {int(labels[0]): frame_index_of(v.numpy()[0]) for v, labels in dataset}
    assert sorted(units) == [0, 1]  # the cut file is used; the stub (no whole frame) is skipped
    (video, decoded, claimed), = info.skip_log.repaired
    assert (video, claimed) == ("cut.mp4", NUM_FRAMES) and plain <= decoded < NUM_FRAMES
    assert units[1].max() < decoded  # sampled over the frames that decode
    (stub, reason), = info.skip_log.entries
    assert stub == "stub.mp4" and f"no frame decodes (the file claims {NUM_FRAMES})" in reason
    assert info.skip_log.counts() == {"skipped": 1, "repaired": 1}
    assert "1 video(s) skipped, 1 repaired" in info.skip_log.summary()
    assert f"cut.mp4: {decoded} / {NUM_FRAMES}" in info.skip_log.summary()


def test_evaluation_of_a_cut_video_samples_the_decoded_frames(cut_video):
    folder, _ = cut_video
    (folder / "eval.txt").write_text("cut.mp4 1\n")
    dataset, info = video_dataset(str(folder / "eval.txt"), SAMPLING, training=False, batch_size=1,
                                  options=DataOptions(strict=True), with_info=True)
    views, _, _ = next(iter(dataset))  # a repair is not an error, even in strict mode
    (_, decoded, _), = info.skip_log.repaired
    np.testing.assert_array_equal(frame_index_of(views.numpy()[0, 0]),
                                  segment_indices(decoded, 2, 2, 2, training=False).numpy())


def test_read_frames_says_how_many_frames_decode(cut_video):
    folder, _ = cut_video
    with pytest.raises(VideoReadError) as error:
        read_frames(str(folder / "cut.mp4"), [0, NUM_FRAMES - 1])
    count = int(re.search(r"only (\d+) frame\(s\) decode", str(error.value))[1])
    assert str(error.value).startswith(f"{folder / 'cut.mp4'}: frame {NUM_FRAMES - 1} requested but only {count}")
    frames = read_frames(str(folder / "cut.mp4"), list(range(count)))  # … and those frames do decode
    np.testing.assert_array_equal(np.round(frames.mean(axis=(1, 2, 3)) / LEVEL), np.arange(count))
    with pytest.raises(VideoReadError, match=rf"frame {count} requested but only {count} frame\(s\) decode"):
        read_frames(str(folder / "cut.mp4"), [count])


def test_start_up_opens_no_file(tmp_path):
    lines = [f"missing/video_{i}.mp4 {i % 5}" for i in range(5000)]
    (tmp_path / "big.txt").write_text("\n".join(lines) + "\n")
    dataset, info = video_dataset(str(tmp_path / "big.txt"), SAMPLING, training=True, batch_size=8, with_info=True)
    assert info.num_videos == 5000 and info.skip_log.count == 0  # nothing was opened to build it


def _raw_h264(size, num_frames):
    """A raw H.264 stream of ``num_frames`` frames of ``size`` (width, height)."""
    import io

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="h264") as output:
        stream = output.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for k in range(num_frames):
            frame = np.full((size[1], size[0], 3), LEVEL * k, np.uint8)
            output.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        output.mux(stream.encode())
    return buffer.getvalue()


def test_a_video_whose_resolution_changes_mid_stream_is_a_named_read_error(tmp_path):
    """Two streams of different sizes, one after the other (as a camera that switches resolution
    writes them): a clear ``VideoReadError`` naming the file, which every reader then skips or
    reports (``predict`` used to die on a bare ValueError from np.stack)."""
    from keras_v4d.data import load_video_views
    from keras_v4d.inference import predict_videos
    from keras_v4d.models import build_resnet3d

    path = tmp_path / "switch.h264"
    path.write_bytes(_raw_h264((48, 32), 10) + _raw_h264((64, 48), 10))
    assert read_frames(str(path), [0, 5]).shape == (2, 32, 48, 3)  # one resolution: fine
    with pytest.raises(VideoReadError, match=r"switch\.h264: the resolution changes mid-stream .*64×48.*48×32"):
        read_frames(str(path), [0, 15])
    with pytest.raises(VideoReadError, match="resolution changes mid-stream"):
        load_video_views(str(path), unit_sampling(2, 2, 4, 32, 32, crops=1))
    good = tmp_path / "good.mp4"
    write_video(str(good), index_coded(20, 32))
    model = build_resnet3d(18, None, classes=2, width=0.25)
    results = list(predict_videos(model, [str(path), str(good)]))
    assert results[0][1] is None and "resolution changes mid-stream" in results[0][2]
    assert results[1][2] is None and len(results[1][1]) == 2  # the videos after it are still predicted
