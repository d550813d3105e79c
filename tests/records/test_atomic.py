"""Files written whole or not at all: a failing or killed writer leaves the previous file intact."""

import os
import signal
import subprocess
import sys

import pytest

from keras_v4d.records.atomic import TEMPORARY_PREFIX, open_atomically, remove_temporaries, write_atomically

pytestmark = pytest.mark.serial  # starts processes, sends signals or waits on time: run alone


def _leftovers(folder):
    return [name for name in os.listdir(folder) if name.startswith(TEMPORARY_PREFIX)]


def test_write_atomically_replaces_the_file_and_keeps_the_suffix(tmp_path):
    target = tmp_path / "model.weights.h5"
    target.write_bytes(b"old")
    seen = []

    def write(temporary):
        seen.append(temporary)
        with open(temporary, "wb") as handle:
            handle.write(b"new")

    assert write_atomically(str(target), write) == str(target)
    assert target.read_bytes() == b"new"
    assert seen[0].endswith(".weights.h5") and os.path.dirname(seen[0]) == str(tmp_path)
    assert not _leftovers(tmp_path)


def test_a_failing_writer_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "last.keras"
    target.write_bytes(b"previous good state")

    def half_then_fail(temporary):
        with open(temporary, "wb") as handle:
            handle.write(b"torn")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomically(str(target), half_then_fail)
    assert target.read_bytes() == b"previous good state"
    assert not _leftovers(tmp_path)

    with pytest.raises(RuntimeError):
        with open_atomically(str(tmp_path / "history.csv"), "w") as handle:
            handle.write("epoch,loss\n0,1.0\n")
            raise RuntimeError("killed mid-write")
    assert not (tmp_path / "history.csv").exists() and not _leftovers(tmp_path)
    with pytest.raises(ValueError, match="mode"):
        with open_atomically(str(tmp_path / "x.csv"), "a"):
            pass


def test_a_writer_killed_mid_write_leaves_the_previous_file_whole(tmp_path):
    target = tmp_path / "big.bin"
    target.write_bytes(b"A" * 1000)
    code = (f"import time\nfrom keras_v4d.records.atomic import open_atomically\n"
            f"with open_atomically({str(target)!r}, 'wb') as h:\n"
            f"    h.write(b'B' * 100000); h.flush(); print('writing', flush=True); time.sleep(60)\n")
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert target.read_bytes() == b"A" * 1000  # the previous file, whole
    (left,) = _leftovers(tmp_path)  # the killed writer's temporary file, never under the final name
    assert remove_temporaries(str(tmp_path)) == [str(tmp_path / left)]
    assert not _leftovers(tmp_path) and target.exists()
