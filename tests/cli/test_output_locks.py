"""One process per output folder for every tool that writes one: while another process holds the
folder (records.folder_lock), each tool stops before writing, naming that process (exit code 2)."""

import os

import numpy as np
import pytest

from keras_v4d.data import write_video
from keras_v4d.models import build_resnet3d
from keras_v4d.records.folder_lock import LOCK_FILE, folder_lock
from tests.commands import run_tool
from tests.conftest import tensorflow_only

pytestmark = tensorflow_only()
SAMPLING = ["--num_units=2", "--train_units=2", "--frames_per_unit=2", "--stride=2", "--crop_size=32",
            "--short_side=32", "--num_crops=1"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("locks")
    build_resnet3d(18, "v4d", classes=2, input_shape=(None, 2, None, None, 3), width=0.25).save(root / "m.keras")
    write_video(str(root / "v.mp4"), np.zeros((12, 32, 32, 3), np.uint8))
    (root / "list.txt").write_text("v.mp4 0\n")
    return root


def test_every_tool_that_writes_a_folder_refuses_one_another_process_holds(inputs, tmp_path):
    out = tmp_path / "out"
    model = f"--checkpoint={inputs / 'm.keras'}"
    tools = {
        "evaluate": ["evaluate", model, f"--data={inputs / 'list.txt'}", f"--output={out}", *SAMPLING],
        "predict": ["predict", model, "--timeline", f"--output_dir={out}", *SAMPLING, inputs / "v.mp4"],
        "features": ["features", model, f"--output_dir={out}", *SAMPLING, inputs / "v.mp4"],
        "export": ["export", model, f"--output={out}", "--formats=saved_model"],
        "convert_data": ["convert_data", f"--annotations={inputs / 'list.txt'}", f"--output={out / 'rec'}"],
    }
    with folder_lock(out, "train"):
        for name, (module, *args) in tools.items():
            result = run_tool(module, *args)
            assert result.returncode == 2, (name, result.stderr[-2000:])
            assert f"{out} is in use by another process: train, pid {os.getpid()} on " in result.stderr, name
            assert "Traceback" not in result.stderr and os.listdir(out) == [LOCK_FILE], name  # nothing written
    features = run_tool("features", model, f"--output_dir={out}", *SAMPLING, inputs / "v.mp4")  # free again
    assert features.returncode == 0 and (out / "features.npz").exists(), features.stderr[-2000:]
