"""One process per output folder (records.folder_lock): a second holder is refused at once, naming
the first; a killed holder leaves no stale lock; without flock the lock file is the lock."""

import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from keras_v4d.records import folder_lock as module
from keras_v4d.records.folder_lock import FolderBusyError, folder_lock


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    with folder_lock(tmp_path / "run", "train"):
        with pytest.raises(FolderBusyError, match=rf"in use by another process: train, pid {os.getpid()} on "
                                                  rf"{socket.gethostname()}, started 20"):
            folder_lock(tmp_path / "run", "export").acquire()
    with folder_lock(tmp_path / "run", "export") as lock:  # released: free again
        assert json.loads(open(lock.path).read())["tool"] == "export"


@pytest.mark.serial
def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    code = ("import sys, time\nfrom keras_v4d.records.folder_lock import folder_lock\n"
            f"lock = folder_lock({str(tmp_path)!r}, 'train').acquire()\nprint('held', flush=True)\ntime.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusyError, match=f"pid {holder.pid} "):
            folder_lock(tmp_path, "train").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    with folder_lock(tmp_path, "train"):
        pass


@pytest.fixture
def no_flock(monkeypatch):
    def unsupported(*_):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", unsupported)


def test_without_flock_the_lock_file_is_the_lock(tmp_path, no_flock):
    with folder_lock(tmp_path, "convert-data") as lock:
        with pytest.raises(FolderBusyError, match="convert-data, pid"):
            folder_lock(tmp_path, "train").acquire()
        assert os.path.exists(lock.path)
    assert not os.path.exists(lock.path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = {"tool": "train", "pid": int(dead.stdout), "host": socket.gethostname(), "started": "then"}
    (tmp_path / module.LOCK_FILE).write_text(json.dumps(stale))
    with folder_lock(tmp_path, "train"):  # its process is gone: taken over
        pass
    (tmp_path / module.LOCK_FILE).write_text(json.dumps({**stale, "host": "elsewhere"}))
    with pytest.raises(FolderBusyError, match="on elsewhere"):
        folder_lock(tmp_path, "train").acquire()
