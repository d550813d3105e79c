"""Weight registry, loading checks, ImageNet inflation and the official-checkpoint converter
(registry settings, class names and ``decode_predictions``: ``tests/records/test_class_names.py``)."""

import os
import re
import shutil

import keras
import numpy as np
import pytest

import keras_v4d
from keras_v4d.models import build_resnet3d
from keras_v4d.records.presets import _registry, sha256_of
from keras_v4d.weights import WeightsMismatchError, fetch_weights, get_preset, load_model_weights, register
from keras_v4d.weights.inflate import inflate_2d
from tests.commands import run_tool
from tests.weights.tags import register_cached_tag

torch = pytest.importorskip("torch")
from torch_reference import TSN, TorchvisionResNet, save_official_checkpoint  # noqa: E402  (after sys.path names tests/)


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
    preset = get_preset("v4d_resnet50_kinetics400")
    assert preset.builder == "V4DResNet50" and preset.classes == 400 and preset.arguments["classes"] == 400
    assert preset.reported["top1"] == 77.4 and preset.sampling.frames_per_unit == 8
    assert preset.license.startswith("CC BY-NC")
    with pytest.raises(ValueError, match="not hosted as a converted file.*keras-v4d convert-weights .*"
                                         "--arch V4DResNet50"):
        fetch_weights("v4d_resnet50_kinetics400", cache_dir="/nonexistent-cache")
    with pytest.raises(ValueError, match="unknown weights tag 'kinetics9000'; registered tags: v4d_resnet50"):
        get_preset("kinetics9000")


