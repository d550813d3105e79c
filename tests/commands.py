"""Runs the package's command-line tools in this process (``run_tool``): the tools are built to run
several times in one process, and a TensorFlow start costs seconds. Tests of the process itself (exit
on a signal, environment read at start-up, a kill mid-run) start it with ``subprocess``."""

import contextlib
import importlib
import io
import logging
import subprocess
import traceback

from keras_v4d.cli.main import SUBCOMMANDS, main


def run_tool(name, *args, timeout=None):
    """``keras-v4d <subcommand of the module name> args…`` in this process → ``CompletedProcess``: its exit
    code, and what it printed and logged to stdout and stderr. An exception that escapes the tool is, as
    in a subprocess, a traceback on stderr and exit code 1. ``timeout`` is accepted, not enforced."""
    command = next(sub for sub, (module, _) in SUBCOMMANDS.items() if module == name)
    argv = ["keras-v4d", command, *map(str, args)]
    stdout, stderr = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(stderr)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(argv)
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
            except Exception:  # noqa: BLE001 - what a subprocess would print before exiting with 1
                traceback.print_exc()
                code = 1
    finally:
        root.removeHandler(handler)
        importlib.import_module(f"keras_v4d.cli.{name}").FLAGS.unparse_flags()  # the next run starts afresh
    return subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())

