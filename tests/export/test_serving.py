"""The whole-video signatures: one video's frames (raw or JPEG) in, the answer of ``predict`` /
``evaluate`` out — the test protocol and Algorithm 1 run inside the graph."""

import base64
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_v4d
from keras_v4d.data import video_dataset, write_video
from keras_v4d.data.pipeline import load_video_views
from keras_v4d.data.video_io import read_all_frames
from keras_v4d.export import export_saved_model
from keras_v4d.export.serving import whole_video_functions
from keras_v4d.inference import predict_videos, unit_combinations
from keras_v4d.inference.video_level import video_level_predict
from keras_v4d.models import build_resnet3d, with_head
from keras_v4d.records.sampling import VideoSampling
from tests.conftest import tensorflow_only
from tests.inference.test_algorithm1 import block_radii, count_block_inputs, distinct_windows, trained_like

pytestmark = tensorflow_only()
SAMPLING = VideoSampling(train_units=2, frames_per_unit=2, stride=3, crop_size=32, short_side=36, test_num_units=4,
                         test_num_crops=3)
CLASSES = ["archery", "bowling", "cycling"]


def _trained_looking(model, seed=0):
    """Random weights everywhere (the 4D blocks start as identities, which would hide them), BN
    variances kept positive."""
    rng = np.random.default_rng(seed)
    model.set_weights([np.abs(w) + 0.5 if "variance" in v.path else w + rng.normal(0, 0.2, w.shape).astype(w.dtype)
                       for v, w in zip(model.weights, model.get_weights())])
    return model


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A real 41-frame H.264 file of moving content, 40×52 (not square: the short side is resized)."""
    t = np.arange(41)[:, None, None]
    y, x = np.mgrid[0:40, 0:52]
    frames = np.full((41, 40, 52, 3), 128, np.uint8)
    frames[..., 0] = (x * 5 + t * 7) % 256
    frames[..., 1] = (y * 6 + t * 3) % 256
    path = tmp_path_factory.mktemp("serving") / "clip.mp4"
    write_video(str(path), frames)
    return path


def _reference(model, views):
    return video_level_predict(model, tf.convert_to_tensor(views)[None], SAMPLING.train_units).numpy()


@pytest.mark.parametrize("builder", ["V4DResNet18", "F4DResNet18", "TSNResNet18"])
def test_the_whole_video_function_equals_predict(builder, video):
    model = _trained_looking(getattr(keras_v4d, builder)(classes=3, input_shape=(None, 2, None, None, 3)))
    serve = whole_video_functions(model, SAMPLING, CLASSES, top_k=2)["video_frames"]
    got = serve(tf.constant(read_all_frames(str(video))))
    expected = _reference(model, load_video_views(str(video), SAMPLING))
    np.testing.assert_allclose(got["probabilities"].numpy(), expected, atol=1e-5)
    assert np.ptp(expected) > 0.05  # the weights make a difference between the classes
    (path, top, error), = predict_videos(model, [str(video)], SAMPLING, class_names=CLASSES, top_k=2)
    assert error is None and [name.encode() for name, _ in top] == got["top_k_names"].numpy()[0].tolist()
    np.testing.assert_allclose(got["top_k_probabilities"].numpy()[0], [p for _, p in top], atol=1e-5)


def test_the_graph_runs_each_block_once_per_distinct_window_and_answers_as_the_network(video, monkeypatch):
    """The graph holds Algorithm 1's memoised levels (each 4D block on the distinct windows of units
    only) and its probabilities are the whole network's on every combination of every crop, averaged."""
    sampling = VideoSampling(**{**SAMPLING.to_dict(), "train_units": 3, "test_num_units": 6})
    model = trained_like(keras_v4d.V4DResNet18(classes=3, input_shape=(None, 2, None, None, 3)))
    counts = count_block_inputs(monkeypatch, model, copies=sampling.test_num_crops)
    got = whole_video_functions(model, sampling)["video_frames"](tf.constant(read_all_frames(str(video))))
    combinations = unit_combinations(6, 3)  # 8 combinations of 3 units
    expected = distinct_windows(combinations, block_radii(model, sampling.frames_per_unit))
    assert counts == expected and expected[0] < combinations.size  # traced once, windows shared
    views = np.asarray(load_video_views(str(video), sampling))  # (V, U_infer, T, S, S, 3)
    naive = np.mean([model(views[v][combinations], training=False).numpy() for v in range(len(views))], axis=(0, 1))
    np.testing.assert_allclose(got["probabilities"].numpy()[0], naive, atol=1e-5)
    assert naive.max() < 0.99  # not saturated: a wrong feature would show


@pytest.fixture(scope="module")
def exported(video, tmp_path_factory):
    model = _trained_looking(keras_v4d.V4DResNet18(classes=3, input_shape=(None, 2, None, None, 3)), seed=1)
    folder = tmp_path_factory.mktemp("exported") / "saved_model"
    export_saved_model(model, str(folder), sampling=SAMPLING, class_names=CLASSES)
    return model, tf.saved_model.load(str(folder))


def test_the_saved_model_answers_a_video_file_as_predict_does(exported, video):
    model, loaded = exported
    got = loaded.signatures["video_frames"](frames=tf.constant(read_all_frames(str(video))))
    expected = _reference(model, load_video_views(str(video), SAMPLING))
    np.testing.assert_allclose(got["probabilities"].numpy(), expected, atol=1e-4)
    assert got["top_k_names"].numpy()[0, 0].decode() == CLASSES[int(expected.argmax())]
    assert "serving_default" in loaded.signatures  # today's signature is still there


