"""Export outputs written whole or not at all: ``ExportError`` for a failed export, a folder swapped in
once complete (``replace_folder``), a file renamed over the old one once converted (``write_file``)."""

import contextlib
import os
import shutil

from keras_v4d.records.atomic import (
    TEMPORARY_PREFIX,
    WRITE_FAILURES,
    failed_write_errno,
    open_atomically,
    temporary_path,
)


class ExportError(RuntimeError):
    """A SavedModel, TFLite or ONNX export that failed; the message names the output path and the cause."""


@contextlib.contextmanager
def failure_named(what, kept):
    """Any exception of the block as an ``ExportError``: ``"{what} failed (Type: message); {kept}"``."""
    try:
        yield
    except Exception as error:  # noqa: BLE001  (TensorFlow and its converters raise many kinds; each is a failure)
        code = failed_write_errno(error)
        if code in WRITE_FAILURES:  # the disk, not the model: say so in a user's words
            raise ExportError(f"{what} failed: it could not be written ({WRITE_FAILURES[code]}); {kept}") from error
        raise ExportError(f"{what} failed ({type(error).__name__}: {error}); {kept}") from error


def write_file(path, data):
    """``data`` (bytes) to ``path`` under a temporary name, renamed over ``path`` once on disk; returns ``path``."""
    with open_atomically(path, "wb") as handle:
        handle.write(data)
    return path


def replace_folder(path, write):
    """``write(temporary folder)`` beside ``path``, then the result swapped in for ``path``: the old
    folder renamed away, the new one renamed in, the old one removed. A failure before the swap
    leaves ``path`` as it was and removes the temporary folder."""
    final = os.path.abspath(os.fspath(path))
    if os.path.exists(final) and not os.path.isdir(final):
        raise ExportError(f"export to {path}: it exists and is not a folder")
    folder, name = os.path.split(final)
    os.makedirs(folder, exist_ok=True)
    temporary = temporary_path(final)
    previous = os.path.join(folder, f"{TEMPORARY_PREFIX}{os.getpid()}-previous-{name}")
    for stale in (temporary, previous):  # left by a killed export of this process id
        shutil.rmtree(stale, ignore_errors=True)
    try:
        write(temporary)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    try:
        if os.path.isdir(final):
            os.rename(final, previous)
        try:
            os.rename(temporary, final)
        except BaseException:
            if os.path.isdir(previous):
                os.rename(previous, final)
            raise
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    shutil.rmtree(previous, ignore_errors=True)
