"""The records a run is built from: each checks its fields where it is made, naming the field; the
run record compares equal to what ``run.json`` reads back."""

import json
import os

import pytest

from keras_v4d.data import DataOptions, VideoDatasetInfo
from keras_v4d.records.sampling import VideoSampling
from keras_v4d.training import Distribution, Recipe, RunOutput, TrainingData, train
from keras_v4d.training.data import TrainingInput, validation_sampling
from keras_v4d.training.run_folder import claim_run_folder, record_differences, run_record


def test_each_record_names_the_field_at_fault():
    for make, message in ((lambda: Recipe(epochs=0), "Recipe: `epochs` must be at least 1, got 0"),
                          (lambda: Recipe(batch_size=2.5), "Recipe: `batch_size` must be a positive int"),
                          (lambda: Recipe(lr=-1.0), "Recipe: `lr` must be a positive float"),
                          (lambda: Recipe(weight_decay=-1e-5), "Recipe: `weight_decay` must be a number >= 0"),
                          (lambda: Recipe(decay_epochs=[35, 0]), "Recipe: `decay_epochs` must be a positive int"),
                          (lambda: Recipe(jit_compile="yes"), "Recipe: `jit_compile` must be None, True"),
                          (lambda: Distribution("tpu"), "strategy must be one of .*'tpu'"),
                          (lambda: TrainingData(""), "TrainingData: `train` .* is required"),
                          (lambda: TrainingData("a.txt", num_classes=0), "TrainingData: `num_classes` must be"),
                          (lambda: TrainingData("a.txt", options={"strict": True}), "`options` must be a DataOptions"),
                          (lambda: RunOutput(""), "RunOutput: `folder` .* is required"),
                          (lambda: RunOutput("runs/a", verbose=3), "RunOutput: `verbose` must be one of"),
                          (lambda: RunOutput("runs/a", keep_checkpoints=0), "`keep_checkpoints` must be a whole"),
                          (lambda: RunOutput("runs/a", best_metric="top1"), "`best_metric` must name a validation")):
        with pytest.raises(ValueError, match=message):
            make()
    assert Recipe(decay_epochs=[35, 60]).decay_epochs == (35, 60)  # a list from flags or JSON
    assert RunOutput("runs/a", verbose=0).fit_verbosity() == 0


def test_train_refuses_an_unknown_builder_and_a_data_service_with_multiworker_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="the builder must be one of .*'ResNet9000'"):
        train("ResNet9000", "train.txt", str(tmp_path / "run"))
    with pytest.raises(ValueError, match="data_service: each training process would read every video"):
        train("TSNResNet18", TrainingData("train.txt", service="grpc://localhost:5050"), str(tmp_path / "run"),
              distribution=Distribution("multiworker"))
    assert not os.listdir(tmp_path)


def test_validation_reads_one_centre_view_of_the_training_units_and_crop():
    sampling = VideoSampling(train_units=2, frames_per_unit=2, stride=2, crop_size=32, short_side=40,
                             test_num_units=6, test_num_crops=3, area_range=(0.5, 1.0))
    validation = validation_sampling(sampling)
    assert (validation.test_num_units, validation.test_crop, validation.test_num_crops) == (2, 32, 1)
    assert (validation.train_units, validation.short_side, validation.area_range) == (2, 40, (0.5, 1.0))


def test_the_run_record_is_built_from_the_records_and_equals_run_json_read_back(tmp_path):
    sampling = VideoSampling(train_units=2, frames_per_unit=2, stride=2, crop_size=32, short_side=32)
    data = TrainingData("train.txt", val="val.txt", num_classes=2, options=DataOptions(seed=3))
    inputs = TrainingInput(train=None, info=VideoDatasetInfo(None, ["a", "b"], 4), val=None, val_info=None,
                           num_classes=2, num_videos=4, batch_size=2)
    recipe = Recipe(epochs=7, batch_size=2, lr=0.1, decay_epochs=(3, 5), init_weights="r18.weights.h5")
    record = run_record("TSNResNet18", data, inputs, sampling, recipe)
    assert record == {
        "builder": "TSNResNet18", "train_data": os.path.abspath("train.txt"), "train_videos": 4,
        "val_data": os.path.abspath("val.txt"), "sampling": json.loads(json.dumps(sampling.to_dict())),
        "batch_size": 2, "num_classes": 2, "class_names": ["a", "b"], "lr": 0.1, "weight_decay": 1e-5,
        "decay_epochs": [3, 5], "mixed_precision": False, "init_weights": os.path.abspath("r18.weights.h5"),
        "freeze": [], "keep_checkpoints": 3}
    assert inputs.steps_per_epoch == 2 and inputs.class_names == ["a", "b"]
    # The sampling's area range is a tuple; run.json holds a list: the same run all the same.
    assert claim_run_folder(str(tmp_path), record) == "new"
    assert claim_run_folder(str(tmp_path), run_record("TSNResNet18", data, inputs, sampling, recipe)) == "resumed"
    # Epochs, jit_compile and the data options may change from one command to the next.
    again = run_record("TSNResNet18", TrainingData("train.txt", val="val.txt", num_classes=2), inputs, sampling,
                       Recipe(epochs=9, batch_size=2, lr=0.1, decay_epochs=[3, 5], jit_compile=False,
                              init_weights="r18.weights.h5"))
    assert again == record


def test_a_sampling_field_added_later_compares_as_its_default():
    wanted = json.loads(json.dumps({"sampling": VideoSampling().to_dict()}))
    recorded = {"sampling": {k: v for k, v in wanted["sampling"].items() if k != "area_range"}}  # an earlier run
    assert record_differences(recorded, wanted) == []
    other = json.loads(json.dumps({"sampling": VideoSampling(area_range=(0.5, 1.0)).to_dict()}))
    assert record_differences(recorded, other) == ["sampling.area_range: [0.25, 1.0] recorded, [0.5, 1.0] now"]