def _rest_request_to_tensor(body):
    """What TF Serving's REST API makes of ``{"instances": [...]}`` / ``{"inputs": [...]}`` for one
    string input: each ``{"b64": …}`` becomes the decoded bytes, one per element of axis 0."""
    parsed = json.loads(body)
    rows = parsed["instances"] if "instances" in parsed else parsed["inputs"]
    if isinstance(rows, dict):
        rows = rows["frames"]
    rows = [row["frames"] if isinstance(row, dict) and "frames" in row else row for row in rows]
    return tf.constant([base64.b64decode(row["b64"]) for row in rows])


def test_a_jpeg_frames_rest_request_gets_the_answer_of_evaluate_on_the_rawframes(exported, video, tmp_path):
    model, loaded = exported
    frames = read_all_frames(str(video))
    folder = tmp_path / "clip"
    folder.mkdir()
    jpegs = [tf.io.encode_jpeg(frame, quality=90).numpy() for frame in frames]
    for i, data in enumerate(jpegs):
        (folder / f"img_{i + 1:05d}.jpg").write_bytes(data)
    (tmp_path / "rawframes.txt").write_text(f"clip {len(jpegs)} 1\n")
    views = next(iter(video_dataset(str(tmp_path / "rawframes.txt"), SAMPLING, training=False, batch_size=1)))[0][0]
    expected = _reference(model, views)
    for body in (json.dumps({"instances": [{"b64": base64.b64encode(d).decode()} for d in jpegs]}),
                 json.dumps({"inputs": {"frames": [{"b64": base64.b64encode(d).decode()} for d in jpegs]}})):
        got = loaded.signatures["video_jpeg"](frames=_rest_request_to_tensor(body))
        np.testing.assert_allclose(got["probabilities"].numpy(), expected, atol=1e-4)


def test_empty_videos_are_refused_naming_the_dimension(exported):
    _, loaded = exported
    for shape, name in (((0, 40, 52, 3), "number of frames N"), ((5, 0, 52, 3), "height H"),
                        ((5, 40, 0, 3), "width W")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=name):
            loaded.signatures["video_frames"](frames=tf.zeros(shape, tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="number of frames N"):
        loaded.signatures["video_jpeg"](frames=tf.constant([], tf.string))


def test_jpeg_frames_are_checked_from_their_headers_before_decoding():
    model = keras_v4d.TSNResNet18(classes=3, input_shape=(None, 2, None, None, 3))
    serve = whole_video_functions(model, SAMPLING, max_frame_pixels=40 * 52)["video_jpeg"]
    small = tf.io.encode_jpeg(tf.zeros((40, 52, 3), tf.uint8)).numpy()
    assert serve(tf.constant([small] * 3))["probabilities"].shape == (1, 3)  # at the limit: served
    large = tf.io.encode_jpeg(tf.zeros((41, 52, 3), tf.uint8)).numpy()
    with pytest.raises(tf.errors.InvalidArgumentError, match="more than max_frame_pixels=2080"):
        serve(tf.constant([large] * 3))
    with pytest.raises(tf.errors.InvalidArgumentError, match="the height and width of frame 0"):
        serve(tf.constant([small, tf.io.encode_jpeg(tf.zeros((20, 26, 3), tf.uint8)).numpy()]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a JPEG, PNG or GIF"):
        serve(tf.constant([b"RIFF....WEBPVP8 "]))


@pytest.mark.parametrize("input_shape", [(None, 2, 32, 32, 3), (2, 2, 32, 32, 3)])  # free shapes: `exported`
def test_a_model_of_any_input_shape_exports_and_answers_as_predict_does(input_shape, video, tmp_path):
    """No sampling given: the export takes what the model fixes (U, T, the frame size), as ``predict``."""
    model = _trained_looking(keras_v4d.V4DResNet18(weights=None, classes=3, input_shape=input_shape), seed=2)
    folder = export_saved_model(model, str(tmp_path / "saved_model"), class_names=CLASSES)
    got = tf.saved_model.load(folder).signatures["video_frames"](frames=tf.constant(read_all_frames(str(video))))
    (_, top, error), = predict_videos(model, [str(video)], class_names=CLASSES, top_k=3)
    assert error is None and [name.encode() for name, _ in top] == got["top_k_names"].numpy()[0, :3].tolist()
    np.testing.assert_allclose(got["top_k_probabilities"].numpy()[0, :3], [p for _, p in top], atol=1e-4)


def test_a_users_head_exports_with_the_whole_video_signatures(video, tmp_path):
    """A head of the user's (``models.with_head``) keeps the SavedModel's whole-video serving."""
    head = keras.Sequential([keras.layers.Reshape((-1, 128)), keras.layers.GlobalMaxPooling1D(),
                             keras.layers.Dense(3, activation="softmax")], name="my_head")
    model = with_head(build_resnet3d(18, "v4d", include_top=False, input_shape=(None, 2, None, None, 3), width=0.25),
                      head)
    export_saved_model(model, str(tmp_path / "sm"), sampling=SAMPLING, class_names=CLASSES)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    got = loaded.signatures["video_frames"](frames=tf.constant(read_all_frames(str(video))))
    np.testing.assert_allclose(got["probabilities"].numpy(), _reference(model, load_video_views(str(video), SAMPLING)),
                               atol=1e-4)
