"""One resolution of a checkpoint or a weights tag (``keras_v4d.weights.load_model``) and its CLI
wrapper ``load_inference_model``: the model, the class names and the sampling saved with it."""

import os
import types

import numpy as np
import pytest

import keras_v4d
from keras_v4d.cli.common import CommandError, load_inference_model
from keras_v4d.models import build_resnet3d
from keras_v4d.records.class_names import kinetics400_class_names
from keras_v4d.records.presets import _registry
from keras_v4d.records.run_files import write_settings
from keras_v4d.records.sampling import VideoSampling
from keras_v4d.weights import find_class_names, load_model, weights_tag
from tests.weights.tags import register_cached_tag

SAMPLING = VideoSampling(train_units=2, frames_per_unit=2, stride=4, crop_size=32, short_side=32, test_num_units=4)


def _export_flags(checkpoint, **overrides):
    """The flags ``keras-v4d export`` defines that ``load_inference_model(..., export=True)`` reads."""
    flags = dict(checkpoint=checkpoint, model=None, class_names=None, num_units=None, frames_per_unit=None)
    return types.SimpleNamespace(**{**flags, **overrides})


@pytest.fixture
def small_tag(tmp_path, monkeypatch):
    """A registered tag ``test_loading`` of a 3-way TSN-R18 with its sampling and class names."""
    model = keras_v4d.TSNResNet18(classes=3)
    register_cached_tag("test_loading", model, tmp_path, monkeypatch, "TSNResNet18", input=SAMPLING.to_dict(),
                        class_names=["a", "b", "c"])
    yield model
    del _registry()["test_loading"]


def test_a_run_folder_gives_its_settings_names_and_an_older_runs_class_names_txt_is_still_read(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    build_resnet3d(18, "v4d", classes=2, input_shape=(None, 2, None, None, 3), width=0.25).save(run / "last.keras")
    assert load_model(run / "last.keras").class_names is None and load_model(run / "last.keras").saved_sampling == {}
    (run / "class_names.txt").write_text("left\nright\n")  # what an earlier keras_v4d wrote
    older = load_model(run / "last.keras")
    assert older.class_names == ["left", "right"] and older.tag is None
    write_settings(str(run), SAMPLING, ["up", "down"])  # settings.json, where a run's names are stored
    loaded = load_model(run / "last.keras")
    assert loaded.class_names == ["up", "down"] == find_class_names(str(run / "last.keras"))
    assert VideoSampling.from_dict(loaded.saved_sampling) == SAMPLING
    assert load_model(run / "last.keras", class_names=["p", "q"]).class_names == ["p", "q"]
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nope.keras"):
        load_model(run / "nope.keras")


def test_a_tag_resolves_to_its_architecture_weights_sampling_and_names(small_tag, tmp_path, monkeypatch):
    loaded = load_model("test_loading")
    assert loaded.tag == "test_loading" and loaded.class_names == ["a", "b", "c"]
    assert loaded.saved_sampling == SAMPLING.to_dict()
    for a, b in zip(loaded.model.weights, small_tag.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="`builder` is for .weights.h5 checkpoints; the weights tag 'test_loading'"):
        load_model("test_loading", builder="TSNResNet18")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "test_loading").write_text("")  # a file of that name is a checkpoint, not the tag
    assert weights_tag("test_loading") is None and weights_tag("unregistered") is None


def test_export_loads_a_tag_reads_num_units_as_u_train_and_checks_no_mode(small_tag):
    model, names, sampling = load_inference_model(_export_flags("test_loading", num_units=3), export=True)
    assert names == ["a", "b", "c"] and model.outputs[0].shape[-1] == 3
    assert (sampling.train_units, sampling.frames_per_unit, sampling.stride) == (3, 2, 4)
    with pytest.raises(CommandError, match="--model is for .weights.h5 checkpoints; the weights tag"):
        load_inference_model(_export_flags("test_loading", model="TSNResNet18"), export=True)


def test_export_takes_a_model_without_a_head_and_names_no_classes_it_was_not_given(tmp_path, capsys):
    features = tmp_path / "features.keras"
    build_resnet3d(18, "v4d", include_top=False, input_shape=(None, 2, None, None, 3), width=0.25).save(features)
    model, names, sampling = load_inference_model(_export_flags(str(features), num_units=3), export=True)
    assert names is None and len(model.outputs[0].shape) == 6 and sampling.train_units == 3
    k400 = tmp_path / "k400.keras"
    build_resnet3d(18, "v4d", classes=400, input_shape=(None, 2, None, None, 3), width=0.25).save(k400)
    assert load_inference_model(_export_flags(str(k400)), export=True)[1] is None
    assert capsys.readouterr().err == ""
    (tmp_path / "two.txt").write_text("a\nb\n")
    with pytest.raises(CommandError, match="two.txt lists 2 classes but the model .*k400.keras has 400 outputs"):
        load_inference_model(_export_flags(str(k400), class_names=str(tmp_path / "two.txt")), export=True)
    names = load_inference_model(types.SimpleNamespace(**vars(_export_flags(str(k400))), train_units=None, stride=None,
                                                       crop_size=None, short_side=None, num_crops=None,
                                                       mode="combinations"))[1]
    assert names == kinetics400_class_names()  # predict and evaluate name a 400-way model's classes


def test_the_class_names_are_found_where_the_checkpoint_is_not_where_the_tool_runs(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    build_resnet3d(18, "v4d", classes=2, input_shape=(None, 2, None, None, 3), width=0.25).save(run / "last.keras")
    write_settings(str(run), SAMPLING, ["up", "down"])
    monkeypatch.chdir(tmp_path)
    assert load_model(os.path.join("run", "last.keras")).class_names == ["up", "down"]
