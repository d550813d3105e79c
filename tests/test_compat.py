"""oneDNN on x86 CPUs (``keras_v4d._compat``): the rule TensorFlow follows, checked against
TensorFlow itself on the CPU at hand, and what ``import keras_v4d`` does with it."""

import os
import subprocess
import sys

import pytest

from keras_v4d import _compat

pytestmark = pytest.mark.skipif(not _compat.is_linux_x86(), reason="TensorFlow's oneDNN default: Linux x86")

ONEDNN_STATE = "from tensorflow.python.util import _pywrap_util_port; print('onednn', _pywrap_util_port.IsMklEnabled())"


def _python(code, onednn=None):
    """``code`` in a new interpreter with ``TF_ENABLE_ONEDNN_OPTS`` unset, or set to ``onednn``."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "default"}
    env.pop(_compat.ONEDNN_VARIABLE, None)
    if onednn is not None:
        env[_compat.ONEDNN_VARIABLE] = onednn
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_the_rule_is_tensorflows_on_this_cpu():
    # TensorFlow imported on its own, nothing set: its choice is the rule's for this CPU's flags.
    alone = _python("import tensorflow\n" + ONEDNN_STATE)
    expected = _compat.tensorflow_default_onednn(_compat.cpu_flags())
    assert f"onednn {expected}" in alone.stdout


def test_rule_follows_tensorflows_feature_list():
    avx2 = {"sse4_2", "avx", "avx2", "fma"}
    assert not _compat.tensorflow_default_onednn(avx2)
    # Skylake-X: AVX-512 alone is not enough
    assert not _compat.tensorflow_default_onednn(avx2 | {"avx512f", "avx512bw"})
    for flag in ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile"):
        assert _compat.tensorflow_default_onednn(avx2 | {flag})


def test_importing_keras_v4d_first_turns_onednn_on_on_every_x86_cpu():
    result = _python("import keras_v4d, os\n" + ONEDNN_STATE + "\nprint('set', os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"
                     "\nprint(keras_v4d._compat.describe_machine())")
    assert "onednn True" in result.stdout
    # Set only where TensorFlow would leave oneDNN off; left unset where its default is on already.
    expected = "None" if _compat.tensorflow_default_onednn(_compat.cpu_flags()) else "1"
    assert f"set {expected}" in result.stdout and "RuntimeWarning" not in result.stderr
    assert "oneDNN on" in result.stdout


def test_the_users_setting_wins():
    off = _python("import keras_v4d\n" + ONEDNN_STATE + "\nprint(keras_v4d._compat.describe_machine())", onednn="0")
    assert "onednn False" in off.stdout and "RuntimeWarning" not in off.stderr
    assert "oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)" in off.stdout


def test_says_so_when_tensorflow_came_first_with_onednn_off():
    # TensorFlow imported with oneDNN off (as on an AVX2 CPU by default), nothing set by the user any more.
    late = _python("import os, tensorflow\ndel os.environ['TF_ENABLE_ONEDNN_OPTS']\nimport keras_v4d\n" + ONEDNN_STATE,
                   onednn="0")
    assert "onednn False" in late.stdout
    assert "RuntimeWarning" in late.stderr and "Import keras_v4d before tensorflow" in late.stderr


def test_describe_machine_names_the_cpu_and_its_extensions(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse4_2 avx avx2 fma\n\n"
                       "processor\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse4_2 avx avx2 fma\n")
    assert _compat.cpu_model(str(cpuinfo)) == "AMD EPYC 7B13"
    assert _compat.cpu_flags(str(cpuinfo)) == {"fpu", "sse4_2", "avx", "avx2", "fma"}
    assert _compat.cpu_flags(str(tmp_path / "missing")) == frozenset()
    line = _compat.describe_machine()
    assert line.startswith(f"CPU: {_compat.cpu_model()}, {os.cpu_count()} cores; ") and "oneDNN o" in line
    assert ("AVX2" in line) == ("avx2" in _compat.cpu_flags())
