"""Files written whole or not at all: a temporary name in the same folder, flushed to disk, then
renamed over the final name (``os.replace`` is atomic on POSIX and Windows within one file system).

A kill, a full disk or an exception while writing leaves the previous file as it was and no torn
one under the final name; the temporary file is removed when the writer fails, and
``remove_temporaries`` clears those a killed process left behind.

    write_atomically("run/last.keras", model.save)
    with open_atomically("run/history.csv", "w", newline="") as handle:
        handle.write(...)
"""

import contextlib
import errno
import os
import re

TEMPORARY_PREFIX = ".tmp-"

# Why a write fails, in a user's words, by errno (what the operating system or HDF5 reports).
WRITE_FAILURES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file grew past the largest file this process may write (a file size limit, ulimit -f)",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
}


class NotWrittenError(OSError):
    """A file could not be written: ``str()`` is one line naming it and why (``WRITE_FAILURES``)."""

    def __init__(self, path, reason):
        super().__init__(f"{path} could not be written: {reason}")
        self.path, self.reason = os.fspath(path), reason


def failed_write_errno(error):
    """The errno of a failed write: ``error.errno``, the one HDF5 writes into its message
    (``"… errno = 27, error message = 'File too large' …"``), or the one whose system text a library's
    message holds (TensorFlow's ``"…: No space left on device"``); None when there is none."""
    if isinstance(error, OSError) and isinstance(error.errno, int):
        return error.errno
    text = str(error)
    match = re.search(r"errno = (\d+)", text)
    if match:
        return int(match.group(1))
    return next((code for code in WRITE_FAILURES if os.strerror(code) in text), None)


def write_failure(error):
    """Why a write failed, in a user's words: ``WRITE_FAILURES`` by errno, else the system's
    text for it, else the first line of ``error``."""
    code = failed_write_errno(error)
    if code in WRITE_FAILURES:
        return WRITE_FAILURES[code]
    if code:
        return os.strerror(code)
    return (str(error).splitlines() or [type(error).__name__])[0][:200]


def temporary_path(path):
    """``folder/.tmp-<pid>-<name>``: same folder (so the rename stays on one file system), same
    suffix (Keras chooses the format from it: ``.keras``, ``.weights.h5``)."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f"{TEMPORARY_PREFIX}{os.getpid()}-{name}")


def _sync_folder(folder):
    if os.name != "posix":  # a folder cannot be opened for fsync on Windows; the rename is durable there
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sync_file(path):
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def _replacing(path):
    """Yields the temporary path for ``path``; renames it over ``path`` when the block ends, or
    removes it and re-raises when the block fails."""
    temporary = temporary_path(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    _sync_folder(os.path.dirname(os.path.abspath(path)))


def write_atomically(path, write):
    """Calls ``write(temporary)`` and renames the file it wrote to ``path`` once it is on disk.

    ``write`` gets a path with ``path``'s suffix. On any exception the temporary file is removed,
    ``path`` is left as it was, and the exception goes on. Returns ``path``.
    """
    with _replacing(path) as temporary:
        write(temporary)
        _sync_file(temporary)
    return path


@contextlib.contextmanager
def open_atomically(path, mode="w", **kwargs):
    """``open`` for writing (``"w"`` or ``"wb"``) whose file appears at ``path`` only when the
    ``with`` block ends without an exception."""
    if mode not in ("w", "wb"):
        raise ValueError(f"open_atomically writes a whole file: mode must be 'w' or 'wb', got {mode!r}")
    with _replacing(path) as temporary:
        with open(temporary, mode, **kwargs) as handle:  # closed before the rename
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def remove_temporaries(folder):
    """Removes the temporary files (``.tmp-*``) that killed writers left in ``folder``; returns their
    paths. Call it only where no other process is writing into ``folder``."""
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(TEMPORARY_PREFIX) and os.path.isfile(path):
            with contextlib.suppress(OSError):
                os.remove(path)
                removed.append(path)
    return removed
