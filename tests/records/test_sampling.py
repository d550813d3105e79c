"""The sampling protocol (keras_v4d.records.sampling): VideoSampling's rules, test-time sampling resolved from
explicit values, saved settings and the model, and the training tool's settings as the defaults of
evaluate and predict; preprocess_input on every backend."""

import json

import keras
import numpy as np
import pytest

import keras_v4d
from keras_v4d.inference.evaluation import protocol_settings
from keras_v4d.records.run_files import read_settings, write_settings
from keras_v4d.records.sampling import DEFAULT_SAMPLING, VideoSampling, resolve_sampling
from tests.commands import run_tool

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


@pytest.mark.backend_agnostic
def test_preprocess_input_equals_the_pipeline_normalisation_and_the_formula():
    import tensorflow as tf

    from keras_v4d.data import normalize_imagenet

    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8, 3), dtype=np.uint8)
    ours = keras.ops.convert_to_numpy(keras_v4d.preprocess_input(frames))  # the active backend's tensor
    pipeline = next(iter(tf.data.Dataset.from_tensors(frames).map(normalize_imagenet))).numpy()
    formula = (frames / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    assert ours.dtype == np.float32 and pipeline.dtype == np.float32
    np.testing.assert_allclose(ours, formula, atol=1e-5)
    np.testing.assert_allclose(ours, pipeline, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras_v4d.preprocess_input(frames.astype("float32"))),
                               ours, atol=1e-6)
    with pytest.raises(ValueError, match="3 channels"):
        keras_v4d.preprocess_input(np.zeros((2, 4, 4, 1)))


def _model(**kwargs):
    return keras_v4d.TSNResNet18(classes=3, **kwargs)


def test_video_sampling_defaults_are_the_papers_and_bad_values_name_the_field():
    # V4D §4.2 (Mini-Kinetics): U=4 units of T=4 frames at τ=8, 224² crops of short side 256; test:
    # U_infer=10 centred units, 3 crops of the full 256 short side.
    assert DEFAULT_SAMPLING == VideoSampling(4, 4, 8, 224, 256, 10, None, 3)
    assert protocol_settings(DEFAULT_SAMPLING) == dict(train_units=4, num_units=10, frames_per_unit=4, stride=8,
                                                       crop_size=256, short_side=256, num_crops=3)
    training = DEFAULT_SAMPLING
    assert (training.train_units, training.frames_per_unit, training.stride, training.crop_size,
            training.short_side) == (4, 4, 8, 224, 256)
    assert DEFAULT_SAMPLING.area_range == (0.25, 1.0)
    assert VideoSampling.from_dict(DEFAULT_SAMPLING.to_dict()) == DEFAULT_SAMPLING  # a round trip
    with pytest.raises(ValueError, match="`stride` must be a positive int, got 0"):
        VideoSampling(stride=0)
    with pytest.raises(ValueError, match="`test_num_crops` must be 1 or 3"):
        VideoSampling(test_num_crops=2)
    with pytest.raises(ValueError, match="`crop_size`=300 is larger than `short_side`=256"):
        VideoSampling(crop_size=300)
    with pytest.raises(ValueError, match="`test_num_units`=3 is below `train_units`=4"):
        VideoSampling(test_num_units=3)
    with pytest.raises(ValueError, match=r"run/settings.json: unknown sampling settings \['strides'\]"):
        VideoSampling.from_dict({"strides": 4}, "run/settings.json")


def test_area_range_is_checked_and_travels_through_json():
    assert VideoSampling(area_range=(0.5, 0.5)).area_range == (0.5, 0.5)
    for bad in ((0.0, 1.0), (0.6, 0.5), (0.5, 1.2), (0.5,), "0.5", (True, 1.0)):
        with pytest.raises(ValueError, match="`area_range` must be \\(lo, hi\\) with 0 < lo <= hi <= 1"):
            VideoSampling(area_range=bad)
    sampling = VideoSampling(area_range=(0.6, 1.0))
    restored = VideoSampling.from_dict(json.loads(json.dumps(sampling.to_dict())))  # JSON stores a list
    assert restored == sampling and restored.area_range == (0.6, 1.0)
    with pytest.raises(ValueError, match="settings.json: VideoSampling: `area_range`"):
        VideoSampling.from_dict({"area_range": [0.9, 0.1]}, "settings.json")


