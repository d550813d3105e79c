"""The accidents of a long run, made to happen for real: a SIGKILL mid-training, a truncated checkpoint,
a second run into a used folder, a finished run run again, a diverging learning rate."""

import csv
import json
import os
import pathlib
import shutil
import signal
import subprocess
import time

import keras
import numpy as np
import pytest

from keras_v4d.data import resolve_source
from keras_v4d.records.atomic import TEMPORARY_PREFIX
from keras_v4d.records.folder_lock import LOCK_FILE
from keras_v4d.records.run_files import DEFAULT_KEEP_CHECKPOINTS
from keras_v4d.records.sampling import VideoSampling
from keras_v4d.training import Recipe, RunOutput, TrainingData, train
from keras_v4d.training.callbacks import TrainingDiverged
from keras_v4d.training.run_folder import (
    RunFolderError,
    checkpoints,
    claim_run_folder,
    record_differences,
    restore_newest_checkpoint,
    trim_logs,
)
from keras_v4d.weights import find_class_names, load_model
from tests.commands import run_tool
from tests.conftest import tensorflow_only
from tests.training.runs import epochs_logged, train_command

# Processes are started and killed, but each test waits on files, not on time: they run beside others.
pytestmark = tensorflow_only()
TINY = VideoSampling(train_units=2, frames_per_unit=2, stride=2, crop_size=32, short_side=32)
ENV = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}


def _train(listing, output, epochs, **kwargs):
    return train("TSNResNet18", TrainingData(str(listing), num_classes=2), RunOutput(str(output), tensorboard=False,
                 verbose=0), sampling=TINY, recipe=Recipe(epochs=epochs, batch_size=2), **kwargs)


def _files(folder):
    """{name: bytes} of a folder's files (not its sub-folders, not the lock a process holds while it runs)."""
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))
            if (folder / name).is_file() and name != LOCK_FILE}


@pytest.fixture(scope="module")
def two_epochs(tiny_dataset, tmp_path_factory):
    """A finished run of 2 epochs (trained once); each test takes ``run_of_two_epochs``, its own copy."""
    output = tmp_path_factory.mktemp("two_epochs") / "run"
    _train(tiny_dataset, output, 2)
    return output


@pytest.fixture
def run_of_two_epochs(two_epochs, tmp_path):
    return pathlib.Path(shutil.copytree(two_epochs, tmp_path / "run"))


def _dense(units=2):
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(units)])


