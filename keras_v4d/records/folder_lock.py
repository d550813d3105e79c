"""One process per output folder: an exclusive lock held for as long as a tool writes there.

``with folder_lock("runs/v4d", "train"):`` takes an exclusive ``flock`` on ``runs/v4d/.lock``; the
kernel drops it when the process ends in any way (a kill, a crash), so a killed run never blocks its
own resume. A second process refuses at once with ``FolderBusyError`` naming the holder (its pid,
host, start time and command, which the holder writes into the lock file).

On a file system without ``flock`` (some network file systems answer ``ENOLCK`` or
``EOPNOTSUPP``; Linux NFS emulates it with POSIX locks where the server supports them), the lock file
itself is the lock: created exclusively, removed on exit; one left by a process that died on this
host is taken over, one from another host is refused, naming that host — delete it once you know
that run is gone.
"""

import datetime
import errno
import fcntl
import json
import os
import socket
import sys

LOCK_FILE = ".lock"
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


class FolderBusyError(RuntimeError):
    """Another process holds the folder; the message names it."""


def _holder(tool):
    return {"tool": tool, "pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)[:500]}


def _read_holder(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def _busy(folder, holder):
    if not holder:
        return FolderBusyError(f"{folder} is in use by another process (its lock file names none)")
    return FolderBusyError(
        f"{folder} is in use by another process: {holder.get('tool', '?')}, pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, started {holder.get('started', '?')} ({holder.get('command', '')}); "
        f"wait for it to end or use another folder")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """The lock on ``folder`` for ``tool`` (a context manager; ``release()`` ends it early)."""

    def __init__(self, folder, tool):
        self.folder, self.tool = os.fspath(folder), tool
        self.path = os.path.join(self.folder, LOCK_FILE)
        self.handle = None
        self.exclusive_file = False

    def acquire(self):
        """Takes the folder (creating it), or raises ``FolderBusyError`` naming the process that holds it;
        returns ``self``."""
        os.makedirs(self.folder, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise _busy(self.folder, _read_holder(self.path)) from None
        except OSError as error:
            handle.close()
            if error.errno not in _UNSUPPORTED:
                raise
            return self._acquire_file()
        handle.seek(0)
        handle.truncate()
        json.dump(_holder(self.tool), handle)
        handle.flush()
        self.handle = handle
        return self

    def _acquire_file(self):
        """The lock without ``flock``: the lock file created exclusively, holding the holder."""
        if os.path.getsize(self.path) == 0:
            os.remove(self.path)  # the empty file acquire() opened
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_holder(self.path)
                if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int) \
                        and not _alive(holder["pid"]):
                    os.remove(self.path)  # its process is gone: a stale lock
                    continue
                raise _busy(self.folder, holder) from None
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(_holder(self.tool), handle)
            self.exclusive_file = True
            return self
        raise _busy(self.folder, _read_holder(self.path))

    def release(self):
        """Gives the folder back (and removes the lock file where the file itself was the lock)."""
        if self.handle is not None:
            self.handle.close()  # closing the descriptor drops the flock
            self.handle = None
        if self.exclusive_file:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
            self.exclusive_file = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def folder_lock(folder, tool):
    """A ``FolderLock`` on ``folder`` for ``tool`` (``with folder_lock(path, "train"): …``)."""
    return FolderLock(folder, tool)
