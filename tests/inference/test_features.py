"""Features before the classifier (inference.features, ``keras-v4d features``) against the naive way: the
model up to its pooling on every combination of units and every crop, then the mean."""

import itertools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_v4d.data import VideoFiles, eval_transform, load_video_views, read_frames, segment_indices, write_video
from keras_v4d.inference import evaluate, extract_features, feature_model, video_features, video_level_predict
from keras_v4d.inference.timeline import video_timeline
from keras_v4d.models import build_resnet3d, with_head
from keras_v4d.records.sampling import VideoSampling
from tests.commands import run_tool

SAMPLING = ["--num_units=4", "--train_units=2", "--frames_per_unit=2", "--stride=2", "--crop_size=32",
            "--short_side=32", "--num_crops=3"]
VIEWS = VideoSampling(train_units=2, test_num_units=4, frames_per_unit=2, stride=2, crop_size=32, short_side=32,
                      test_crop_size=32, test_num_crops=3)  # what SAMPLING's flags say
COMBINATIONS = [list(c) for c in itertools.product([0, 1], [2, 3])]  # 4 units in 2 sections (Algorithm 1)
FPS = 12


def naive_features(pooled, views):
    """``pooled`` (a model: video → (1, C)) on every combination of every view ``(V, U, T, S, S, 3)``, averaged."""
    views = np.asarray(views)
    return np.mean([keras.ops.convert_to_numpy(pooled(view[None, c]))[0] for view in views for c in COMBINATIONS],
                   axis=0)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small V4D model as a .keras file, its layers up to ``pool_units``, and a folder of two videos."""
    root = tmp_path_factory.mktemp("features")
    model = build_resnet3d(18, "v4d", classes=2, input_shape=(None, 2, None, None, 3), width=0.25, name="v4d_small")
    model.save(root / "model.keras")
    rng = np.random.default_rng(0)
    (root / "videos" / "sub").mkdir(parents=True)
    videos = [root / "videos" / "a.mp4", root / "videos" / "sub" / "b.mp4"]
    for path in videos:
        write_video(str(path), rng.integers(0, 255, (40, 40, 48, 3), dtype=np.uint8), fps=FPS)
    pooled = keras.Model(model.inputs[0], model.get_layer("pool_units").output)
    return root / "model.keras", pooled, [str(v) for v in videos], root / "videos"


def test_the_tool_writes_one_row_per_video_of_a_folder_equal_to_the_naive_average(saved, tmp_path):
    checkpoint, pooled, videos, folder = saved
    result = run_tool("features", f"--checkpoint={checkpoint}", f"--output_dir={tmp_path}", *SAMPLING, folder)
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(tmp_path / "features.npz") as written:
        assert written["features"].dtype == np.float32 and written["features"].shape == (2, pooled.outputs[0].shape[-1])
        assert list(written["video_ids"]) == videos  # the folder's videos, recursively, in name order
        assert VideoSampling.from_dict(json.loads(str(written["sampling"]))) == VIEWS
        assert str(written["mode"]) == "combinations"
        assert np.abs(written["features"][0] - written["features"][1]).max() > 1e-3  # two videos, two rows
        for path, row in zip(videos, written["features"]):
            np.testing.assert_allclose(row, naive_features(pooled, load_video_views(path, VIEWS)), atol=1e-5)


def test_an_unreadable_video_is_named_and_skipped_with_exit_code_1(saved, tmp_path):
    checkpoint, pooled, videos, _ = saved
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    out = tmp_path / "out"
    result = run_tool("features", f"--checkpoint={checkpoint}", f"--output_dir={out}", *SAMPLING, "--num_crops=1",
                      videos[1], broken, videos[0])
    assert result.returncode == 1
    assert f"error: {broken}" in result.stderr and "1 of 3 video(s) could not be read" in result.stderr
    assert "Traceback" not in result.stderr
    with np.load(out / "features.npz") as written:
        assert list(written["video_ids"]) == [videos[1], videos[0]]
        one_crop = VideoSampling(**{**VIEWS.to_dict(), "test_num_crops": 1})
        expected = naive_features(pooled, load_video_views(videos[0], one_crop))
        np.testing.assert_allclose(written["features"][1], expected, atol=1e-5)
    missing = run_tool("features", f"--checkpoint={checkpoint}", videos[0])
    assert missing.returncode == 2 and "--output_dir is required" in missing.stderr


def test_timeline_features_are_each_windows_features_alone(saved, tmp_path):
    checkpoint, pooled, videos, _ = saved
    result = run_tool("features", f"--checkpoint={checkpoint}", f"--output_dir={tmp_path}", "--timeline",
                      "--window=2", "--hop=1", *SAMPLING, "--num_crops=1", videos[0])
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(tmp_path / "a.features.npz") as written:
        first_frames, features = written["first_frames"], written["features"]
        # 2 s → windows of 4·6 + 3 - 1 = 26 frames every 12; one more ends at the 40th frame
        np.testing.assert_array_equal(first_frames, [0, 12, 14])
        np.testing.assert_allclose(written["ends"], (first_frames + 26) / FPS, atol=1e-6)
        assert str(written["video_id"]) == videos[0] and features.dtype == np.float32
    for first, row in zip(first_frames, features):
        indices = first + segment_indices(26, 4, 2, 2, training=False).numpy().reshape(-1)
        views = eval_transform(tf.constant(read_frames(videos[0], indices)), 32, 32, 1)
        np.testing.assert_allclose(row, naive_features(pooled, tf.reshape(views, (1, 4, 2, 32, 32, 3))), atol=1e-5)


def test_a_users_head_gives_its_input_pooled_over_units_time_and_space():
    backbone = build_resnet3d(18, "v4d", include_top=False, width=0.25)
    head = keras.Sequential([keras.layers.Reshape((-1, 128)), keras.layers.GlobalMaxPooling1D(),
                             keras.layers.Dense(3, activation="softmax")], name="my_head")
    model = with_head(backbone, head)
    views = np.random.RandomState(0).rand(1, 2, 4, 2, 32, 32, 3).astype("float32")  # 1 video, 2 crops, U_infer 4

    def pooled(video):  # the head's input, the backbone's feature map (B, U, T, h, w, C), averaged
        return keras.ops.mean(backbone(video), axis=(1, 2, 3, 4))

    np.testing.assert_allclose(video_features(model, views, 2)[0], naive_features(pooled, views[0]), atol=1e-5)
    every_unit = np.mean([keras.ops.convert_to_numpy(pooled(view[None]))[0] for view in views[0]], axis=0)
    np.testing.assert_allclose(video_features(model, views, 2, mode="all_units")[0], every_unit, atol=1e-5)
    assert feature_model(model).outputs[0].shape[-1] == 128
    plain = keras.Model(model.inputs[0], model.outputs[0], name="plain")
    with pytest.raises(ValueError, match="model 'plain' is a Functional, not a keras_v4d VideoModel"):
        extract_features(plain, ["x.mp4"], VIEWS)


def test_a_users_head_saved_as_keras_runs_through_predict_the_timeline_and_evaluate(saved, tmp_path):
    """Issue 31 item 4: a head of the user's keeps every video-level path, from a ``.keras`` file too."""
    _, _, videos, _ = saved
    head = keras.Sequential([keras.layers.Reshape((-1, 128)), keras.layers.GlobalMaxPooling1D(),
                             keras.layers.Dense(2, activation="softmax")], name="my_head")
    model = with_head(build_resnet3d(18, "v4d", include_top=False, input_shape=(None, 2, None, None, 3), width=0.25),
                      head)
    model.save(tmp_path / "headed.keras")
    one_crop = VideoSampling(**{**VIEWS.to_dict(), "test_num_crops": 1})
    expected = keras.ops.convert_to_numpy(video_level_predict(model, load_video_views(videos[0], one_crop)[None], 2))
    result = run_tool("predict", f"--checkpoint={tmp_path / 'headed.keras'}", "--json", *SAMPLING, "--num_crops=1",
                      "--class_names=" + str(_names(tmp_path)), videos[0])
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    np.testing.assert_allclose(sorted(t["probability"] for t in line["top"]), np.sort(expected[0]), atol=1e-5)
    timeline = video_timeline(model, videos[0], one_crop, window=2.0, hop=1.0)
    assert timeline.probabilities.shape == (3, 2)
    np.testing.assert_allclose(timeline.probabilities.sum(axis=1), 1.0, atol=1e-5)
    metrics = evaluate(model, VideoFiles(videos, [0, 1], ["a", "b"]), one_crop, batch_size=2, progress=False)
    assert metrics["videos_evaluated"] == 2 and metrics["videos_unreadable"] == 0


def _names(folder):
    path = folder / "names.txt"
    path.write_text("left\nright\n")
    return path
