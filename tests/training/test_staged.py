"""Starting a run from trained weights and freezing parts of it: the paper's staged recipe (V4D §4.3)
through the command line, frozen weights through ``train``, and the run records of both."""

import json
import os

import h5py
import numpy as np
import pytest

import keras_v4d
from keras_v4d.models import build_resnet3d
from keras_v4d.records.sampling import VideoSampling
from keras_v4d.training import Recipe, RunOutput, TrainingData, train
from keras_v4d.training.run_folder import claim_run_folder, record_differences
from tests.commands import run_tool
from tests.training.runs import train_command

SAMPLING = VideoSampling(train_units=2, frames_per_unit=2, stride=2, crop_size=32, short_side=32)
INPUT_SHAPE = (2, 2, 32, 32, 3)


def _stage(listing, output, model, *flags):
    """``keras-v4d train`` for one epoch on the tiny list (two 32² units of two frames)."""
    result = run_tool("train", *train_command(listing, output, 1)[3:], f"--model={model}", "--notensorboard", *flags)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def _layer_arrays(path, match):
    """``{layer key: [arrays]}`` of a ``.weights.h5`` file's layers whose key contains ``match``."""
    arrays = {}
    with h5py.File(path, "r") as handle:
        for key, group in handle["layers"].items():
            if match(key):
                found = []
                group.visititems(lambda _, item: found.append(item[()]) if isinstance(item, h5py.Dataset) else None)
                if found:
                    arrays[key] = found
    return arrays


def _is_block4d(key):
    return key.startswith("residual4d")


def test_the_papers_three_stages_through_the_cli(tiny_dataset, tmp_path):
    # Stage 1: the 3D backbone (I3D-S).
    _stage(tiny_dataset, tmp_path / "stage1", "I3DSlowResNet18")
    stage1 = tmp_path / "stage1" / "epoch-001.weights.h5"

    # Stage 2 starts as TSN with the stage-1 weights: the 4D blocks at the identity.
    x = np.random.default_rng(0).uniform(0, 255, (2, *INPUT_SHAPE)).astype("float32")
    v4d = keras_v4d.V4DResNet18(weights=str(stage1), input_shape=INPUT_SHAPE)
    tsn = keras_v4d.TSNResNet18(weights=str(stage1), input_shape=INPUT_SHAPE)
    np.testing.assert_allclose(np.asarray(v4d(x, training=False)), np.asarray(tsn(x, training=False)), atol=1e-5)
    start = v4d.get_weights()
    del v4d, tsn

    second = _stage(tiny_dataset, tmp_path / "stage2", "V4DResNet18", f"--init_weights={stage1}",
                    "--freeze=blocks4d")
    assert "newly initialised (not taken from the file): res3_v4d" in second.stdout
    assert "freeze: blocks4d (2 layers kept fixed)" in second.stdout
    record = json.loads((tmp_path / "stage2" / "run.json").read_text())
    assert (record["init_weights"], record["freeze"]) == (str(stage1), ["blocks4d"])
    stage2 = tmp_path / "stage2" / "epoch-001.weights.h5"
    blocks = _layer_arrays(stage2, _is_block4d)
    assert len(blocks) == 2 and all(not np.any(a) for arrays in blocks.values() for a in arrays)  # zero, as built
    trained = _layer_arrays(stage2, lambda key: key.startswith("conv3d"))
    loaded = _layer_arrays(stage1, lambda key: key.startswith("conv3d"))
    assert trained.keys() == loaded.keys() and any(not np.array_equal(trained[k][0], loaded[k][0]) for k in trained)
    assert any(np.any(w) for w in start)  # (the comparison above held for non-trivial weights)

    # Each stage resumes as any run: the same command again does nothing.
    again = _stage(tiny_dataset, tmp_path / "stage2", "V4DResNet18", f"--init_weights={stage1}", "--freeze=blocks4d")
    assert "has completed its 1 epochs" in again.stdout and "init_weights:" not in again.stdout

    # Stage 3: everything trainable from stage 2's weights.
    third = _stage(tiny_dataset, tmp_path / "stage3", "V4DResNet18", f"--init_weights={stage2}")
    assert "init_weights: " in third.stdout and "newly initialised" not in third.stdout
    after = _layer_arrays(tmp_path / "stage3" / "epoch-001.weights.h5", _is_block4d)
    assert after.keys() == blocks.keys() and any(np.any(a) for arrays in after.values() for a in arrays)


