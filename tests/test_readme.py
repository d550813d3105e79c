"""The README's and the guides' Python examples run as written, each in a fresh interpreter.

Every fenced ```python block of README.md, docs/*.md and benchmarks/README.md runs unless the line just before its
fence is an HTML comment starting with ``no-test`` (``<!-- no-test: needs train.txt -->``): the mark for examples
that need files the reader brings (datasets, trained checkpoints, ImageNet weights). So the README
cannot drift from the code without a failing test.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NO_TEST = re.compile(r"^<!--\s*no-test\b.*-->$")


def python_blocks(text, name="README.md"):
    """``[(line number of the fence, code, runnable)]`` of the ```python blocks of ``text``."""
    lines = text.splitlines()
    blocks, index = [], 0
    while index < len(lines):
        if lines[index].strip() == "```python":
            end = index + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            if end == len(lines):
                raise ValueError(f"{name}:{index + 1}: a ```python block is never closed")
            previous = lines[index - 1].strip() if index else ""
            blocks.append((index + 1, "\n".join(lines[index + 1:end]) + "\n", not NO_TEST.match(previous)))
            index = end
        index += 1
    return blocks


RUNNABLE = [(f"{path.relative_to(ROOT)}:{line}", code)
            for path in DOCUMENTS
            for line, code, runnable in python_blocks(path.read_text(encoding="utf-8"), path.name) if runnable]


def test_the_parser_sees_marks_and_blocks():
    text = "a\n```python\nx = 1\n```\n<!-- no-test: needs data -->\n```python\nopen('data')\n```\n```bash\nls\n```\n"
    assert python_blocks(text) == [(2, "x = 1\n", True), (6, "open('data')\n", False)]
    assert sum(where.startswith("README.md:") for where, _ in RUNNABLE) >= 1, "the README keeps a runnable example"
    assert len(RUNNABLE) >= 3, "the README and guides should keep examples that run without external files"


@pytest.mark.slow
@pytest.mark.parametrize("where,code", RUNNABLE, ids=[where for where, _ in RUNNABLE])
def test_readme_example_runs_in_a_fresh_interpreter(where, code, tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
           "KERAS_V4D_CACHE": str(tmp_path / "cache")}  # no user cache: the examples need no weights file
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"{where} failed:\n{code}\n{result.stderr[-3000:]}"
