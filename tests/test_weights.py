"""Weight registry, loading checks, ImageNet inflation and the official-checkpoint converter."""

import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_v4d
from keras_v4d.models import build_resnet3d
from keras_v4d.weights import (
    WeightsMismatchError, fetch_weights, load_model_weights, register, weights_info)
from keras_v4d.weights.inflate import inflate_2d
from keras_v4d.weights.registry import _registry, sha256_of

torch = pytest.importorskip("torch")
from torch_reference import ResNet, official_state_dict  # noqa: E402


def _small_v4d(classes=3):
    return build_resnet3d(18, "v4d", classes=classes, width=0.25, name="v4d_small")


@pytest.fixture
def weights_file(tmp_path):
    model = _small_v4d()
    path = tmp_path / "small.weights.h5"
    model.save_weights(path)
    return model, path


@pytest.fixture
def registry_entry(weights_file):
    _, path = weights_file
    entry = {"builder": "V4DResNet18", "arguments": {"classes": 3}, "file_name": "small.weights.h5",
             "url": path.as_uri(), "sha256": sha256_of(path)}
    yield entry
    for tag in [t for t in _registry() if t.startswith("test_")]:
        del _registry()[tag]


def test_registry_lists_the_official_releases_with_their_metadata():
    info = weights_info("v4d_resnet50_kinetics400")
    assert info["builder"] == "V4DResNet50" and info["arguments"]["classes"] == 400
    assert info["reported"]["top1"] == 77.4 and info["input"]["frames_per_unit"] == 8
    with pytest.raises(ValueError, match="not hosted as a converted file.*convert_official"):
        fetch_weights("v4d_resnet50_kinetics400", cache_dir="/nonexistent-cache")


def test_tag_resolves_offline_from_a_pre_seeded_cache(weights_file, registry_entry, tmp_path, monkeypatch):
    model, path = weights_file
    register("test_cached", {**registry_entry, "url": "https://unreachable.invalid/small.weights.h5"})
    (tmp_path / "cache" / "keras_v4d").mkdir(parents=True)
    shutil.copy(path, tmp_path / "cache" / "keras_v4d" / "small.weights.h5")
    monkeypatch.setenv("KERAS_V4D_CACHE", str(tmp_path / "cache"))
    loaded = build_resnet3d(18, "v4d", classes=3, width=0.25, weights="test_cached")
    for a, b in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_tag_downloads_from_a_file_url_and_checks_its_sha256(weights_file, registry_entry, tmp_path):
    register("test_file_url", registry_entry)
    path = fetch_weights("test_file_url", cache_dir=str(tmp_path / "fresh"))
    assert path.startswith(str(tmp_path / "fresh")) and sha256_of(path) == registry_entry["sha256"]
    register("test_bad_hash", {**registry_entry, "sha256": "0" * 64, "file_name": "other.weights.h5"})
    with pytest.raises(ValueError, match="test_bad_hash.*sha256"):
        fetch_weights("test_bad_hash", cache_dir=str(tmp_path / "fresh2"))


def test_unknown_tag_and_unreadable_file_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="registered tag.*v4d_resnet50_kinetics400"):
        keras_v4d.V4DResNet18(weights="kinetics9000")
    garbage = tmp_path / "broken.weights.h5"
    garbage.write_bytes(b"not an hdf5 file")
    with pytest.raises(WeightsMismatchError, match="broken.weights.h5: not a readable"):
        load_model_weights(_small_v4d(), str(garbage))


def test_weights_of_another_architecture_name_the_first_layer_that_differs(tmp_path):
    path = tmp_path / "r18.weights.h5"
    keras_v4d.V4DResNet18(classes=3).save_weights(path)
    with pytest.raises(WeightsMismatchError, match=r"layer 'res2_block0_1_conv' \(Conv3D\) has variable shapes"):
        load_model_weights(keras_v4d.V4DResNet50(classes=3), str(path))
    with pytest.raises(WeightsMismatchError, match="layer 'predictions'"):
        load_model_weights(keras_v4d.V4DResNet18(classes=5), str(path))
    with pytest.raises(WeightsMismatchError, match="2 layer\\(s\\) that model 'tsn_resnet18' lacks"):
        load_model_weights(keras_v4d.TSNResNet18(classes=3), str(path))


