"""The evaluate and predict command-line tools, run as real subprocesses on real video files."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_v4d.data import load_video_views, write_video
from keras_v4d.inference import video_level_predict
from keras_v4d.models import build_resnet3d

SAMPLING = ["--num_units=4", "--train_units=2", "--frames_per_unit=2", "--stride=2", "--crop_size=32",
            "--short_side=32", "--num_crops=3"]
VIEW_ARGS = dict(num_units=4, frames_per_unit=2, stride=2, crop_size=32, short_side=32, num_crops=3)


def _tool(name, *args):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", f"keras_v4d.cli.{name}", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small V4D model saved as a training run would leave it, and a class-folder test set."""
    root = tmp_path_factory.mktemp("cli")
    run = root / "run"
    run.mkdir()
    model = build_resnet3d(18, "v4d", classes=2, input_shape=(None, 2, None, None, 3), width=0.25, name="v4d_small")
    model.save(run / "last.keras")
    (run / "class_names.txt").write_text("left\nright\n")
    rng = np.random.default_rng(0)
    videos = []
    for name in ("left", "right"):
        (root / "test" / name).mkdir(parents=True)
        for i in range(2):
            path = root / "test" / name / f"{i}.mp4"
            write_video(str(path), rng.integers(0, 255, (20, 40, 48, 3), dtype=np.uint8))
            videos.append((path, name))
    return model, run / "last.keras", root / "test", videos


def test_evaluate_writes_video_level_metrics_and_per_class_accuracy(trained, tmp_path):
    model, checkpoint, data, videos = trained
    result = _tool("evaluate", f"--checkpoint={checkpoint}", f"--data={data}", f"--output={tmp_path}",
                   "--batch_size=3", "--noprogress", *SAMPLING)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # Independent path: every file loaded on its own, Algorithm 1 over 3 crops in this process.
    labels = np.array([["left", "right"].index(name) for _, name in videos])
    scores = np.concatenate([np.asarray(video_level_predict(model, load_video_views(str(p), **VIEW_ARGS)[None], 2))
                             for p, _ in videos])
    assert metrics["videos"] == 4
    assert metrics["top1"] == pytest.approx(100 * np.mean(scores.argmax(-1) == labels))
    assert metrics["top2"] == 100.0  # 2 classes: the true class is always among the top 2
    with open(tmp_path / "per_class.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == ["left", "right"] and sum(int(r["videos"]) for r in rows) == 4
    assert metrics["mean_class_accuracy"] == pytest.approx(np.mean([float(r["top1"]) for r in rows]), abs=0.01)
    with open(tmp_path / "predictions.csv") as handle:
        predicted = {r["video"]: (int(r["predicted"]), float(r["score"])) for r in csv.DictReader(handle)}
    for (path, name), row in zip(videos, scores):
        assert predicted[f"{name}/{path.name}"] == (row.argmax(), pytest.approx(row.max(), abs=1e-4))


def test_evaluate_rejects_a_missing_checkpoint_and_a_class_mismatch(trained, tmp_path):
    _, checkpoint, data, _ = trained
    missing = _tool("evaluate", f"--checkpoint={tmp_path / 'nope.keras'}", f"--data={data}",
                    f"--output={tmp_path}", *SAMPLING)
    assert missing.returncode == 2 and "checkpoint not found" in missing.stderr and "nope.keras" in missing.stderr
    (data.parent / "three" / "a").mkdir(parents=True)
    for name in ("a", "b", "c"):
        (data.parent / "three" / name).mkdir(exist_ok=True)
        write_video(str(data.parent / "three" / name / "0.mp4"), np.zeros((8, 32, 32, 3), np.uint8))
    mismatch = _tool("evaluate", f"--checkpoint={checkpoint}", f"--data={data.parent / 'three'}",
                     f"--output={tmp_path}", "--class_names=", *SAMPLING)
    assert mismatch.returncode == 2
    assert "has 3 classes but the model" in mismatch.stderr and "2 outputs" in mismatch.stderr


def test_predict_lists_top_classes_by_name_and_reports_unreadable_videos(trained, tmp_path):
    model, checkpoint, _, videos = trained
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    good = videos[0][0]
    result = _tool("predict", f"--checkpoint={checkpoint}", "--json", "--top_k=2", *SAMPLING, good, broken)
    assert result.returncode == 1
    assert str(broken) in result.stderr and "1 of 2 video(s) could not be read" in result.stderr
    (line,) = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    expected = np.asarray(video_level_predict(model, load_video_views(str(good), **VIEW_ARGS)[None], 2))[0]
    assert line["video"] == str(good)
    assert [t["class"] for t in line["top"]] == [["left", "right"][i] for i in np.argsort(-expected)]
    np.testing.assert_allclose([t["probability"] for t in line["top"]], np.sort(expected)[::-1], atol=1e-5)


def test_predict_needs_videos_and_a_matching_class_list(trained, tmp_path):
    _, checkpoint, _, videos = trained
    no_videos = _tool("predict", f"--checkpoint={checkpoint}")
    assert no_videos.returncode == 2 and "give one or more video files" in no_videos.stderr
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\n")
    wrong = _tool("predict", f"--checkpoint={checkpoint}", f"--class_names={names}", videos[0][0])
    assert wrong.returncode == 2 and "lists 3 classes" in wrong.stderr and "2 outputs" in wrong.stderr
