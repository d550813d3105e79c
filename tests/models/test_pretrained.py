"""Starting from trained weights (models.pretrained): other classes, no top, and the family's staged
recipe (V4D §4.3: I3D-S weights into V4D with the 4D blocks at the identity), checked against the
models the weights came from."""

import logging

import keras
import numpy as np
import pytest

import keras_v4d
from keras_v4d.models import build_resnet3d
from keras_v4d.models.pretrained import load_pretrained_weights
from keras_v4d.records.presets import _registry, register, sha256_of
from keras_v4d.records.weights_file import WeightsMismatchError

pytestmark = pytest.mark.backend_agnostic

SMALL = dict(width=0.25)
VIDEO = np.random.RandomState(0).rand(2, 3, 2, 32, 32, 3).astype("float32")  # (B, U, T, H, W, 3)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _by_name(model):
    """``{variable path: value}`` of ``model``'s weights (paths are the layers' names)."""
    return {w.path: _np(w) for w in model.weights}


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory):
    """An I3D-S R18 with 7 classes, trained weights made distinct from any initialisation."""
    model = build_resnet3d(18, None, classes=7, name="i3d", **SMALL)
    rng = np.random.RandomState(1)
    for w in model.weights:
        w.assign(_np(w) + rng.normal(0, 0.05, w.shape).astype("float32"))
    path = tmp_path_factory.mktemp("weights") / "i3d.weights.h5"
    model.save_weights(path)
    return model, str(path)


def _same_except(loaded, source, skipped):
    """Every variable of ``loaded`` equals ``source``'s of the same path, except in layers ``skipped``."""
    mine, theirs = _by_name(loaded), _by_name(source)
    compared = 0
    for path, value in mine.items():
        if path.split("/")[0] in skipped:
            continue
        np.testing.assert_array_equal(value, theirs[path], err_msg=path)
        compared += 1
    return compared


def test_other_classes_load_everything_but_a_new_classifier(i3d_file, caplog):
    source, path = i3d_file
    with caplog.at_level(logging.INFO, logger="keras_v4d"):
        model = build_resnet3d(18, None, classes=3, weights=path, name="i3d", **SMALL)
    assert model.outputs[0].shape[-1] == 3
    assert _same_except(model, source, {"predictions"}) == len(source.weights) - 2
    dense = model.get_layer("predictions")
    assert dense.kernel.shape == (128, 3) and not np.allclose(_np(dense.kernel), 0)
    assert model.weights_report.initialized == ("predictions",) and model.weights_report.unused == ()
    assert any("newly initialised" in r.message and "predictions" in r.message and r.levelno == logging.WARNING
               for r in caplog.records)


def test_no_classes_given_takes_the_files_and_equal_weights_load_exactly(i3d_file):
    source, path = i3d_file
    model = build_resnet3d(18, None, weights=path, name="i3d", **SMALL)
    assert model.outputs[0].shape[-1] == 7
    assert _same_except(model, source, set()) == len(source.weights)
    np.testing.assert_allclose(_np(model(VIDEO)), _np(source(VIDEO)), atol=1e-6)
    assert model.weights_report.initialized == () and model.weights_report.unused == ()


@pytest.mark.parametrize("pooling", [None, "avg"])
def test_no_top_loads_the_backbone_and_reports_the_files_classifier_unused(i3d_file, pooling):
    source, path = i3d_file
    model = build_resnet3d(18, None, include_top=False, pooling=pooling, weights=path, name="i3d", **SMALL)
    assert _same_except(model, source, set()) == len(source.weights) - 2
    assert model.weights_report.unused == ("dense (the file's classifier)",)
    if pooling == "avg":  # the pooled features are the classifier's input in the source model
        features = keras.Model(source.inputs, source.get_layer("pool_units").output)
        np.testing.assert_allclose(_np(model(VIDEO)), _np(features(VIDEO)), atol=1e-5)


