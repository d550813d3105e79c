"""Rawframe datasets (TSN / MMAction2 / official V4D lists of JPEG frame folders) on folders the tests
extract from real encoded videos, compared with the video-file path on the same videos."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_v4d.data import (
    BadVideoError,
    DataOptions,
    RawFrames,
    read_all_frames,
    read_rawframe_annotations,
    resolve_source,
    segment_indices,
    video_dataset,
    write_video,
)
from keras_v4d.data.convert import convert
from keras_v4d.data.sources import parse_frame_template
from keras_v4d.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from tests.commands import run_tool
from tests.data import unit_sampling

LEVEL = 8  # frame i of the index-coded videos is uniform grey LEVEL·i: a decoded frame tells its index
SAMPLING = unit_sampling(3, 2, 3, 32, 32)
JPEG_QUALITY = 95


def index_coded(num_frames, height=32, width=40):
    return np.repeat(np.arange(num_frames, dtype=np.uint8)[:, None, None, None] * LEVEL, height * width * 3
                     ).reshape(num_frames, height, width, 3)


def textured(num_frames, height=32, width=40):
    """Smooth colour waves, red moving 2 pixels per frame, blue brightening: a channel swap, a flip or
    a wrong frame shows as errors of tens of grey levels."""
    y, x = np.mgrid[0:height, 0:width]
    frames = [np.stack([128 + 90 * np.sin(2 * np.pi * (x + 2 * t) / width), 128 + 90 * np.cos(2 * np.pi * y / height),
                        np.full(x.shape, 40.0 + 8 * t)], axis=-1) for t in range(num_frames)]
    return np.round(np.stack(frames)).astype(np.uint8)


def frame_index_of(normalised):
    rgb = (normalised * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)) * 255
    return np.round(rgb.mean(axis=(-3, -2, -1)) / LEVEL).astype(int)


def grey_levels(normalised):
    return (normalised * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)) * 255


def extract_rawframes(video_path, folder, template="img_{:05d}.jpg", start=1):
    """Decodes the video (PyAV) and writes every frame as a JPEG file, the way rawframe datasets are made."""
    frames = read_all_frames(str(video_path))
    os.makedirs(folder, exist_ok=True)
    for k, frame in enumerate(frames):
        with open(os.path.join(folder, template.format(k + start)), "wb") as handle:
            handle.write(tf.io.encode_jpeg(frame, quality=JPEG_QUALITY).numpy())
    return len(frames)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rawframes")
    videos = {"walk": index_coded(20), "jump": index_coded(26), "wave": textured(18)}
    video_lines, frame_lines = [], []
    for label, (name, frames) in enumerate(videos.items()):
        write_video(str(root / f"{name}.mp4"), frames, quality=0)
        count = extract_rawframes(root / f"{name}.mp4", root / "frames" / name)
        assert count == len(frames)
        video_lines.append(f"{name}.mp4 {label}")
        frame_lines.append(f"frames/{name} {count} {label}")
    (root / "videos.txt").write_text("\n".join(video_lines) + "\n")
    (root / "rawframes.txt").write_text("\n".join(frame_lines) + "\n")

    # Bad folders, each made from a copy of "walk" (20 frames).
    def copy(name):
        extract_rawframes(root / "walk.mp4", root / "frames" / name)
        return root / "frames" / name

    holes = copy("holes")
    for k in range(2, 20):  # only the first and the last frame file are left: any unit needs a missing one
        os.remove(holes / f"img_{k:05d}.jpg")
    for path in sorted(copy("cut_jpegs").iterdir()):  # every JPEG cut in half (a partial copy)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    copy("overclaimed")
    copy("mislabelled")
    bad_lines = ["frames/gone 20 0", "frames/holes 20 1", "frames/cut_jpegs 20 0", "frames/overclaimed 40 1",
                 "frames/mislabelled 20 7"]
    (root / "mixed.txt").write_text("# frame_dir total_frames label\n" + "\n".join(frame_lines[:2] + bad_lines) + "\n")
    return root


BAD_REASONS = {
    "frames/gone": "frame folder {root}/frames/gone not found",
    "frames/holes": "frame file {root}/frames/holes/img_00002.jpg missing",
    "frames/cut_jpegs": "frame file {root}/frames/cut_jpegs/img_00001.jpg is not a decodable JPEG",
    "frames/overclaimed": "total_frames is 40 but {root}/frames/overclaimed has only 20 frame(s)",
    "frames/mislabelled": "label 7 outside [0, 3)",
}


def test_rawframe_lists_are_recognised(data):
    source = resolve_source(str(data / "rawframes.txt"))
    assert isinstance(source, RawFrames)
    assert source.ids == ["frames/walk", "frames/jump", "frames/wave"] and source.num_frames == [20, 26, 18]
    assert source.frame_names(0)[:2] == ["img_00001.jpg", "img_00002.jpg"]
    assert not isinstance(resolve_source(str(data / "videos.txt")), RawFrames)
    with pytest.raises(ValueError, match=r"videos.txt:1: expected 'frame_dir total_frames label'"):
        resolve_source(str(data / "videos.txt"), source_format="rawframes")
    assert parse_frame_template("frame_%06d.png") == ("frame_", 6, "0", ".png")
    with pytest.raises(ValueError, match="expected 'frame_dir total_frames label'"):
        (data / "malformed.txt").write_text("frames/walk 20 0\nframes/jump x 1\n")
        read_rawframe_annotations(str(data / "malformed.txt"))


def test_evaluation_gives_the_video_files_frames(data):
    kwargs = dict(sampling=SAMPLING, training=False, batch_size=1)  # 3 crops
    from_videos = {ids.numpy()[0].decode(): v.numpy()
                   for v, _, ids in video_dataset(str(data / "videos.txt"), **kwargs)}
    frames, frames_info = video_dataset(str(data / "rawframes.txt"), **kwargs, with_info=True)
    from_frames = {ids.numpy()[0].decode(): v.numpy() for v, _, ids in frames}
    assert frames_info.num_videos == 3 and frames_info.skip_log.counts() == {"skipped": 0, "repaired": 0}
    assert sorted(from_frames) == ["frames/jump", "frames/walk", "frames/wave"]
    for name in ("walk", "jump", "wave"):
        a, b = grey_levels(from_videos[f"{name}.mp4"]), grey_levels(from_frames[f"frames/{name}"])
        assert a.shape == b.shape == (1, 3, 3, 2, 32, 32, 3)
        # The only difference is the JPEG step (quality 95, 4:2:0 chroma) of the extracted frames:
        # measured 0 on the uniform grey frames, ≤ 15 grey levels (mean 3.7) on the colour waves;
        # one frame off would add 8 levels of blue everywhere, a flip or channel swap tens.
        assert np.abs(a - b).max() <= 20 and np.abs(a - b).mean() <= 4.5, name
    for name, count in (("walk", 20), ("jump", 26)):
        expected = segment_indices(count, 3, 2, 3, training=False).numpy()
        np.testing.assert_array_equal(frame_index_of(from_frames[f"frames/{name}"][0, 0]), expected)


def test_training_with_a_seed_gives_the_same_units_as_the_video_files(data):
    (data / "index_videos.txt").write_text("walk.mp4 0\njump.mp4 1\n")
    (data / "index_frames.txt").write_text("frames/walk 20 0\nframes/jump 26 1\n")
    kwargs = dict(sampling=SAMPLING, training=True, batch_size=1, options=DataOptions(seed=11))

    def units(listing):
        return {int(labels[0]): frame_index_of(v.numpy()[0])
                for v, labels in video_dataset(str(data / listing), **kwargs)}

    from_videos, from_frames = units("index_videos.txt"), units("index_frames.txt")
    assert sorted(from_frames) == [0, 1]
    for label, count in ((0, 20), (1, 26)):
        np.testing.assert_array_equal(from_frames[label], from_videos[label])
        starts = from_frames[label][:, 0]
        sections = np.arange(4) * count // 3
        assert ((starts >= sections[:-1]) & (starts < sections[1:])).all()  # each unit in its section
        np.testing.assert_array_equal(np.diff(from_frames[label], axis=1), 3)  # stride τ = 3


def test_bad_folders_are_skipped_and_logged_by_name(data, caplog):
    with caplog.at_level("WARNING", logger="keras_v4d.data"):
        dataset, info = video_dataset(str(data / "mixed.txt"), SAMPLING, training=True, num_classes=3, batch_size=1,
                                      with_info=True)
        labels = sorted(int(labels[0]) for _, labels in dataset)
    assert labels == [0, 1] and info.num_videos == 6  # 7 lines, the mislabelled one rejected up front
    reasons = dict(info.skip_log.entries)
    assert sorted(reasons) == sorted(BAD_REASONS)
    for name, reason in BAD_REASONS.items():
        assert reasons[name].startswith(reason.format(root=data)), (name, reasons[name])
        assert name in caplog.text


def test_evaluation_yields_every_readable_folder_and_lists_the_others(data):
    dataset, info = video_dataset(str(data / "mixed.txt"), SAMPLING, training=False, num_classes=3, batch_size=2,
                                  options=DataOptions(strict=False), with_info=True)
    ids = sorted(i.decode() for _, _, batch in dataset for i in batch.numpy())
    assert ids == ["frames/jump", "frames/walk"]
    assert sorted(video for video, _ in info.skip_log.entries) == sorted(BAD_REASONS)


def test_strict_raises_naming_the_folder(data):
    (data / "one_bad.txt").write_text("frames/walk 20 0\nframes/holes 20 1\n")
    dataset = video_dataset(str(data / "one_bad.txt"), SAMPLING, training=True, batch_size=1,
                            options=DataOptions(strict=True))
    with pytest.raises(tf.errors.OpError, match="frames/holes: frame file .*img_00002.jpg missing"):
        list(dataset)
    with pytest.raises(BadVideoError, match="frames/mislabelled: label 7"):
        video_dataset(str(data / "mixed.txt"), SAMPLING, training=False, num_classes=3)


def test_custom_template_and_start_index(tmp_path):
    write_video(str(tmp_path / "v.mp4"), index_coded(12), quality=0)
    extract_rawframes(tmp_path / "v.mp4", tmp_path / "v", template="frame_{:04d}.jpg", start=0)
    (tmp_path / "list.txt").write_text("v 12 0\n")
    source = resolve_source(str(tmp_path / "list.txt"), frame_template="frame_%04d.jpg", frame_start=0)
    dataset = video_dataset(source, SAMPLING, training=False, batch_size=1)
    views, _, _ = next(iter(dataset))
    np.testing.assert_array_equal(frame_index_of(views.numpy()[0, 0]), segment_indices(12, 3, 2, 3, False).numpy())


def test_converter_accepts_rawframe_lists(data, tmp_path):
    listing = read_rawframe_annotations(str(data / "mixed.txt"))
    shards, written, skipped = convert(listing, str(tmp_path / "rec"), num_shards=2, workers=1, progress_bar=False)
    # the converter has no class count: the mislabelled folder is written, rejected at read time
    assert sorted(written) == ["frames/jump", "frames/mislabelled", "frames/walk"]
    reasons = dict(skipped)
    assert sorted(reasons) == ["frames/cut_jpegs", "frames/gone", "frames/holes", "frames/overclaimed"]
    for name in reasons:
        assert reasons[name].startswith(BAD_REASONS[name].format(root=data)), reasons[name]
    kwargs = dict(sampling=SAMPLING, training=False, batch_size=1, options=DataOptions(strict=False), num_classes=3)
    records, records_info = video_dataset(str(tmp_path), **kwargs, with_info=True)
    from_records = {ids.numpy()[0].decode(): v.numpy() for v, _, ids in records}
    assert records_info.num_videos == 3 and [v for v, _ in records_info.skip_log.entries] == ["frames/mislabelled"]
    (data / "good_frames.txt").write_text("frames/walk 20 0\nframes/jump 26 1\n")
    from_frames = {ids.numpy()[0].decode(): v.numpy() for v, _, ids in video_dataset(str(data / "good_frames.txt"),
                                                                                     **kwargs)}
    assert sorted(from_records) == sorted(from_frames)
    for name in from_frames:  # the converter stores the folders' JPEG files as they are: no second loss
        np.testing.assert_array_equal(from_records[name], from_frames[name])


def test_converter_cli_on_a_rawframe_list(data, tmp_path):
    out = str(tmp_path / "records" / "train")
    result = run_tool("convert_data", f"--annotations={data / 'mixed.txt'}",
                             f"--output={out}", "--num_shards=1", "--workers=1", "--short_side=32")
    assert result.returncode == 1, result.stderr
    assert "wrote 3 video(s) to 1 shard(s)" in result.stdout and "skipped 4 video(s)" in result.stdout
    assert "frames/overclaimed: total_frames is 40" in result.stdout
