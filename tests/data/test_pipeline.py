"""The video-file and TFRecord pipelines on real encoded files written by the tests with PyAV."""

import os
import re
import shutil

import av
import numpy as np
import pytest
import tensorflow as tf

from keras_v4d.data import (
    BadVideoError,
    DataOptions,
    read_annotations,
    read_frames,
    segment_indices,
    video_dataset,
    write_video,
)
from keras_v4d.data.convert import convert
from keras_v4d.data.tfrecord import encode_example
from keras_v4d.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from keras_v4d.records.sampling import VideoSampling
from tests.commands import run_tool
from tests.data import unit_sampling

SMALL = VideoSampling(crop_size=32, short_side=32)  # the test protocol's 10 units of 4 frames at τ=8, 3 crops of 32²
LEVEL = 4  # frame i is filled with grey level LEVEL·i, so a decoded frame tells its own index
NUM_FRAMES = 60


def indexed_frames(num_frames=NUM_FRAMES, height=64, width=80):
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    for i in range(num_frames):
        frames[i] = LEVEL * i
    return frames


def frame_index_of(normalised_views):
    """Recovers the frame index from preprocessed (ImageNet-normalised) uniform frames."""
    rgb = (normalised_views * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)) * 255
    return np.round(rgb.mean(axis=(-3, -2, -1)) / LEVEL).astype(int)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    frames = indexed_frames()
    write_video(str(root / "a.mp4"), frames, quality=0)          # H.264, lossless
    write_video(str(root / "b.webm"), frames[:50])                # VP9
    write_video(str(root / "c.mkv"), frames[:30, :, :, 0], codec="ffv1", pix_fmt="gray")  # grayscale
    write_video(str(root / "d.mkv"), indexed_frames(45, 37, 53), codec="ffv1", pix_fmt="bgr0")  # odd-sized
    (root / "corrupt.mp4").write_bytes(os.urandom(4096))
    data = (root / "a.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    with av.open(str(root / "empty.mp4"), "w") as container:  # a video stream with no frames
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()  # header only; FFmpeg then lists no video stream
    good = ["a.mp4 0", "b.webm 1", "c.mkv 2", "d.mkv 1"]
    bad = ["corrupt.mp4 0", "truncated.mp4 1", "empty.mp4 0", "missing.mp4 2", "a.mp4 7"]
    (root / "good.txt").write_text("\n".join(good) + "\n")
    (root / "all.txt").write_text("# path label\n" + "\n".join(good + bad) + "\n")
    return root


def test_read_frames_returns_the_requested_frames(videos):
    frames = read_frames(str(videos / "a.mp4"), [0, 17, 59, 17])
    assert frames.shape == (4, 64, 80, 3)
    # lossless H.264, but RGB → YUV → RGB rounds by ±1 level; levels are LEVEL apart
    assert np.abs(frames.reshape(4, -1).astype(int) - np.array([[0], [17], [59], [17]]) * LEVEL).max() <= 1


@pytest.mark.parametrize("name, num_frames, size", [("a.mp4", 60, (64, 80)), ("b.webm", 50, (64, 80)),
                                                    ("c.mkv", 30, (64, 80)), ("d.mkv", 45, (37, 53))])
def test_evaluation_pipeline_samples_the_centred_units(videos, name, num_frames, size):
    (videos / "one.txt").write_text(f"{name} 0\n")
    dataset = video_dataset(str(videos / "one.txt"), unit_sampling(3, 2, 4, 32, 32, crops=1), training=False,
                            batch_size=1)
    views, labels, ids = next(iter(dataset))
    assert views.shape == (1, 1, 3, 2, 32, 32, 3) and ids.numpy()[0].decode() == name
    expected = segment_indices(num_frames, 3, 2, 4, training=False).numpy()
    np.testing.assert_array_equal(frame_index_of(views.numpy()[0, 0]), expected)


def test_training_pipeline_shapes_and_sections(videos):
    dataset, info = video_dataset(str(videos / "good.txt"), unit_sampling(3, 2, 4, 32, 40), training=True,
                                  batch_size=2, num_classes=3, with_info=True)
    batches = list(dataset)
    assert len(batches) == 2 and info.skip_log.count == 0
    for videos_batch, labels in batches:
        assert videos_batch.shape == (2, 3, 2, 32, 32, 3) and videos_batch.dtype == tf.float32
        order = frame_index_of(videos_batch.numpy())  # (2, U, T)
        assert (np.diff(order.reshape(2, -1), axis=1) >= 0).all()  # units in temporal order


def test_video_files_and_tfrecords_give_the_same_frames(videos, tmp_path):
    listing = read_annotations(str(videos / "good.txt"))
    shards, written, skipped = convert(listing, str(tmp_path / "rec"), num_shards=2, workers=2, progress_bar=False)
    assert sorted(written) == sorted(listing.ids) and not skipped
    kwargs = dict(sampling=unit_sampling(4, 3, 3, 32, 32, crops=3), training=False, batch_size=1)
    from_files = {ids.numpy()[0]: v.numpy() for v, _, ids in video_dataset(str(videos / "good.txt"), **kwargs)}
    from_records = {ids.numpy()[0]: v.numpy() for v, _, ids in video_dataset(str(tmp_path), **kwargs)}
    assert from_files.keys() == from_records.keys()
    for key in from_files:
        difference = np.abs(from_files[key] - from_records[key]) * np.array(IMAGENET_STD) * 255
        # JPEG (quality 90) loss on these frames: within 3 grey levels everywhere, 1 on average
        assert difference.max() <= 3.0 and difference.mean() <= 1.0, key


def test_training_skips_bad_videos_counts_and_logs_them(videos, caplog):
    dataset, info = video_dataset(str(videos / "all.txt"), unit_sampling(2, 2, 2, 32, 32), training=True,
                                  batch_size=1, num_classes=3, with_info=True)
    with caplog.at_level("WARNING", logger="keras_v4d.data"):
        count = sum(1 for _ in dataset)
    assert count == 4
    reasons = dict(info.skip_log.entries)
    assert set(reasons) == {"corrupt.mp4", "truncated.mp4", "empty.mp4", "missing.mp4", "a.mp4"}
    assert "file not found" in reasons["missing.mp4"] and "outside [0, 3)" in reasons["a.mp4"]
    assert "no video stream" in reasons["empty.mp4"]
    assert "corrupt.mp4" in caplog.text and "missing.mp4" in caplog.text


def test_strict_training_raises_naming_the_file(videos):
    dataset = video_dataset(str(videos / "all.txt"), unit_sampling(2, 2, 2, 32, 32), training=True, batch_size=1,
                            options=DataOptions(strict=True))
    with pytest.raises(Exception, match=r"(corrupt|truncated|empty|missing)\.mp4"):
        for _ in dataset:
            pass


def test_evaluation_never_drops_a_video_silently(videos):
    with pytest.raises(BadVideoError, match=r"a\.mp4: label 7 outside \[0, 3\)"):
        video_dataset(str(videos / "all.txt"), SMALL, training=False, num_classes=3)
    (videos / "bad_eval.txt").write_text("a.mp4 0\ncorrupt.mp4 1\n")
    dataset = video_dataset(str(videos / "bad_eval.txt"), SMALL, training=False, batch_size=1)
    with pytest.raises(tf.errors.OpError, match="corrupt.mp4"):
        list(dataset)


def test_tfrecord_pipeline_skips_empty_and_mislabelled_records(tmp_path):
    path = str(tmp_path / "x.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(encode_example(indexed_frames(12), 1, "good"))
        writer.write(encode_example(np.zeros((0, 8, 8, 3), np.uint8), 0, "no_frames"))
        writer.write(encode_example(indexed_frames(12), 9, "bad_label"))
    dataset, info = video_dataset(path, unit_sampling(2, 2, 2, 32, 32), training=True, num_classes=3, batch_size=1,
                                  with_info=True)
    assert sum(1 for _ in dataset) == 1
    assert dict(info.skip_log.entries) == {"no_frames": f"the video has no frames (record #1 of {path})",
                                              "bad_label": f"label 9 outside [0, 3) (record #2 of {path})"}


def test_labels_beyond_int32_are_bad_records_not_wrapped_around(videos, tmp_path):
    path = str(tmp_path / "labels.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(encode_example(indexed_frames(12), 1, "good"))
        writer.write(encode_example(indexed_frames(12), 2**32 + 1, "wraps_to_1"))  # int32 would read class 1
        writer.write(encode_example(indexed_frames(12), -5, "negative"))
        writer.write(encode_example(indexed_frames(12), 2**31, "past_int32"))
    kwargs = dict(sampling=unit_sampling(2, 2, 2, 32, 32), training=False, options=DataOptions(strict=False),
                  batch_size=1, with_info=True)
    dataset, info = video_dataset(path, num_classes=3, **kwargs)
    assert [(int(y[0]), ids[0].numpy()) for _, y, ids in dataset] == [(1, b"good")]
    assert dict(info.skip_log.entries) == {
        "wraps_to_1": f"label 4294967297 outside [0, 3) (record #1 of {path})",
        "negative": f"label -5 outside [0, 3) (record #2 of {path})",
        "past_int32": f"label 2147483648 outside [0, 3) (record #3 of {path})"}
    unbounded, info = video_dataset(path, **kwargs)  # no class count: int32 is the bound
    assert [int(y[0]) for _, y, _ in unbounded] == [1]
    reasons = dict(info.skip_log.entries)
    assert reasons["wraps_to_1"] == (f"label 4294967297 outside [0, 2147483647], the int32 range of class indices "
                                     f"(record #1 of {path})")
    assert sorted(reasons) == ["negative", "past_int32", "wraps_to_1"]
    (videos / "huge_label.txt").write_text("a.mp4 4294967297\nb.webm 1\n")  # an annotation list: the same rule
    listed, info = video_dataset(str(videos / "huge_label.txt"), **kwargs)
    assert [int(y[0]) for _, y, _ in listed] == [1]
    assert info.skip_log.entries == [("a.mp4", "label 4294967297 outside [0, 2147483647], the int32 range of "
                                                 "class indices")]


def test_folder_per_class_source(tmp_path):
    for name, label in (("walk", 0), ("jump", 1)):
        (tmp_path / name).mkdir()
        write_video(str(tmp_path / name / "v.mp4"), indexed_frames(20, 32, 32))
    dataset, info = video_dataset(str(tmp_path), unit_sampling(2, 2, 1, 32, 32), training=False, batch_size=2,
                                  with_info=True)
    assert info.class_names == ["jump", "walk"]
    _, labels, ids = next(iter(dataset))
    assert dict(zip([i.decode() for i in ids.numpy()], labels.numpy())) == {"jump/v.mp4": 0, "walk/v.mp4": 1}


def test_converter_cli_reports_skips_and_exit_code(videos, tmp_path):
    out = str(tmp_path / "records" / "train")
    result = run_tool("convert_data", f"--annotations={videos / 'all.txt'}",
                             f"--output={out}", "--num_shards=2", "--workers=2", "--short_side=32")
    assert result.returncode == 1, result.stderr
    assert "wrote 5 video(s) to 2 shard(s)" in result.stdout  # a.mp4 twice (one mislabelled), b, c, d
    assert "skipped 4 video(s)" in result.stdout and "missing.mp4: " in result.stdout
    records, info = video_dataset(out + "-*.tfrecord", unit_sampling(2, 2, 1, 32, 32), training=False, batch_size=8,
                                  options=DataOptions(strict=False), num_classes=3, with_info=True)
    assert sum(int(labels.shape[0]) for _, labels, _ in records) == 4
    assert info.skip_log.count == 1  # the mislabelled copy of a.mp4, reported at read time


def test_bad_pipeline_arguments(videos):
    with pytest.raises(ValueError, match="crop_size`=300 is larger than `short_side`=256"):
        video_dataset(str(videos / "good.txt"), VideoSampling(crop_size=300), training=True)
    with pytest.raises(ValueError, match="no annotation list, folder or TFRecord files"):
        video_dataset(str(videos / "nothing*.tfrecord"), training=True)
    # A sampling is a VideoSampling, validated where it is made: loose keywords are refused, naming it.
    with pytest.raises(TypeError, match="video_dataset: `sampling` must be a VideoSampling, got dict"):
        video_dataset(str(videos / "good.txt"), {"test_num_crops": 3}, training=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'num_crops'"):
        video_dataset(str(videos / "good.txt"), training=True, num_crops=3)
    with pytest.raises(ValueError, match="video_dataset: `batch_size` must be a positive int, got 0"):
        video_dataset(str(videos / "good.txt"), training=True, batch_size=0)
    with pytest.raises(TypeError, match="video_dataset: `options` must be a DataOptions, got dict"):
        video_dataset(str(videos / "good.txt"), training=True, options={"strict": True})
    for bad, message in ((dict(shuffle_buffer=0), "`shuffle_buffer` must be a positive int, got 0"),
                         (dict(seed=1.5), "`seed` must be an int or None"),
                         (dict(strict="yes"), "`strict` must be True, False or None"),
                         (dict(drop_remainder=1.0), "`drop_remainder` must be True, False or None"),
                         (dict(max_frame_pixels=0), "`max_frame_pixels` must be a positive int or None")):
        with pytest.raises(ValueError, match=f"DataOptions: {re.escape(message)}"):
            DataOptions(**bad)


def test_class_folders_skip_hidden_ones_and_validation_uses_the_training_classes_by_name(videos, tmp_path):
    from keras_v4d.data import read_class_folders

    for split, classes in (("train", ("a", "b", "c")), ("val", ("a", "c"))):
        for name in classes + (".ipynb_checkpoints", "__MACOSX"):
            (tmp_path / split / name).mkdir(parents=True)
            shutil.copy(videos / "a.mp4", tmp_path / split / name / "clip.mp4")
        (tmp_path / split / "a" / "._clip.mp4").write_bytes(b"AppleDouble")  # macOS metadata, not a video
    train = read_class_folders(str(tmp_path / "train"))
    assert train.class_names == ["a", "b", "c"] and train.ids == ["a/clip.mp4", "b/clip.mp4", "c/clip.mp4"]
    alone = read_class_folders(str(tmp_path / "val"))
    assert dict(zip(alone.ids, alone.labels)) == {"a/clip.mp4": 0, "c/clip.mp4": 1}  # read on its own: c is 1
    val = read_class_folders(str(tmp_path / "val"), train.class_names)
    assert dict(zip(val.ids, val.labels)) == {"a/clip.mp4": 0, "c/clip.mp4": 2} and val.class_names == train.class_names
    (tmp_path / "val" / "d").mkdir()
    with pytest.raises(ValueError, match=r"has 3 class folders; \['d'\] are not among the 3 classes"):
        read_class_folders(str(tmp_path / "val"), train.class_names)


def test_annotation_lists_take_a_byte_order_mark_and_only_ascii_integer_labels(videos):
    (videos / "bom.txt").write_text("a.mp4 1\nb.webm 0\n", encoding="utf-8-sig")  # as Windows editors save it
    listed = read_annotations(str(videos / "bom.txt"))
    assert listed.ids == ["a.mp4", "b.webm"] and listed.labels == [1, 0]
    for label in ("²", "--1", "1.5"):
        (videos / "odd.txt").write_text(f"a.mp4 {label}\n", encoding="utf-8")
        with pytest.raises(ValueError, match=f"odd.txt:1: label {re.escape(repr(label))} is neither an int"):
            read_annotations(str(videos / "odd.txt"))


def test_model_fit_takes_the_pipeline_as_it_comes(videos):
    import keras

    from keras_v4d.data import single_view

    sampling = unit_sampling(2, 2, 4, 32, 32, crops=1)
    model = keras.Sequential([keras.Input((2, 2, 32, 32, 3)), keras.layers.Reshape((4, 32, 32, 3)),
                              keras.layers.GlobalAveragePooling3D(), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train = video_dataset(str(videos / "good.txt"), sampling, training=True, batch_size=2, num_classes=3)
    assert isinstance(train, tf.data.Dataset)
    history = model.fit(train, epochs=2, verbose=0)  # 4 videos, 2 batches an epoch
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    test = video_dataset(str(videos / "good.txt"), sampling, training=False, batch_size=2)
    assert np.isfinite(model.evaluate(single_view(test), verbose=0))