def test_i3d_weights_into_v4d_start_as_tsn(i3d_file):
    """V4D §4.3's second stage: 3D weights into V4D with every 4D block at the identity ≡ TSN."""
    source, path = i3d_file
    v4d = build_resnet3d(18, "v4d", weights=path, name="v4d", **SMALL)
    tsn = build_resnet3d(18, None, weights=path, name="tsn", **SMALL)
    np.testing.assert_allclose(_np(v4d(VIDEO)), _np(tsn(VIDEO)), atol=1e-5)
    assert v4d.weights_report.initialized == ("res3_v4d1", "res4_v4d1")
    assert _same_except(v4d, source, {"res3_v4d1", "res4_v4d1"}) == len(source.weights)
    f4d = build_resnet3d(18, "f4d", classes=5, weights=path, name="f4d", **SMALL)
    assert f4d.weights_report.initialized == ("res3_f4d1", "res4_f4d1", "predictions")
    assert _same_except(f4d, source, {"res3_f4d1", "res4_f4d1", "predictions"}) == len(source.weights) - 2


def test_v4d_weights_into_i3d_name_the_4d_blocks_left_out(i3d_file, tmp_path):
    _, path = i3d_file
    v4d = build_resnet3d(18, "v4d", weights=path, name="v4d", **SMALL)
    for w in v4d.get_layer("res3_v4d1").weights:
        w.assign(np.full(w.shape, 0.01, "float32"))
    v4d_path = tmp_path / "v4d.weights.h5"
    v4d.save_weights(v4d_path)
    model = build_resnet3d(18, None, weights=str(v4d_path), name="i3d", **SMALL)
    assert model.weights_report.unused == ("residual4d (a 4D block)", "residual4d_1 (a 4D block)")
    assert _same_except(model, v4d, set()) == len(model.weights)


def test_a_real_mismatch_is_an_error_naming_the_first_layer(i3d_file, tmp_path):
    _, path = i3d_file
    with pytest.raises(WeightsMismatchError, match=r"layer 'res2_block0_1_conv' \(Conv3D\) has variable shapes"):
        build_resnet3d(50, "v4d", weights=path, **SMALL)
    with pytest.raises(WeightsMismatchError, match=r"layer 'stem_conv' \(Conv3D\) has variable shapes"):
        build_resnet3d(18, None, weights=path, width=0.5)
    v4d = build_resnet3d(18, "v4d", classes=7, kernel_size=(3, 1, 1, 1), **SMALL)
    v4d_path = tmp_path / "v4d_k3111.weights.h5"
    v4d.save_weights(v4d_path)
    with pytest.raises(WeightsMismatchError, match=r"layer 'res3_v4d1' \(Residual4D\)"):
        build_resnet3d(18, "v4d", weights=str(v4d_path), **SMALL)  # another 4D kernel: not a new block
    with pytest.raises(WeightsMismatchError, match="layer 'predictions'.*pass classes=N"):
        load_pretrained_weights(build_resnet3d(18, None, classes=3, **SMALL), path)


def test_a_tag_with_other_classes_or_another_builder(i3d_file, tmp_path, monkeypatch):
    source, path = i3d_file
    (tmp_path / "keras_v4d").mkdir()
    cached = tmp_path / "keras_v4d" / "i3d.weights.h5"
    cached.write_bytes(open(path, "rb").read())
    monkeypatch.setenv("KERAS_V4D_CACHE", str(tmp_path))
    register("test_i3d_r18", {"builder": "I3DSlowResNet18", "arguments": {"classes": 7, "width": 0.25},
                              "file_name": "i3d.weights.h5", "url": None, "sha256": sha256_of(cached)})
    try:
        model = build_resnet3d(18, None, classes=3, weights="test_i3d_r18", width=0.25)
        assert model.weights_report.initialized == ("predictions",)
        v4d = build_resnet3d(18, "v4d", "V4DResNet18", weights="test_i3d_r18", classes=3, width=0.25)
        assert v4d.weights_report.initialized == ("res3_v4d1", "res4_v4d1", "predictions")
        with pytest.raises(WeightsMismatchError, match="The weights 'test_i3d_r18' belong to I3DSlowResNet18"):
            keras_v4d.V4DResNet50(weights="test_i3d_r18")
    finally:
        del _registry()["test_i3d_r18"]