def test_frozen_weights_stay_bit_identical_through_train_and_other_classes_start_a_new_classifier(
        tiny_dataset, tmp_path):
    start = tmp_path / "tsn3.weights.h5"
    keras_v4d.TSNResNet18(classes=3, input_shape=INPUT_SHAPE).save_weights(str(start))  # 3 classes; the run has 2
    output = RunOutput(str(tmp_path / "run"), tensorboard=False, verbose=0)
    train("TSNResNet18", TrainingData(str(tiny_dataset), num_classes=2), output, sampling=SAMPLING,
          recipe=Recipe(epochs=1, batch_size=2, init_weights=str(start), freeze=("backbone",)))
    end = tmp_path / "run" / "epoch-001.weights.h5"
    backbone = _layer_arrays(start, lambda key: not key.startswith("dense"))
    assert backbone and _layer_arrays(end, lambda key: not key.startswith("dense")).keys() == backbone.keys()
    for key, arrays in _layer_arrays(end, lambda key: not key.startswith("dense")).items():
        for got, want in zip(arrays, backbone[key]):
            assert np.array_equal(got, want), key  # kernels and BN statistics alike
    classifier = _layer_arrays(end, lambda key: key.startswith("dense"))
    assert [a.shape for a in next(iter(classifier.values()))] in ([(2,), (512, 2)], [(512, 2), (2,)])


def test_weights_that_do_not_fit_are_refused_naming_the_layer(tiny_dataset, tmp_path):
    narrow = tmp_path / "narrow.weights.h5"
    build_resnet3d(18, builder="TSNResNet18", width=0.25, classes=2, input_shape=INPUT_SHAPE).save_weights(str(narrow))
    result = run_tool("train", *train_command(tiny_dataset, tmp_path / "run", 1)[3:], f"--init_weights={narrow}")
    assert result.returncode == 2
    assert "error: init_weights: " in result.stderr and "layer '" in result.stderr and "first layer" in result.stderr
    missing = run_tool("train", *train_command(tiny_dataset, tmp_path / "run2", 1)[3:], "--init_weights=nope.h5")
    assert missing.returncode == 2 and "init_weights: `weights`: file not found: 'nope.h5'" in missing.stderr
    bad_part = run_tool("train", *train_command(tiny_dataset, tmp_path / "run3", 1)[3:], "--freeze=blocks4d,fc")
    assert bad_part.returncode == 2 and "Recipe: `freeze` has the unknown part 'fc'" in bad_part.stderr


def test_freeze_is_recorded_and_a_run_json_without_it_still_resumes(tmp_path):
    assert Recipe(freeze=["blocks4d", "batch_norm", "blocks4d"]).freeze == ("blocks4d", "batch_norm")
    assert Recipe(freeze="head").freeze == ("head",)
    with pytest.raises(ValueError, match="Recipe: `freeze` has the unknown part 'bn'; parts: blocks4d, backbone"):
        Recipe(freeze=("bn",))
    with pytest.raises(ValueError, match="Recipe: `init_weights` must be a .weights.h5 path or a weights tag"):
        Recipe(init_weights=3)
    earlier = {"builder": "V4DResNet18", "batch_size": 2}  # written before `freeze` was recorded
    (tmp_path / "run.json").write_text(json.dumps(earlier))
    assert claim_run_folder(str(tmp_path), {**earlier, "freeze": []}) == "resumed"
    assert record_differences(earlier, {**earlier, "freeze": ["blocks4d"]}) == ['freeze: [] recorded, ["blocks4d"] now']
    with pytest.raises(ValueError, match=r'freeze: \[\] recorded, \["blocks4d"\] now'):
        claim_run_folder(str(tmp_path), {**earlier, "freeze": ["blocks4d"]})
    assert json.loads((tmp_path / "run.json").read_text()) == earlier and os.listdir(tmp_path) == ["run.json"]
