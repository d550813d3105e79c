"""Decoding on other hosts: a tf.data service dispatcher and two workers on 127.0.0.1, each a separate
process (`keras-v4d data-service`), feeding the trainer. Every video has its own colour, so the frames
that arrive say which video they are, independently of the service's own count."""

import csv
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from keras_v4d.cli.common import EXIT_TERMINATED
from keras_v4d.cli.main import main
from keras_v4d.data import normalize_imagenet, service_video_dataset, write_video
from tests.commands import run_tool
from tests.data import unit_sampling
from tests.training.runs import train_command, write_tiny_dataset

pytestmark = pytest.mark.serial  # starts processes, sends signals or waits on time: run alone

NUM_VIDEOS = 24
SAMPLING = unit_sampling(2, 2, 2, 32, 32)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def colour_list(tmp_path_factory):
    """24 videos of 8 frames, video i all of grey level 10·i; the list `video_i.mp4 label`."""
    root = tmp_path_factory.mktemp("service")
    for i in range(NUM_VIDEOS):
        write_video(str(root / f"video_{i}.mp4"), np.full((8, 32, 32, 3), 10 * i, np.uint8))
    (root / "list.txt").write_text("".join(f"video_{i}.mp4 {i % 2}\n" for i in range(NUM_VIDEOS)))
    return root / "list.txt"


def _identify(videos):
    """The video index of each element of a batch (B, U, T, S, S, 3), from its grey level."""
    levels = normalize_imagenet(tf.constant(10.0 * np.arange(NUM_VIDEOS), tf.float32, (NUM_VIDEOS, 1, 1, 1))
                                * tf.ones((1, 1, 1, 3))).numpy().reshape(NUM_VIDEOS, 3)
    means = np.asarray(videos).reshape(len(videos), -1, 3).mean(axis=1)
    return [int(np.argmin(np.abs(levels - mean).sum(axis=1))) for mean in means]