def test_a_tag_sets_the_classes_and_serves_the_family(tmp_path, monkeypatch):
    full = keras_v4d.V4DResNet18(classes=3)
    register_cached_tag("test_r18", full, tmp_path, monkeypatch, "V4DResNet18")
    try:
        loaded = keras_v4d.V4DResNet18(weights="test_r18")  # no classes given: the tag's 3
        assert loaded.outputs[0].shape[-1] == 3
        for a, b in zip(loaded.weights, full.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        tsn = keras_v4d.TSNResNet18(weights="test_r18")  # the V4D tag's 3D layers; its 4D blocks left out
        assert tsn.weights_report.unused == ("residual4d (a 4D block)", "residual4d_1 (a 4D block)")
        other = keras_v4d.V4DResNet18(weights="test_r18", classes=400)  # other classes: a new classifier
        assert other.outputs[0].shape[-1] == 400 and other.weights_report.initialized == ("predictions",)
        with pytest.raises(WeightsMismatchError, match="layer 'res2_block0_1_conv'.*belong to V4DResNet18"):
            keras_v4d.V4DResNet50(weights="test_r18")
    finally:
        del _registry()["test_r18"]


def test_tag_resolves_offline_from_a_pre_seeded_cache(weights_file, registry_entry, tmp_path, monkeypatch):
    model, path = weights_file
    register("test_cached", {**registry_entry, "url": "https://unreachable.invalid/small.weights.h5"})
    (tmp_path / "cache" / "keras_v4d").mkdir(parents=True)
    shutil.copy(path, tmp_path / "cache" / "keras_v4d" / "small.weights.h5")
    monkeypatch.setenv("KERAS_V4D_CACHE", str(tmp_path / "cache"))
    loaded = build_resnet3d(18, "v4d", classes=3, width=0.25, weights="test_cached")
    for a, b in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_registry_entries_are_checked_when_registered(registry_entry, tmp_path):
    for name in ("../escape.weights.h5", "sub/x.weights.h5", ".."):
        with pytest.raises(ValueError, match="must be a plain file name"):
            register("test_bad_name", {**registry_entry, "file_name": name})
    register("test_upper", {**registry_entry, "sha256": registry_entry["sha256"].upper()})
    assert sha256_of(fetch_weights("test_upper", cache_dir=str(tmp_path / "c"))) == registry_entry["sha256"]


def test_tag_downloads_from_a_file_url_and_checks_its_sha256(weights_file, registry_entry, tmp_path):
    register("test_file_url", registry_entry)
    path = fetch_weights("test_file_url", cache_dir=str(tmp_path / "fresh"))
    assert path.startswith(str(tmp_path / "fresh")) and sha256_of(path) == registry_entry["sha256"]
    register("test_bad_hash", {**registry_entry, "sha256": "0" * 64, "file_name": "other.weights.h5"})
    with pytest.raises(ValueError, match="test_bad_hash.*sha256"):
        fetch_weights("test_bad_hash", cache_dir=str(tmp_path / "fresh2"))


def test_only_a_real_hash_mismatch_is_reported_as_one(weights_file, registry_entry, tmp_path, monkeypatch):
    register("test_fetch", {**registry_entry, "url": "https://example.invalid/small.weights.h5"})
    cached = tmp_path / "cache" / "keras_v4d" / "small.weights.h5"

    def raising(error):
        def get_file(*args, **kwargs):
            raise error
        return get_file

    for error, kind in ((ValueError("unknown url type: 'htps'"), "ValueError"),
                        (OSError(101, "Network is unreachable"), "OSError"),
                        (Exception("URL fetch failure on https://example.invalid/small.weights.h5: 404 -- Not Found"),
                         "Exception")):
        monkeypatch.setattr(keras.utils, "get_file", raising(error))
        with pytest.raises(ValueError) as caught:
            fetch_weights("test_fetch", cache_dir=str(tmp_path / "cache"))
        message = str(caught.value)
        assert message.startswith(f"weights 'test_fetch': cannot fetch https://example.invalid/small.weights.h5 "
                                  f"into {cached} ({kind}: "), message
        assert str(error) in message and "sha256" not in message

    def wrong_file(fname, origin, cache_subdir, cache_dir, **kwargs):  # a download that arrived changed
        path = os.path.join(cache_dir, cache_subdir, fname)
        with open(path, "wb") as handle:
            handle.write(b"not the weights")
        return path

    monkeypatch.setattr(keras.utils, "get_file", wrong_file)
    with pytest.raises(ValueError, match=rf"weights 'test_fetch': small.weights.h5 fetched from "
                                         rf"https://example.invalid/small.weights.h5 into {re.escape(str(cached))} "
                                         rf"failed its sha256 check: it has [0-9a-f]{{64}}, expected "
                                         rf"{registry_entry['sha256']}"):
        fetch_weights("test_fetch", cache_dir=str(tmp_path / "cache"))


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
    net2d = TorchvisionResNet(18).eval()
    model3d = keras_v4d.I3DSlowResNet18(include_top=False, input_shape=(1, 17, 64, 64, 3))
    inflate_2d(model3d, net2d.state_dict())
    frame = np.random.default_rng(1).uniform(-1, 1, (64, 64, 3)).astype("float32")
    with torch.no_grad():
        expected = net2d.features(torch.from_numpy(frame).permute(2, 0, 1)[None]).mean(dim=(2, 3))[0].numpy()
    np.testing.assert_allclose(_centre_frame_features(model3d, frame, 17), expected, atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- official checkpoints
ENV = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
FORMS = {"fast": 1, "loop": 0}


def _official(depth, form="fast", classes=5, stages_4d=None, seed=0):
    torch.manual_seed(seed)
    return TSN(classes, depth, num_segments=4, fast_implementation=FORMS[form], stages_4d=stages_4d).eval()


def _state(net):
    return {k: v.clone() for k, v in torch.nn.DataParallel(net).state_dict().items()}


def _convert_cli(checkpoint, out, arch):
    return run_tool("convert_weights", checkpoint, out, f"--arch={arch}")


def test_reference_has_the_official_module_structure(tmp_path):
    """The official release's layout: R4D appended inside the stage's nn.Sequential, tsa shapes, file fields."""
    r50 = _state(_official(50, "fast"))
    assert [k[len("module.base_model."):] for k in r50 if k.startswith("module.base_model.layer2.")
            and k.endswith((".conv1.weight", ".tsa.weight"))] == [
        "layer2.0.conv1.weight", "layer2.1.conv1.weight", "layer2.2.tsa.weight", "layer2.3.conv1.weight",
        "layer2.4.conv1.weight", "layer2.5.tsa.weight"]
    assert tuple(r50["module.base_model.layer2.2.tsa.weight"].shape) == (512, 512, 3, 3, 1)
    assert not any(".tsa." in k for k in r50 if not k.startswith("module.base_model.layer2."))
    r18 = _state(_official(18, "loop"))
    assert sorted(k for k in r18 if ".tsa." in k) == ["module.base_model.layer2.2.tsa.weight",
                                                        "module.base_model.layer3.2.tsa.weight"]
    assert tuple(r18["module.base_model.layer2.2.tsa.weight"].shape) == (3, 128, 128, 3, 1, 1)
    assert tuple(r18["module.base_model.layer3.2.tsa.weight"].shape) == (3, 256, 256, 3, 1, 1)
    assert "module.new_fc.weight" in r18 and "module.base_model.layer4.1.bn2.num_batches_tracked" in r18
    save_official_checkpoint(_official(18), tmp_path / "r18.pth.tar", arch="i3dresnet18")
    saved = torch.load(tmp_path / "r18.pth.tar", weights_only=True)
    assert set(saved) == {"epoch", "arch", "state_dict", "best_prec1"} and saved["arch"] == "i3dresnet18"


@pytest.mark.slow
@pytest.mark.parametrize("depth,form", [(50, "fast"), (50, "loop"), (18, "fast"), (18, "loop")])
def test_official_checkpoint_converted_by_the_cli_matches_pytorch(depth, form, tmp_path):
    net = _official(depth, form)
    checkpoint = tmp_path / "v4d.pth.tar"
    save_official_checkpoint(net, checkpoint, arch=f"i3dresnet{depth}")
    out = tmp_path / "v4d.weights.h5"
    result = _convert_cli(checkpoint, out, f"V4DResNet{depth}")
    assert result.returncode == 0, result.stderr[-3000:]
    builder = keras_v4d.V4DResNet50 if depth == 50 else keras_v4d.V4DResNet18
    model = builder(classes=5, weights=str(out))
    video = np.random.default_rng(2).normal(size=(2, 4, 4, 32, 32, 3)).astype("float32")
    with torch.no_grad():
        expected = net(torch.from_numpy(video)).numpy()
    np.testing.assert_allclose(np.asarray(model(video)), expected, atol=1e-4)
    # The test can see the 4D blocks: PyTorch without them differs by far more than the tolerance.
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            if ".tsa." in name:
                parameter.zero_()
        assert np.abs(net(torch.from_numpy(video)).numpy() - expected).max() > 1e-2


def test_baseline_checkpoints_without_4d_modules_convert():
    from keras_v4d.weights.convert_official import load_official_state

    net = _official(18, stages_4d=())
    video = np.random.default_rng(3).normal(size=(1, 4, 2, 32, 32, 3)).astype("float32")
    with torch.no_grad():
        expected = net(torch.from_numpy(video)).numpy()
    for builder in (keras_v4d.TSNResNet18, keras_v4d.I3DSlowResNet18):
        model = load_official_state(builder(classes=5), _state(net))
        np.testing.assert_allclose(np.asarray(model(video)), expected, atol=1e-4)


def test_a_checkpoint_with_a_4d_module_removed_names_the_block(tmp_path):
    from keras_v4d.weights.convert_official import convert_official

    state = _state(_official(50, "fast"))
    del state["module.base_model.layer2.5.tsa.weight"]
    torch.save({"epoch": 1, "arch": "i3dresnet50", "state_dict": state, "best_prec1": 0.0}, tmp_path / "a.pth.tar")
    with pytest.raises(ValueError, match=r"i3dresnet50.*4D block 'res3_v4d3' after residual block 3 of res3.*"
                                         r"expected 'module\.base_model\.layer2\.5\.tsa'"):
        convert_official(str(tmp_path / "a.pth.tar"), "V4DResNet50")
    # The first one removed: layer2.3 .. layer2.5 shift back; block counting still reads them right.
    state = _state(_official(50, "fast"))
    shifted = {}
    for key, value in state.items():
        match = re.match(r"module\.base_model\.layer2\.(\d+)\.(.*)", key)
        if match and match.group(2).startswith("tsa") and match.group(1) == "2":
            continue
        if match and int(match.group(1)) > 2:
            key = f"module.base_model.layer2.{int(match.group(1)) - 1}.{match.group(2)}"
        shifted[key] = value
    torch.save({"state_dict": shifted}, tmp_path / "b.pth.tar")
    with pytest.raises(ValueError, match=r"4D block 'res3_v4d1' after residual block 1.*no 4D module there"):
        convert_official(str(tmp_path / "b.pth.tar"), "V4DResNet50")


def test_a_v4d_checkpoint_into_an_architecture_without_that_4d_block_names_the_key(tmp_path):
    from keras_v4d.weights.convert_official import load_official_state

    state = _state(_official(18, "loop"))
    with pytest.raises(ValueError, match=r"key 'module\.base_model\.layer2\.2\.tsa\.weight' is a 4D module after "
                                         r"residual block 1 of res3, but model 'i3d_slow_resnet18' has no 4D block.*"
                                         r"convert it into V4DResNet18"):
        load_official_state(keras_v4d.I3DSlowResNet18(classes=5), state)
    with pytest.raises(ValueError, match=r"layer3\.2\.tsa\.weight' is a 4D module after residual block 1 of res4"):
        load_official_state(keras_v4d.V4DResNet18(classes=5, block4d_placement={"res3": (1,)}), state)


def test_the_converter_names_a_missing_output_folder(tmp_path):
    result = _convert_cli(tmp_path / "any.pth.tar", tmp_path / "no" / "such" / "out.weights.h5", "V4DResNet18")
    assert result.returncode == 2 and f"the output's folder {tmp_path / 'no' / 'such'} does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_checkpoint_of_another_depth_fails_in_the_cli_naming_the_stage(tmp_path):
    save_official_checkpoint(_official(18, "loop"), tmp_path / "r18.pth.tar", arch="i3dresnet18")
    result = _convert_cli(tmp_path / "r18.pth.tar", tmp_path / "out.weights.h5", "V4DResNet50")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "r18.pth.tar (saved with arch 'i3dresnet18')" in result.stderr
    assert "'module.base_model.layer1' has 2 basic residual block(s)" in result.stderr
    assert "3 bottleneck block(s) in res2" in result.stderr and "convert it into V4DResNet18" in result.stderr
    assert not (tmp_path / "out.weights.h5").exists()


def test_converter_names_missing_misshapen_and_foreign_tensors(tmp_path):
    from keras_v4d.weights.convert_official import convert_official, load_official_state

    def fails(state, pattern, model=None):
        with pytest.raises(ValueError, match=pattern):
            load_official_state(model or keras_v4d.V4DResNet18(classes=5), state)

    base = _state(_official(18, "fast"))
    state = dict(base)
    del state["module.base_model.layer3.1.bn2.running_var"]  # layer3.1 is residual block 1 of res4
    fails(state, r"module 'module\.base_model\.layer3\.1\.bn2' lacks \['running_var'\] for BN layer "
                 r"'res4_block1_2_bn'")
    state = {k: v for k, v in base.items() if not k.startswith("module.base_model.layer3.1.")}
    fails(state, r"'module\.base_model\.layer3' has 1 basic residual block\(s\), but model 'v4d_resnet18' has 2")
    state = {k: v for k, v in base.items() if not k.startswith("module.base_model.layer3.1.conv2")}
    fails(state, r"no weights for layer 'res4_block1_2_conv' .*expected checkpoint module "
                 r"'module\.base_model\.layer3\.1\.conv2'")
    state = {**base, "module.base_model.layer2.2.tsa.weight": base["module.base_model.layer2.2.tsa.weight"][:64]}
    fails(state, r"'res3_v4d1': 4D kernel .* 'module\.base_model\.layer2\.2\.tsa\.weight'")
    state = {**base, "module.base_model.layer2.2.tsa.bias": torch.zeros(128)}
    fails(state, r"'module\.base_model\.layer2\.2' is a 4D module \(R4D\) but holds .*tsa\.bias")
    state = {**base, "module.base_model.layer2.6.nl.weight": torch.zeros(3)}
    fails(state, r"key 'module\.base_model\.layer2\.6\.nl\.weight'.*neither a residual block .* nor a 4D module")
    state = {**base, "module.base_model.classifier.weight": torch.zeros(5, 512)}
    fails(state, r"1 checkpoint key\(s\) fit no layer .*module\.base_model\.classifier\.weight")
    state = {k: v for k, v in base.items() if not k.startswith("module.new_fc")}
    fails(state, "has no classifier")
    fails(base, r"classifier: the model has 7 classes .* 'module\.new_fc\.weight' 5 × 512",
          keras_v4d.V4DResNet18(classes=7))
    torch.save([1, 2], tmp_path / "list.pth.tar")
    with pytest.raises(ValueError, match="list.pth.tar: expected a dict"):
        convert_official(str(tmp_path / "list.pth.tar"), "V4DResNet18")
    (tmp_path / "junk.pth.tar").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pth.tar: cannot read it as a PyTorch checkpoint"):
        convert_official(str(tmp_path / "junk.pth.tar"), "V4DResNet18")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        convert_official(str(tmp_path / "nope.pth.tar"), "V4DResNet18")
