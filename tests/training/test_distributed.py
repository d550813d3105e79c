"""MirroredStrategy on 2 logical CPUs and MultiWorkerMirroredStrategy with 2 local worker processes."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.training.runs import write_tiny_dataset

pytestmark = pytest.mark.serial  # starts processes, sends signals or waits on time: run alone

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}


def test_mirrored_strategy_on_two_devices_follows_the_one_device_loss_trajectory():
    result = subprocess.run([sys.executable, os.path.join(HERE, "mirrored_equivalence.py")], env=ENV,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    assert runs["mirrored"]["replicas"] == 2 and runs["one_device"]["replicas"] == 1
    one, two = np.array(runs["one_device"]["losses"]), np.array(runs["mirrored"]["losses"])
    assert len(one) == len(two) == 12
    assert one[-1] < one[0]  # it trains
    np.testing.assert_allclose(two, one, rtol=1e-4)  # same trajectory, float32 reduction-order tolerance


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_training_with_two_local_processes_sharing_one_output(tmp_path):
    listing = write_tiny_dataset(tmp_path)
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        command = [sys.executable, "-m", "keras_v4d.cli.train", "--model=TSNResNet18",
                   f"--train={listing}",
                   "--num_classes=2", f"--output={tmp_path / 'run'}", "--epochs=2", "--batch_size=2",
                   "--num_units=2", "--frames_per_unit=2", "--stride=2", "--crop_size=32", "--short_side=32",
                   "--strategy=multiworker"]
        processes.append(subprocess.Popen(command, env={**ENV, "TF_CONFIG": json.dumps(tf_config)},
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
        assert "done: 2 epochs" in stdout
    import keras_v4d

    def trainable(folder):
        model = keras_v4d.TSNResNet18(classes=2, input_shape=(None, 2, None, None, 3))
        model.load_weights(folder / "epoch-002.weights.h5")
        return [v.numpy() for v in model.trainable_weights]

    # Both workers applied the same all-reduced updates: identical trainable weights after 2 epochs
    # (BN moving statistics are per worker by design and are not compared).
    # One --output: the chief (worker 0) writes the run there, worker 1 its copies under workers/.
    first, second = trainable(tmp_path / "run"), trainable(tmp_path / "run" / "workers" / "worker-1")
    assert sorted(os.listdir(tmp_path / "run" / "workers")) == ["worker-1"]
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 3 and all(np.isfinite(float(row.split(",")[1])) for row in history[1:])
    for a, b in zip(first, second):
        np.testing.assert_allclose(a, b, atol=1e-6)
