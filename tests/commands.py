"""Runs the package's command-line tools as real subprocesses."""

import os
import subprocess
import sys


def run_tool(name, *args, timeout=300):
    """``python -m keras_v4d.cli.<name> args…`` on the TensorFlow backend → ``CompletedProcess`` (text output)."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", f"keras_v4d.cli.{name}", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)
