"""Kinetics-400 class names shipped with the package, the registry's settings, ``decode_predictions``
and class names in ``predict``/``evaluate`` without a flag."""

import json
import os
import types

import numpy as np
import pytest

import keras_v4d
from keras_v4d.models import build_resnet3d
from keras_v4d.records.class_names import kinetics400_class_names
from keras_v4d.records.sampling import VideoSampling
from tests.commands import run_tool

# Label indices of Kinetics-400 classes as used outside this package (the sorted label map of
# DeepMind's kinetics-i3d, torchvision, MMAction2): an independent check of the shipped order.
KNOWN_LABELS = {0: "abseiling", 5: "archery", 19: "bench pressing", 31: "bowling", 37: "brushing teeth",
                66: "climbing a rope", 93: "diving cliff", 148: "hammer throw", 166: "javelin throw",
                182: "long jump", 223: "playing cello", 232: "playing guitar", 241: "playing piano",
                260: "push up", 298: "shot put", 346: "tai chi", 358: "throwing discus",
                378: "walking the dog", 399: "zumba"}


def test_kinetics400_names_ship_with_the_package_in_label_order():
    names = kinetics400_class_names()
    assert len(names) == 400 and len(set(names)) == 400
    assert names == sorted(names)  # the order of torchvision's metadata and MMAction2's label map
    assert all(names[i] == name for i, name in KNOWN_LABELS.items())
    assert "passing American football (in game)" in names and "massaging person's head" in names


def test_presets_give_the_names_and_the_sampling():
    preset = keras_v4d.weights.get_preset("v4d_resnet50_kinetics400")
    assert preset.class_names == kinetics400_class_names()
    assert preset.class_names_source == "kinetics400_classes.txt"
    registry = json.loads(open(os.path.join(os.path.dirname(keras_v4d.__file__), os.pardir, "checkpoints",
                                            "registry.json"), encoding="utf-8").read())
    for tag, frames in (("v4d_resnet50_kinetics400", 8), ("v4d_resnet50_minikinetics200", 4)):
        preset = keras_v4d.weights.get_preset(tag)
        assert list(registry[tag]["input"]) == list(VideoSampling().to_dict())  # the fields of VideoSampling
        assert preset.sampling == VideoSampling(train_units=4, frames_per_unit=frames, stride=8, crop_size=224,
                                                short_side=256, test_num_units=10, test_crop_size=256,
                                                test_num_crops=3)
        assert preset.arguments["frames_per_unit"] == frames
    mini = keras_v4d.weights.get_preset("v4d_resnet50_minikinetics200")
    assert mini.class_names is None and "not published" in mini.notes["class_names_note"]


def test_decode_predictions_names_the_top_classes():
    probabilities = np.full((2, 400), 1e-4, "float32")
    probabilities[0, [232, 31, 5]] = [0.5, 0.3, 0.1]
    probabilities[1, 399] = 0.9
    decoded = keras_v4d.decode_predictions(probabilities, top=3)
    assert [name for name, _ in decoded[0]] == ["playing guitar", "bowling", "archery"]
    assert decoded[0][0] == ("playing guitar", pytest.approx(0.5)) and isinstance(decoded[0][0][1], float)
    assert decoded[1][0][0] == "zumba" and len(decoded[1]) == 3
    assert len(keras_v4d.decode_predictions(probabilities)[0]) == 5
    model = build_resnet3d(18, "v4d", classes=400, width=0.25)
    output = model(np.zeros((1, 4, 2, 32, 32, 3), "float32"))  # a backend tensor goes in as it is
    (best,) = keras_v4d.decode_predictions(output, top=1)[0]
    assert best[0] == kinetics400_class_names()[int(np.argmax(output))]


def test_decode_predictions_takes_other_names_and_says_what_does_not_fit(tmp_path):
    scores = np.array([[0.2, 0.7, 0.1]])
    assert keras_v4d.decode_predictions(scores, top=2, class_names=["a", "b", "c"]) == [
        [("b", pytest.approx(0.7)), ("a", pytest.approx(0.2))]]
    (tmp_path / "names.txt").write_text("x\ny\nz\n")
    assert keras_v4d.decode_predictions(scores, top=1, class_names=str(tmp_path / "names.txt"))[0][0][0] == "y"
    with pytest.raises(ValueError, match="predictions have 3 classes; the default names are Kinetics-400's 400"):
        keras_v4d.decode_predictions(scores)
    with pytest.raises(ValueError, match="2 class names for predictions of 3 classes"):
        keras_v4d.decode_predictions(scores, class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"shape \(samples, classes\); got shape \(400,\)"):
        keras_v4d.decode_predictions(np.ones(400))
    with pytest.raises(FileNotFoundError, match="class names file not found: .*nope.txt"):
        keras_v4d.decode_predictions(scores, class_names=str(tmp_path / "nope.txt"))


def _inference_flags(checkpoint, **overrides):
    flags = dict(checkpoint=checkpoint, model=None, class_names=None, train_units=None, num_units=None,
                 frames_per_unit=None, stride=None, crop_size=None, short_side=None, num_crops=None,
                 mode="combinations")
    return types.SimpleNamespace(**{**flags, **overrides})


def test_a_400_way_checkpoint_without_names_gets_the_kinetics400_names(tmp_path, capsys):
    from keras_v4d.cli.common import CommandError, load_inference_model

    path = tmp_path / "k400.keras"
    build_resnet3d(18, "v4d", classes=400, width=0.25).save(path)
    _, names, _ = load_inference_model(_inference_flags(str(path)))
    assert names == kinetics400_class_names() and "named with Kinetics-400's classes" in capsys.readouterr().err
    (tmp_path / "mine.txt").write_text("".join(f"class {i}\n" for i in range(400)))
    _, names, _ = load_inference_model(_inference_flags(str(path), class_names=str(tmp_path / "mine.txt")))
    assert names[7] == "class 7" and capsys.readouterr().err == ""
    with pytest.raises(CommandError, match="--model is for .weights.h5 checkpoints; the weights tag"):
        load_inference_model(_inference_flags("v4d_resnet50_kinetics400", model="V4DResNet50"))


@pytest.mark.slow
def test_predict_with_the_registered_kinetics400_tag_names_the_classes(tmp_path, monkeypatch):
    """The tag as --checkpoint: architecture, sampling settings and class names from the registry."""
    from keras_v4d.data import write_video

    model = keras_v4d.V4DResNet50(classes=400, frames_per_unit=8)
    head = model.get_layer("predictions")
    bias = np.zeros(400, "float32")
    bias[232] = 50.0  # label 232 of Kinetics-400 is "playing guitar"
    head.bias.assign(bias)
    (tmp_path / "cache" / "keras_v4d").mkdir(parents=True)
    model.save_weights(tmp_path / "cache" / "keras_v4d" / "v4d_resnet50_kinetics400.weights.h5")
    video = tmp_path / "clip.mp4"
    write_video(str(video), np.random.default_rng(0).integers(0, 255, (24, 40, 48, 3), dtype=np.uint8))
    monkeypatch.setenv("KERAS_V4D_CACHE", str(tmp_path / "cache"))
    result = run_tool("predict", "--checkpoint=v4d_resnet50_kinetics400", "--num_units=4", "--short_side=32",
                      "--crop_size=32", "--num_crops=1", "--json", "--top_k=2", video)
    assert result.returncode == 0, result.stderr[-3000:]
    top = json.loads(result.stdout.strip().splitlines()[-1])["top"]
    assert top[0]["class"] == "playing guitar" and top[0]["probability"] > 0.99
    assert top[1]["class"] in kinetics400_class_names() and "note:" not in result.stderr
