import csv
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import keras_v4d
from keras_v4d.data import write_video
from keras_v4d.training import MeanClassAccuracy, compile_for_training, paper_learning_rate, paper_optimizer


def test_paper_learning_rate_drops_by_ten_at_35_60_80():
    schedule = paper_learning_rate(steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 349, 350, 599, 600, 800, 999)]
    np.testing.assert_allclose(rates, [1e-2, 1e-2, 1e-3, 1e-3, 1e-4, 1e-5, 1e-5], rtol=1e-6)


def test_weight_decay_skips_batchnorm_and_biases():
    model = keras_v4d.V4DResNet18(classes=3, input_shape=(2, 2, 32, 32, 3))
    optimizer = paper_optimizer(steps_per_epoch=1, weight_decay=0.1, base_lr=1.0, momentum=0.0)
    optimizer.build(model.trainable_variables)
    decayed = {v.path for v in model.trainable_variables if optimizer._use_weight_decay(v)}
    assert any("conv/kernel" in p for p in decayed) and "predictions/kernel" in decayed
    assert not any(p.endswith(("gamma", "beta", "bias")) for p in decayed)
    assert optimizer.global_clipnorm == 20.0


def test_mean_class_accuracy_weighs_classes_equally():
    metric = MeanClassAccuracy(3)
    # class 0: 3/4 right, class 1: 0/1, class 2 absent  →  (0.75 + 0) / 2
    metric.update_state(np.array([0, 0, 0, 0, 1]), np.eye(3)[[0, 0, 0, 1, 0]])
    assert float(metric.result()) == pytest.approx(0.375)


def test_compiled_model_fits_and_reports_video_metrics():
    model = keras_v4d.TSNResNet18(classes=3, input_shape=(2, 2, 32, 32, 3))
    compile_for_training(model, steps_per_epoch=2)
    x = np.random.rand(4, 2, 2, 32, 32, 3).astype("float32")
    history = model.fit(x, np.array([0, 1, 2, 0]), batch_size=2, epochs=1, verbose=0)
    assert {"loss", "top1", "top3", "mean_class_accuracy"} <= set(history.history)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    lines = []
    for i in range(4):
        frames = np.full((12, 32, 32, 3), 40 * i, np.uint8)
        write_video(str(root / f"v{i}.mp4"), frames)
        lines.append(f"v{i}.mp4 {i % 2}")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root / "list.txt"


def _train_command(listing, output, epochs):
    return [sys.executable, "-m", "keras_v4d.cli.train", "--model=TSNResNet18", f"--train={listing}", "--num_classes=2",
            f"--output={output}", f"--epochs={epochs}", "--batch_size=2", "--num_units=2", "--frames_per_unit=2",
            "--stride=2", "--crop_size=32", "--short_side=32"]


def _epochs_logged(output):
    path = os.path.join(output, "history.csv")
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_killed_training_resumes_from_its_last_checkpoint(tiny_dataset, tmp_path):
    output, epochs = str(tmp_path / "run"), 5
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    first = subprocess.Popen(_train_command(tiny_dataset, output, epochs), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(_epochs_logged(output)) < 2 and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert first.poll() is None, "training ended before it could be interrupted"
    first.send_signal(signal.SIGKILL)
    first.wait()
    done_before_kill = len(_epochs_logged(output))
    assert 2 <= done_before_kill < epochs
    second = subprocess.run(_train_command(tiny_dataset, output, epochs), env=env, capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    started_at = int(second.stdout.split("Epoch ", 1)[1].split("/", 1)[0])
    assert started_at > done_before_kill  # resumed, did not start over at epoch 1
    assert _epochs_logged(output)[-1] == epochs - 1  # same number of completed epochs as an uninterrupted run
    assert os.path.exists(os.path.join(output, f"epoch-{epochs:03d}.weights.h5"))
    assert keras.models.load_model(os.path.join(output, "last.keras")).output.shape == (None, 2)


def test_train_cli_rejects_bad_arguments(tiny_dataset, tmp_path):
    bad_model = subprocess.run(_train_command(tiny_dataset, tmp_path, 1) + ["--model=ResNet9000"],
                               capture_output=True, text=True, timeout=120)
    assert bad_model.returncode == 2 and "--model must be one of" in bad_model.stderr
    missing = subprocess.run(_train_command(tmp_path / "nope.txt", tmp_path, 1), capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == 2 and "nope.txt" in missing.stderr