def test_killed_training_resumes_with_one_history_row_per_epoch(tiny_dataset, tmp_path):
    output, epochs = tmp_path / "run", 5
    first = subprocess.Popen(train_command(tiny_dataset, output, epochs) + ["--notensorboard"], env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(checkpoints(str(output))) < 2 and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, "training ended before it could be interrupted"
    first.send_signal(signal.SIGKILL)  # wherever it is: in a step, writing history.csv or a checkpoint
    first.wait()
    done_before_kill = len(checkpoints(str(output)))
    assert 2 <= done_before_kill < epochs
    second = subprocess.run(train_command(tiny_dataset, output, epochs) + ["--notensorboard"], env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resuming the run after epoch" in second.stdout
    # Not a terminal (as in CI): one line per epoch, no progress bar.
    assert "━" not in second.stdout and "\r" not in second.stdout
    assert not (output / "tensorboard").exists()  # --notensorboard
    started_at = int(second.stdout.split("Epoch ", 1)[1].split("/", 1)[0])
    assert started_at == done_before_kill + 1  # resumed after its last checkpoint, not at epoch 1
    assert epochs_logged(output) == list(range(epochs))  # one row per epoch, none twice, none missing
    kept = list(range(epochs, epochs - DEFAULT_KEEP_CHECKPOINTS, -1))  # the newest, by default
    assert [epoch for epoch, _ in checkpoints(str(output))] == kept
    assert not [name for name in os.listdir(output) if name.startswith(TEMPORARY_PREFIX)]
    assert keras.models.load_model(output / "last.keras").output.shape == (None, 2)


def test_a_finished_run_continues_with_more_epochs_does_nothing_with_as_many_and_refuses_fewer(
        tiny_dataset, run_of_two_epochs, capsys):
    output = run_of_two_epochs
    iterations = int(keras.models.load_model(output / "last.keras").optimizer.iterations.numpy())
    per_epoch = iterations // 2
    assert per_epoch >= 2  # 2 steps (Keras also counts the call that finds the dataset exhausted)
    before = _files(output)
    capsys.readouterr()
    assert _train(tiny_dataset, output, 2) is None
    assert "has completed its 2 epochs" in capsys.readouterr().out and _files(output) == before  # nothing written
    with pytest.raises(RunFolderError, match=r"epochs=1 is below the 2 epochs"):
        _train(tiny_dataset, output, 1)
    assert _files(output) == before
    history = _train(tiny_dataset, output, 3)
    assert "resuming the run after epoch 2" in capsys.readouterr().out
    assert history.epoch == [2]  # only the third epoch ran
    assert epochs_logged(output) == [0, 1, 2]
    model = keras.models.load_model(output / "last.keras")
    # The optimizer (and its schedule) went on from where epoch 2 left it, not from step 0.
    assert int(model.optimizer.iterations.numpy()) == iterations + per_epoch


def test_a_second_run_into_a_used_folder_is_refused_naming_each_difference(tiny_dataset, tmp_path):
    output = tmp_path / "run"
    _train(tiny_dataset, output, 1)
    before = _files(output)
    with pytest.raises(RunFolderError) as refused:
        train("TSNResNet18", TrainingData(str(tiny_dataset), num_classes=2),
              RunOutput(str(output), tensorboard=False, verbose=0), sampling=VideoSampling(
            train_units=2, frames_per_unit=4, stride=2, crop_size=32, short_side=32),
              recipe=Recipe(epochs=2, batch_size=4, lr=0.1))
    message = str(refused.value)
    for difference in ("batch_size: 2 recorded, 4 now", "lr: 0.01 recorded, 0.1 now",
                       "sampling.frames_per_unit: 2 recorded, 4 now", "--overwrite"):
        assert difference in message
    assert _files(output) == before  # refused before anything was written: settings.json, run.json, weights
    # --overwrite deletes that run's files (not others) and starts this one.
    (output / "notes.txt").write_text("mine")
    train("TSNResNet18", TrainingData(str(tiny_dataset), num_classes=2),
          RunOutput(str(output), overwrite=True, tensorboard=False, verbose=0), sampling=TINY,
          recipe=Recipe(epochs=1, batch_size=4))
    assert json.loads((output / "run.json").read_text())["batch_size"] == 4
    assert (output / "notes.txt").read_text() == "mine" and epochs_logged(output) == [0]


def test_a_run_stores_its_class_names_once_in_settings_json_and_every_reader_finds_them(tiny_dataset, tmp_path):
    output = tmp_path / "run"
    named = resolve_source(str(tiny_dataset), class_names=["left", "right"])
    train("TSNResNet18", TrainingData(named), RunOutput(str(output), tensorboard=False, verbose=0), sampling=TINY,
          recipe=Recipe(epochs=1, batch_size=2))
    assert json.loads((output / "settings.json").read_text())["class_names"] == ["left", "right"]
    assert json.loads((output / "run.json").read_text())["class_names"] == ["left", "right"]
    assert not (output / "class_names.txt").exists()
    loaded = load_model(output / "last.keras")
    assert loaded.class_names == ["left", "right"] and loaded.saved_sampling["stride"] == 2 and loaded.tag is None
    assert find_class_names(str(output / "last.keras")) == ["left", "right"]


def test_the_cli_refuses_a_used_folder_before_writing_and_names_the_difference(tiny_dataset, tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    (output / "run.json").write_text(json.dumps({"builder": "V4DResNet18"}))
    result = run_tool("train", *train_command(tiny_dataset, output, 1)[3:])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "builder: \"V4DResNet18\" recorded, \"TSNResNet18\" now" in result.stderr
    assert sorted(os.listdir(output)) == [LOCK_FILE, "run.json"]  # the lock it held, nothing else


def test_a_truncated_checkpoint_is_named_and_resume_falls_back_to_the_one_before(tiny_dataset, run_of_two_epochs,
                                                                                   capsys):
    output = run_of_two_epochs
    newest = output / "epoch-002.weights.h5"
    newest.write_bytes(newest.read_bytes()[:5000])  # a disk that filled up mid-save, before atomic writes
    capsys.readouterr()
    history = _train(tiny_dataset, output, 2)
    out = capsys.readouterr().out
    assert f"checkpoint {newest} cannot be read" in out and "resuming the run after epoch 1" in out
    assert history.epoch == [1] and epochs_logged(output) == [0, 1]  # epoch 2 again, its old row replaced
    keras.models.load_model(output / "last.keras").load_weights(newest)  # rewritten whole


def test_only_unreadable_checkpoints_never_restart_from_scratch_silently(tmp_path):
    model = _dense()
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    model.save_weights(tmp_path / "epoch-001.weights.h5")
    assert restore_newest_checkpoint(model, str(tmp_path), report=lambda *a, **k: None) == (
        1, str(tmp_path / "epoch-001.weights.h5"))
    (tmp_path / "epoch-002.weights.h5").write_bytes(b"not hdf5")
    _dense(5).save_weights(tmp_path / "epoch-003.weights.h5")
    reports = []
    assert restore_newest_checkpoint(model, str(tmp_path), report=lambda text, **k: reports.append(text))[0] == 1
    assert "epoch-003.weights.h5 cannot be read" in reports[0] and "epoch-002.weights.h5 cannot be read" in reports[1]
    (tmp_path / "epoch-001.weights.h5").write_bytes(b"")
    with pytest.raises(RunFolderError, match="none of the 3 checkpoint"):
        restore_newest_checkpoint(model, str(tmp_path), report=lambda *a, **k: None)


def test_claim_run_folder_records_compares_and_refuses_a_folder_of_an_earlier_version(tmp_path):
    record = {"builder": "V4DResNet18", "sampling": {"stride": 4, "crop_size": 224}, "batch_size": 8}
    assert claim_run_folder(str(tmp_path / "new"), record) == "new"
    assert json.loads((tmp_path / "new" / "run.json").read_text()) == record
    assert claim_run_folder(str(tmp_path / "new"), record) == "resumed"
    other = {**record, "sampling": {"stride": 8, "crop_size": 224}}
    assert record_differences(record, other) == ["sampling.stride: 4 recorded, 8 now"]
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "epoch-004.weights.h5").write_bytes(b"x")
    with pytest.raises(RunFolderError, match="without run.json"):
        claim_run_folder(str(legacy), record)
    assert claim_run_folder(str(legacy), record, overwrite=True) == "overwritten"
    assert sorted(os.listdir(legacy)) == ["run.json"]


def test_trim_logs_keeps_the_completed_epochs_and_drops_a_torn_row(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss\n0,1.5\n1,1.2\n2,1.1\n3,0.")
    (tmp_path / "skipped.csv").write_text("epoch,data,status,video,reason\n1,training,skipped,a.mp4,x\n"
                                          "3,training,skipped,b.mp4,y\n")
    trim_logs(str(tmp_path), 2)
    with open(tmp_path / "history.csv") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["0", "1"]
    assert (tmp_path / "skipped.csv").read_text().splitlines()[1:] == ["1,training,skipped,a.mp4,x"]


class _PoisonAtEpoch(keras.callbacks.Callback):
    """Writes a NaN into one kernel as epoch ``epoch`` (0-based) begins: the next loss is NaN."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            kernel = self.model.trainable_weights[0]
            kernel.assign(np.full(kernel.shape, np.nan, np.float32))


def test_a_nan_loss_stops_the_run_and_keeps_the_last_finite_checkpoint(tiny_dataset, tmp_path):
    output = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as stopped:
        _train(tiny_dataset, output, 4, callbacks=[_PoisonAtEpoch(1)])
    message = str(stopped.value)
    assert "became nan at epoch 2, step 1" in message and "epoch-001.weights.h5" in message
    assert [epoch for epoch, _ in checkpoints(str(output))] == [1]  # no NaN checkpoint was written
    model = keras.models.load_model(output / "last.keras")
    assert all(np.isfinite(w).all() for w in model.get_weights())
    history = _train(tiny_dataset, output, 2)  # the same command resumes from the finite checkpoint
    assert history.epoch == [1] and np.isfinite(history.history["loss"]).all()
    assert epochs_logged(output) == [0, 1]


def test_the_cli_stops_a_diverging_learning_rate_with_exit_code_3(tiny_dataset, tmp_path):
    output = tmp_path / "run"
    result = subprocess.run(train_command(tiny_dataset, output, 3) + ["--lr=1e30", "--notensorboard"], env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "diverged: the training loss became nan at epoch 1, step" in result.stderr
    assert not checkpoints(str(output)) and not (output / "last.keras").exists()