def test_resolve_sampling_precedence_and_conflicts(tmp_path):
    model = _model()
    sampling = resolve_sampling(model)  # nothing saved: the paper's test protocol
    assert sampling.train_units == DEFAULT_SAMPLING.train_units
    assert protocol_settings(sampling) == dict(train_units=4, num_units=10, frames_per_unit=4, stride=8,
                                               crop_size=256, short_side=256, num_crops=3)
    write_settings(tmp_path, VideoSampling(train_units=2, frames_per_unit=2, stride=4, crop_size=32, short_side=40),
                   ["a", "b", "c"])
    saved, class_names = read_settings(tmp_path / "last.keras")
    assert class_names == ["a", "b", "c"]
    sampling = resolve_sampling(model, saved)
    assert sampling.train_units == 2 and sampling.stride == 4 and sampling.frames_per_unit == 2
    assert sampling.short_side == 40 and sampling.test_crop == 40  # fully convolutional: crop = short side
    assert sampling.crop_size == 32  # the training crop travels along
    sampling = resolve_sampling(model, saved, stride=8, train_units=3)  # explicit values win
    assert sampling.train_units == 3 and sampling.stride == 8
    fixed = _model(input_shape=(None, 4, None, None, 3))
    with pytest.raises(ValueError, match="saved settings' frames_per_unit=2.*takes T=4"):
        resolve_sampling(fixed, saved)
    with pytest.raises(ValueError, match="frames_per_unit=8.*takes T=4"):
        resolve_sampling(fixed, frames_per_unit=8)
    with pytest.raises(ValueError, match="num_units 3 is below train_units 4"):
        resolve_sampling(model, num_units=3)
    (tmp_path / "settings.json").write_text(json.dumps({"strides": 4}))
    with pytest.raises(ValueError, match="settings.json: unknown sampling settings"):
        read_settings(tmp_path / "last.keras")


def test_resolve_sampling_follows_the_frame_size_a_model_fixes():
    fixed = _model(input_shape=(None, 2, 32, 32, 3))
    sampling = resolve_sampling(fixed)  # crops of the model's size, the whole short side in the test crop
    assert (sampling.crop_size, sampling.test_crop, sampling.short_side, sampling.frames_per_unit) == (32, 32, 32, 2)
    sampling = resolve_sampling(fixed, {"short_side": 40, "crop_size": 32}, num_crops=1)
    assert (sampling.crop_size, sampling.test_crop, sampling.short_side, sampling.test_num_crops) == (32, 32, 40, 1)
    with pytest.raises(ValueError, match="crop_size=64, but the model .* takes 32×32 frames"):
        resolve_sampling(fixed, crop_size=64)
    with pytest.raises(ValueError, match="saved settings' crop_size=28, but the model .* takes 32×32 frames"):
        resolve_sampling(fixed, {"crop_size": 28, "short_side": 40})
    with pytest.raises(ValueError, match="short_side=24 is below the 32×32 frames"):
        resolve_sampling(fixed, short_side=24)
    with pytest.raises(ValueError, match=r"takes 32×48 frames \(H×W; None is free\), but videos are sampled as square"):
        resolve_sampling(_model(input_shape=(None, 2, 32, 48, 3)))
    with pytest.raises(ValueError, match="takes None×32 frames"):
        resolve_sampling(_model(input_shape=(None, 2, None, 32, 3)))


def test_trained_settings_are_the_defaults_of_evaluate_and_predict(tmp_path):
    from keras_v4d.data import write_video

    rng = np.random.default_rng(0)
    lines = []
    for i in range(4):
        write_video(str(tmp_path / f"v{i}.mp4"), rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8))
        lines.append(f"v{i}.mp4 {i % 2}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    trained = run_tool("train", "--model=TSNResNet18", f"--train={tmp_path / 'list.txt'}", "--num_classes=2",
                   f"--output={run}", "--epochs=1", "--batch_size=2", "--num_units=4", "--frames_per_unit=2",
                   "--stride=4", "--crop_size=32", "--short_side=32")
    assert trained.returncode == 0, trained.stderr[-3000:]
    saved = json.loads((run / "settings.json").read_text())
    assert saved["stride"] == 4 and saved["train_units"] == 4 and saved["frames_per_unit"] == 2

    evaluated = run_tool("evaluate", f"--checkpoint={run / 'last.keras'}", f"--data={tmp_path / 'list.txt'}",
                     f"--output={tmp_path / 'eval'}", "--noprogress", "--num_crops=1")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert (metrics["stride"], metrics["train_units"], metrics["frames_per_unit"]) == (4, 4, 2)
    assert (metrics["crop_size"], metrics["short_side"], metrics["num_units"]) == (32, 32, 10)

    predicted = run_tool("predict", f"--checkpoint={run / 'last.keras'}", "--num_crops=1", tmp_path / "v0.mp4")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert "train_units=4" in predicted.stderr and "stride=4" in predicted.stderr
    overridden = run_tool("predict", f"--checkpoint={run / 'last.keras'}", "--num_crops=1", "--stride=2",
                      tmp_path / "v0.mp4")
    assert overridden.returncode == 0 and "stride=2" in overridden.stderr