def _start(args, ready, processes):
    """Starts `keras-v4d data-service args` and waits (60 s at most) for its line starting with `ready`."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([sys.executable, "-m", "keras_v4d.cli.data_service", *args], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    processes.append(process)
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        if select.select([process.stdout], [], [], 1)[0]:
            line = process.stdout.readline()
            lines.append(line)
            if line.startswith(ready):  # from here on its output is read (and dropped) so that it never blocks
                assert any("listens on every network interface without authentication" in x for x in lines), lines
                threading.Thread(target=process.stdout.read, daemon=True).start()
                return process
            if not line and process.poll() is not None:
                break
    raise AssertionError(f"data-service {args} did not start:\n{''.join(lines)}")


def _cluster(colour_list):
    """A dispatcher and two workers serving the colour list: yields ``(address, [worker processes])``."""
    processes = []
    try:
        port = _free_port()
        _start(["--dispatcher", f"--port={port}", "--worker_timeout=1"], "dispatcher:", processes)
        workers = [_start(["--worker", f"--dispatcher_address=127.0.0.1:{port}", f"--port={_free_port()}",
                           "--host=127.0.0.1", f"--train={colour_list}"], "worker:", processes) for _ in range(2)]
        yield f"grpc://127.0.0.1:{port}", workers
    finally:
        running = [process for process in processes if process.poll() is None]
        for process in running:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=20)
    # SIGTERM stops a dispatcher or worker cleanly, with the exit code of a terminated process.
    assert [process.returncode for process in running] == [EXIT_TERMINATED] * len(running)


@pytest.fixture(scope="module")
def cluster(colour_list):
    yield from _cluster(colour_list)


@pytest.fixture
def own_cluster(colour_list):
    """A cluster for one test, which may kill its workers: ``next(own_cluster)`` starts it, ``next(own_cluster,
    None)`` stops it (else the test's end does)."""
    cluster = _cluster(colour_list)
    yield cluster
    cluster.close()


def _reading_threads():
    return [thread for thread in threading.enumerate() if thread.name == "keras_v4d_data_service"]


def test_every_video_once_per_epoch_in_a_new_order(cluster, colour_list, tmp_path):
    address, _ = cluster
    dataset, info, reader = service_video_dataset(address, str(colour_list), SAMPLING, batch_size=4)
    assert info.num_videos == NUM_VIDEOS
    epochs = [[i for videos, _ in dataset for i in _identify(videos)] for _ in range(2)]
    for seen in epochs:
        assert sorted(seen) == list(range(NUM_VIDEOS))
    assert reader.lost == [] and info.skip_log.counts() == {"skipped": 0, "repaired": 0}
    assert epochs[0] != epochs[1]  # a new permutation every epoch
    other = write_tiny_dataset(tmp_path)  # a list the workers were not started with
    with pytest.raises(tf.errors.OpError, match="does not serve this training list"):
        list(service_video_dataset(address, str(other), SAMPLING, batch_size=2)[0])
    assert not _reading_threads()


def test_only_video_file_lists_are_served(tmp_path):
    (tmp_path / "rawframes.txt").write_text("walk 12 0\n")
    with pytest.raises(ValueError, match="the tf.data service serves video files"):
        service_video_dataset("grpc://127.0.0.1:1", str(tmp_path / "rawframes.txt"))
    with pytest.raises(ValueError, match="expected grpc://HOST:PORT"):
        service_video_dataset("http://127.0.0.1:1", str(tmp_path / "rawframes.txt"))


def test_the_service_takes_a_sampling_and_options_records(tmp_path):
    write_video(str(tmp_path / "v.mp4"), np.zeros((4, 16, 16, 3), np.uint8))
    (tmp_path / "list.txt").write_text("v.mp4 0\n")
    with pytest.raises(TypeError, match="service_video_dataset: `sampling` must be a VideoSampling, got dict"):
        service_video_dataset("grpc://127.0.0.1:1", str(tmp_path / "list.txt"), {"train_units": 2})
    with pytest.raises(TypeError, match="service_video_dataset: `options` must be a DataOptions, got dict"):
        service_video_dataset("grpc://127.0.0.1:1", str(tmp_path / "list.txt"), options={"strict": True})
    with pytest.raises(ValueError, match="service_video_dataset: `batch_size` must be a positive int, got 0"):
        service_video_dataset("grpc://127.0.0.1:1", str(tmp_path / "list.txt"), batch_size=0)


def test_training_reads_every_video_once_per_epoch_from_the_service(cluster, colour_list, tmp_path):
    address, _ = cluster
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(train_command(colour_list, tmp_path / "run", 2) + [f"--data_service={address}",
                                                                             "--notensorboard"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    with open(tmp_path / "run" / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    assert [float(row["lost"]) for row in rows] == [0, 0] and [float(row["skipped"]) for row in rows] == [0, 0]
    assert f"{NUM_VIDEOS} training videos, {NUM_VIDEOS // 2} steps per epoch" in result.stdout
    assert "ended after" not in result.stdout


def test_a_trainer_without_a_dispatcher_stops_with_a_message_naming_the_address(colour_list, tmp_path, capsys):
    port = _free_port()
    started = time.monotonic()
    result = run_tool("train", *train_command(colour_list, tmp_path / "run", 1)[3:],
                      f"--data_service=grpc://127.0.0.1:{port}", timeout=120)
    assert result.returncode == 2 and f"no tf.data service dispatcher answers at grpc://127.0.0.1:{port}" in (
        result.stderr), result.stderr[-2000:]
    assert "Traceback" not in result.stderr and time.monotonic() - started < 100
    flags = train_command(colour_list, tmp_path / "run", 1)[3:]
    code = main(["keras-v4d", "train", *flags, "--data_service=host:port"])
    assert code == 2 and "data_service: expected grpc://HOST:PORT" in capsys.readouterr().err


def test_a_worker_needs_a_dispatcher_and_a_list(capsys):
    assert main(["keras-v4d", "data-service", "--worker", "--port=1"]) == 2
    assert "--worker needs --dispatcher_address" in capsys.readouterr().err
    assert main(["keras-v4d", "data-service"]) == 2
    assert "give exactly one of --dispatcher or --worker" in capsys.readouterr().err


def test_a_worker_killed_mid_epoch_loses_only_what_it_held_and_the_run_goes_on(own_cluster, colour_list, capfd):
    address, workers = next(own_cluster)
    dataset, _, reader = service_video_dataset(address, str(colour_list), SAMPLING, batch_size=1, stall=4)
    batches = iter(dataset)
    seen = _identify(next(batches)[0])
    workers[1].send_signal(signal.SIGKILL)
    seen += [i for videos, _ in batches for i in _identify(videos)]
    lost = sorted(int(video.split("_")[1].split(".")[0]) for video in reader.lost)
    assert len(seen) == len(set(seen))  # nothing twice
    assert sorted(seen + lost) == list(range(NUM_VIDEOS))  # the rest is counted as lost, by name
    print(f"lost to the killed worker: {len(lost)} of {NUM_VIDEOS}")
    after = [i for videos, _ in dataset for i in _identify(videos)]  # the next epoch, one worker
    assert sorted(after) == list(range(NUM_VIDEOS)) and reader.lost == []
    # An epoch whose job waits for the dead worker's task ends by the stall: its read is cancelled,
    # so no service client is left calling the dispatcher once the cluster is gone.
    assert not _reading_threads()
    next(own_cluster, None)
    capfd.readouterr()
    time.sleep(2)  # a client left behind would fail its heartbeat about once a second
    assert "Failed to heartbeat to dispatcher" not in capfd.readouterr().err