def _centre_frame_features(model3d, frame, frames):
    video = np.repeat(frame[None, None, None], frames, axis=2)  # (1, U=1, T, H, W, 3)
    features = np.asarray(model3d(video))  # (1, 1, T, h, w, C)
    return features[0, 0, frames // 2].mean(axis=(0, 1))


def test_inflated_keras_applications_resnet50_matches_the_2d_network_on_a_static_video(tmp_path):
    source = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    rng = np.random.default_rng(0)
    for layer in source.layers:  # non-trivial BN statistics and conv biases
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if i in (0, 3) else rng.normal(0, 0.1, w.shape)
                               for i, w in enumerate(layer.get_weights())])
        elif isinstance(layer, keras.layers.Conv2D):
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
    source.save_weights(tmp_path / "resnet50.weights.h5")  # "ImageNet" weights from a local file
    model2d = keras.applications.ResNet50(weights=str(tmp_path / "resnet50.weights.h5"), include_top=False,
                                          input_shape=(64, 64, 3))
    model3d = build_resnet3d(50, None, include_top=False, stride_in_1x1=True, input_shape=(1, 19, 64, 64, 3))
    inflate_2d(model3d, model2d)
    frame = rng.uniform(-1, 1, (64, 64, 3)).astype("float32")
    expected = np.asarray(model2d(frame[None]))[0].mean(axis=(0, 1))
    # 19 frames: the centre frame lies outside the 9-frame reach of the zero temporal padding.
    np.testing.assert_allclose(_centre_frame_features(model3d, frame, 19), expected, atol=1e-4, rtol=1e-4)


def test_inflated_torchvision_resnet18_matches_the_2d_network_on_a_static_video():
    torch.manual_seed(0)
    net2d = ResNet(18, dims=2).eval()
    model3d = keras_v4d.I3DSlowResNet18(include_top=False, input_shape=(1, 17, 64, 64, 3))
    inflate_2d(model3d, net2d.state_dict())
    frame = np.random.default_rng(1).uniform(-1, 1, (64, 64, 3)).astype("float32")
    with torch.no_grad():
        expected = net2d.features(torch.from_numpy(frame).permute(2, 0, 1)[None]).mean(dim=(2, 3))[0].numpy()
    np.testing.assert_allclose(_centre_frame_features(model3d, frame, 17), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("form", ["fast", "loop"])
def test_converted_official_checkpoint_matches_pytorch(form, tmp_path):
    torch.manual_seed(0)
    net = ResNet(18, dims=3, classes=5, blocks4d={(2, 1), (3, 1)}, form=form).eval()
    checkpoint = tmp_path / "v4d.pth.tar"
    torch.save(official_state_dict(net), checkpoint)
    out = tmp_path / "v4d.weights.h5"
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "keras_v4d.cli.convert_weights", str(checkpoint), str(out),
                             "--arch=v4d_resnet18"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    model = keras_v4d.V4DResNet18(classes=5, weights=str(out))
    video = np.random.default_rng(2).normal(size=(2, 4, 2, 32, 32, 3)).astype("float32")
    with torch.no_grad():
        expected = net(torch.from_numpy(video)).numpy()
    np.testing.assert_allclose(np.asarray(model(video)), expected, atol=1e-4)
    # The 4D blocks matter: with them zeroed, the outputs differ.
    assert np.abs(np.asarray(keras_v4d.TSNResNet18(classes=5)(video)) - expected).max() > 1e-3


def test_converter_names_what_a_checkpoint_is_missing(tmp_path):
    from keras_v4d.weights.convert_official import convert_official

    torch.manual_seed(0)
    state = official_state_dict(ResNet(18, dims=3, classes=5, blocks4d={(2, 1), (3, 1)}))
    del state["state_dict"]["module.base_model.layer3.1.bn2.running_var"]
    torch.save(state, tmp_path / "missing.pth.tar")
    with pytest.raises(ValueError, match=r"layer3\.1\.bn2' lacks \['running_var'\]"):
        convert_official(str(tmp_path / "missing.pth.tar"), "v4d_resnet18")
    state = official_state_dict(ResNet(18, dims=3, classes=5, blocks4d={(2, 1), (3, 1)}))
    del state["state_dict"]["module.base_model.layer2.1.conv4d.weight"]
    torch.save(state, tmp_path / "no4d.pth.tar")
    with pytest.raises(ValueError, match="has 2 4D blocks.*checkpoint has 1 4D weights"):
        convert_official(str(tmp_path / "no4d.pth.tar"), "v4d_resnet18")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        convert_official(str(tmp_path / "nope.pth.tar"), "v4d_resnet18")
