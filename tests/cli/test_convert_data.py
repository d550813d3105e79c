"""``keras-v4d convert-data`` when things go wrong, run as a real process: a shard that cannot be
written, a worker killed, the tool killed, Ctrl-C and SIGTERM. It must never hang, always name what
was not written, and leave no worker running and no partial shard under a shard's name.

The workers are held mid-conversion by a named pipe given as a rawframe file: a worker that reads it
waits until the test writes; the test's open of the pipe returns once a worker has opened it."""

import contextlib
import errno
import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_v4d.records.folder_lock import LOCK_FILE
from tests.commands import run_tool

pytestmark = [pytest.mark.slow, pytest.mark.serial,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="processes are looked up in /proc")]

TIMEOUT = 180  # seconds; the tool and each worker import TensorFlow, about 10 s on 2 busy cores


def start_tool(*args, preexec_fn=None):
    """``python -m keras_v4d.cli.convert_data args…`` in a session of its own (its workers with it), with
    Ctrl-C's default action whatever this process inherited (a job started in the background of a
    non-interactive shell ignores SIGINT, and Python keeps an ignored SIGINT ignored)."""
    def prepare():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if preexec_fn is not None:
            preexec_fn()

    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONFAULTHANDLER": "1"}
    return subprocess.Popen([sys.executable, "-m", "keras_v4d.cli.convert_data", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=prepare)


def state(pid):
    """The process's state letter (``Z``: ended, not yet reaped), or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def alive(pid):
    return state(pid) not in (None, "Z", "X")


def workers_of(pid):
    """The conversion workers (spawned multiprocessing children) of process ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read()
        except (OSError, ValueError):
            continue
        if parent == pid and b"spawn_main" in command:
            found.append(int(entry))
    return found


def wait_for_reader(fifo, deadline):
    """Opens the named pipe for writing once a worker has opened it for reading."""
    while time.monotonic() < deadline:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as error:
            if error.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
        time.sleep(0.05)
    raise TimeoutError(f"no worker opened {fifo}")


@pytest.fixture
def held(tmp_path):
    """A rawframe list of ``n`` one-frame folders whose frame is a named pipe, one folder per shard."""
    def make(n):
        for i in range(n):
            (tmp_path / "frames" / f"v{i}").mkdir(parents=True)
            os.mkfifo(tmp_path / "frames" / f"v{i}" / "img_00001.jpg")
        (tmp_path / "list.txt").write_text("".join(f"frames/v{i} 1 {i}\n" for i in range(n)))
        return tmp_path / "list.txt", [tmp_path / "frames" / f"v{i}" / "img_00001.jpg" for i in range(n)]

    pipes = []
    yield make, pipes
    for descriptor in pipes:
        os.close(descriptor)


def hold(tool, fifos, pipes):
    """Waits until a worker reads each named pipe (so every worker is mid-shard); returns the workers."""
    deadline = time.monotonic() + TIMEOUT
    pipes += [wait_for_reader(fifo, deadline) for fifo in fifos]
    return workers_of(tool.pid)


def finish(tool):
    """The tool's exit code and output once it ends on its own (it must not hang)."""
    try:
        out, err = tool.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.kill(tool.pid, signal.SIGABRT)  # faulthandler: every thread's stack on stderr
        _, err = tool.communicate(timeout=30)
        kill_all(tool)
        raise AssertionError(f"convert-data hung:\n{err[-6000:]}") from None
    return tool.returncode, out, err


def shard_folder_names(folder):
    """The shards in ``folder`` under a shard's name (temporary files are hidden: ``.tmp-…``)."""
    return sorted(name for name in os.listdir(folder) if name.endswith(".tfrecord") and not name.startswith("."))


def kill_all(tool):
    """Ends whatever of the tool's session is left after a failed test."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(tool.pid, signal.SIGKILL)
    if tool.returncode is None:
        tool.communicate()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from keras_v4d.data import write_video

    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    for i in range(3):
        write_video(str(root / f"{i}.mp4"), rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8))
    (root / "list.txt").write_text("0.mp4 0\n1.mp4 1\n2.mp4 0\n")
    return root / "list.txt"


def test_an_output_folder_that_cannot_be_made_is_named(videos, tmp_path):
    (tmp_path / "plain_file").write_text("")
    result = run_tool("convert_data", f"--annotations={videos}", f"--output={tmp_path / 'plain_file' / 'rec'}",
                      timeout=TIMEOUT)
    assert result.returncode == 2, result.stderr
    assert f"error: --output: cannot create the folder {tmp_path / 'plain_file'}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_shard_that_cannot_be_written_is_named_and_the_earlier_set_is_kept(videos, tmp_path):
    earlier = {f"rec-0000{i}-of-00003.tfrecord": f"earlier shard {i}".encode() for i in range(3)}
    for name, data in earlier.items():
        (tmp_path / name).write_bytes(data)

    def disk_full():  # files may grow to 8 kB: a full disk as the worker's writes see it (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    tool = start_tool(f"--annotations={videos}", f"--output={tmp_path / 'rec'}", "--num_shards=2", "--workers=1",
                      preexec_fn=disk_full)
    code, _, err = finish(tool)
    assert code == 4, err
    assert f"error: cannot write shard {tmp_path}/rec-00000-of-00002.tfrecord: " in err and "File too large" in err
    assert "none of its 2 shard(s) was written" in err and "Traceback" not in err
    assert sorted(set(os.listdir(tmp_path)) - {LOCK_FILE}) == sorted(earlier)  # no new shard, no temporary file
    assert all((tmp_path / name).read_bytes() == data for name, data in earlier.items())


def test_a_worker_killed_mid_conversion_stops_it_naming_the_shard(held, tmp_path):
    make, pipes = held
    listing, fifos = make(2)
    tool = start_tool(f"--annotations={listing}", f"--output={tmp_path / 'out' / 'rec'}", "--num_shards=2",
                      "--workers=2")
    try:
        workers = hold(tool, fifos, pipes)
        assert len(workers) == 2
        assert any(name.startswith(".tmp-") for name in os.listdir(tmp_path / "out"))  # both shards under way
        os.kill(workers[0], signal.SIGKILL)
        code, _, err = finish(tool)
    finally:
        kill_all(tool)
    assert code == 4, err
    assert f"error: a worker process (pid {workers[0]}) was killed (SIGKILL; " in err
    assert f"while writing {tmp_path}/out/rec-0000" in err and "none of its 2 shard(s) was written" in err
    assert "Traceback" not in err
    assert not any(alive(pid) for pid in workers)  # the other worker, still reading, was stopped
    assert set(os.listdir(tmp_path / "out")) <= {LOCK_FILE}  # the lock it held, no shard


def test_killing_the_tool_ends_its_workers(held, tmp_path):
    make, pipes = held
    listing, fifos = make(2)
    tool = start_tool(f"--annotations={listing}", f"--output={tmp_path / 'rec'}", "--num_shards=2", "--workers=2")
    try:
        workers = hold(tool, fifos, pipes)
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
        tool.kill()  # SIGKILL: no chance to stop them itself
        tool.wait(timeout=60)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in workers), [(pid, state(pid)) for pid in workers]
    finally:
        kill_all(tool)
    assert shard_folder_names(tmp_path) == []  # only the temporary files of the killed run, no shard


@pytest.mark.parametrize("stop, code, said", [("ctrl-c", 130, "interrupted"), ("sigterm", 143, "terminated (SIGTERM)")])
def test_ctrl_c_and_sigterm_stop_the_workers_and_leave_no_shard(held, tmp_path, stop, code, said):
    make, pipes = held
    listing, fifos = make(1)
    (tmp_path / ".tmp-99999-rec-00000-of-00001.tfrecord").write_bytes(b"a killed run's")
    tool = start_tool(f"--annotations={listing}", f"--output={tmp_path / 'rec'}", "--num_shards=1", "--workers=1")
    try:
        workers = hold(tool, fifos, pipes)
        assert len(workers) == 1
        if stop == "ctrl-c":
            os.killpg(tool.pid, signal.SIGINT)  # a terminal sends it to the whole process group
        else:
            tool.send_signal(signal.SIGTERM)
        returned, _, err = finish(tool)
    finally:
        kill_all(tool)
    assert returned == code, err
    assert f"error: {said}: the workers were stopped" in err and "Traceback" not in err
    assert not alive(workers[0])
    # the old temporary file went at the start (the lock it held stays: an empty claim, no data)
    assert sorted(set(os.listdir(tmp_path)) - {LOCK_FILE}) == ["frames", "list.txt"]
