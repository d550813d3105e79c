"""Long runs, second part: one process per run folder, bounded disk, a write that fails in the user's
terms, and a console with only the tool's lines."""

import json
import os
import re
import resource
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from keras_v4d import _compat
from keras_v4d.records.atomic import TEMPORARY_PREFIX
from keras_v4d.records.folder_lock import LOCK_FILE
from keras_v4d.records.sampling import VideoSampling
from keras_v4d.training import Recipe, RunOutput, TrainingData, train
from keras_v4d.training.run_folder import checkpoints, prune_checkpoints
from tests.commands import run_tool
from tests.conftest import tensorflow_only
from tests.training.runs import epochs_logged, train_command

pytestmark = tensorflow_only()
TINY = VideoSampling(train_units=2, frames_per_unit=2, stride=2, crop_size=32, short_side=32)
# As a user's shell would start the tool: nothing about TensorFlow's log set.
USER_ENV = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
TF_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] ", re.MULTILINE)


def _holder_pid(folder):
    try:
        return json.loads((folder / LOCK_FILE).read_text()).get("pid")
    except (OSError, ValueError):
        return None


@pytest.mark.serial  # races two processes for the folder: the first must still run when the second starts
def test_a_second_run_into_a_busy_folder_is_refused_at_once_and_the_first_one_finishes_alone(tiny_dataset,
                                                                                           tmp_path):
    output = tmp_path / "run"
    first = subprocess.Popen(train_command(tiny_dataset, output, 3) + ["--notensorboard"], env=USER_ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while _holder_pid(output) != first.pid and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, "the first run ended before the second started"
    second = run_tool("train", *train_command(tiny_dataset, output, 3)[3:], "--notensorboard")
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert (f"error: --output: {output} is in use by another process: train, pid {first.pid} on "
            f"{socket.gethostname()}, started 20") in second.stderr
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-2000:]
    history = (output / "history.csv").read_text().splitlines()
    assert sum(line.startswith("epoch,") for line in history) == 1 and epochs_logged(output) == [0, 1, 2]
    # The console of a CPU run with nothing set in the environment: the tool's lines only.
    assert not TF_LOG_LINE.search(stderr) and "CUDA" not in stderr and stderr.strip() == "", stderr[-2000:]
    assert stdout.startswith("device: CPU: ") and "no GPU that TensorFlow can use" in stdout.splitlines()[0]


def test_tensorflow_logs_show_when_asked_for_and_only_tools_hide_them():
    # (hidden by default: the console of the run above)
    shown = subprocess.run([sys.executable, "-m", "keras_v4d.cli.train", "--tf_logs", "--help"], env=USER_ENV,
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and TF_LOG_LINE.search(shown.stderr), shown.stderr[-2000:]
    assert "--tf_logs: Show TensorFlow's own C++ log lines" in shown.stdout
    assert _compat.is_tool_process(["/usr/bin/keras-v4d", "train"], [])
    assert _compat.is_tool_process(["-m"], ["python", "-m", "keras_v4d.cli.export", "--output=x"])
    assert not _compat.is_tool_process(["train.py"], ["python", "train.py"])
    assert not _compat.is_tool_process(["-c"], ["python", "-c", "import keras_v4d"])


def test_keep_checkpoints_keeps_the_newest_and_the_best_and_a_command_may_change_it(tiny_dataset, tmp_path):
    output = tmp_path / "run"

    def run(epochs, keep):
        return train("TSNResNet18", TrainingData(str(tiny_dataset), val=str(tiny_dataset), num_classes=2),
                     RunOutput(str(output), tensorboard=False, verbose=0, keep_checkpoints=keep), sampling=TINY,
                     recipe=Recipe(epochs=epochs, batch_size=2, lr=0.1))

    values = run(4, keep=2).history["val_top1"]
    assert [epoch for epoch, _ in checkpoints(str(output))] == [4, 3]
    best = json.loads((output / "best.json").read_text())
    assert best["metric"] == "val_top1" and best["epoch"] == 1 + int(np.argmax(values))  # the first best epoch
    assert best["value"] == pytest.approx(max(values))
    with h5py.File(output / "best.weights.h5", "r") as handle:  # a whole checkpoint, optimizer state and all
        assert "optimizer" in handle and "layers" in handle
    assert json.loads((output / "run.json").read_text())["keep_checkpoints"] == 2
    run(5, keep=3)  # the same run, resumed: keep_checkpoints may change and is recorded
    assert json.loads((output / "run.json").read_text())["keep_checkpoints"] == 3
    assert [epoch for epoch, _ in checkpoints(str(output))] == [5, 4, 3] and epochs_logged(output) == list(range(5))


def test_a_kill_while_pruning_leaves_the_newest_checkpoints(tmp_path, monkeypatch):
    for epoch in range(1, 6):
        (tmp_path / f"epoch-{epoch:03d}.weights.h5").write_bytes(b"weights")
    remove, removed = os.remove, []

    def killed_after_one(path):
        if removed:
            raise KeyboardInterrupt  # the process ends here
        removed.append(path)
        remove(path)

    monkeypatch.setattr(os, "remove", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        prune_checkpoints(str(tmp_path), 2)
    monkeypatch.undo()
    assert [epoch for epoch, _ in checkpoints(str(tmp_path))] == [5, 4, 3, 2]  # the oldest went first
    assert len(prune_checkpoints(str(tmp_path), 2)) == 2  # the next epoch's pruning finishes the job
    assert [epoch for epoch, _ in checkpoints(str(tmp_path))] == [5, 4]


def _file_size_limit(limit):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_checkpoint_that_cannot_be_written_stops_with_one_line_and_the_run_resumes(tiny_dataset, tmp_path):
    output = tmp_path / "run"
    assert run_tool("train", *train_command(tiny_dataset, output, 1)[3:], "--notensorboard").returncode == 0
    limited = subprocess.run(train_command(tiny_dataset, output, 2) + ["--notensorboard"], env=USER_ENV,
                             capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(1 << 20))
    assert limited.returncode == 4, limited.stderr[-3000:]
    (line,) = limited.stderr.strip().splitlines()  # one line, no library text
    assert line == (f"error: not written: {output / 'epoch-002.weights.h5'} could not be written: the file grew past "
                    "the largest file this process may write (a file size limit, ulimit -f); the run can resume "
                    f"from {output / 'epoch-001.weights.h5'} (the same command, once the cause is fixed)")
    assert not [name for name in os.listdir(output) if name.startswith(TEMPORARY_PREFIX)]
    resumed = run_tool("train", *train_command(tiny_dataset, output, 2)[3:], "--notensorboard")
    assert resumed.returncode == 0 and "resuming the run after epoch 1" in resumed.stdout
    assert epochs_logged(output) == [0, 1]
