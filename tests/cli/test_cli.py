"""The evaluate and predict command-line tools, run as real subprocesses on real video files."""

import contextlib
import csv
import io
import json

import numpy as np
import pytest
import tensorflow as tf

from keras_v4d.cli.main import main
from keras_v4d.data import eval_transform, load_video_views, segment_indices, write_video
from keras_v4d.inference import video_level_predict
from keras_v4d.models import build_resnet3d
from keras_v4d.records.sampling import VideoSampling
from tests.commands import run_tool
from tests.damaged import decodable_frames, write_cut_faststart_mp4

SAMPLING = ["--num_units=4", "--train_units=2", "--frames_per_unit=2", "--stride=2", "--crop_size=32",
            "--short_side=32", "--num_crops=3"]
VIEWS = VideoSampling(train_units=2, test_num_units=4, frames_per_unit=2, stride=2, crop_size=32, short_side=32,
                      test_crop_size=32, test_num_crops=3)  # what SAMPLING's flags say


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
    result = run_tool("evaluate", f"--checkpoint={checkpoint}", f"--data={data}", f"--output={tmp_path}",
                   "--batch_size=3", "--noprogress", *SAMPLING)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # Independent path: every file loaded on its own, Algorithm 1 over 3 crops in this process.
    labels = np.array([["left", "right"].index(name) for _, name in videos])
    scores = np.concatenate([np.asarray(video_level_predict(model, load_video_views(str(p), VIEWS)[None], 2))
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


@pytest.fixture(scope="module")
def damaged_list(trained):
    """An annotation list of ten: eight good videos, a faststart mp4 cut at 70 % and a garbage file."""
    root = trained[2].parent / "damaged"
    root.mkdir()
    rng = np.random.default_rng(1)
    entries = []
    for i in range(8):
        write_video(str(root / f"good{i}.mp4"), rng.integers(0, 255, (20, 40, 48, 3), dtype=np.uint8))
        entries.append((f"good{i}.mp4", i % 2))
    write_cut_faststart_mp4(root / "cut.mp4", rng.integers(0, 255, (40, 40, 48, 3), dtype=np.uint8))
    (root / "garbage.mp4").write_bytes(rng.integers(0, 255, 5000, dtype=np.uint8).tobytes())
    entries.insert(3, ("cut.mp4", 1))
    entries.insert(7, ("garbage.mp4", 0))
    (root / "list.txt").write_text("".join(f"{name} {label}\n" for name, label in entries))
    return root, entries


def test_evaluate_goes_on_past_damaged_videos_and_lists_the_unreadable(trained, damaged_list, tmp_path):
    model, checkpoint, _, _ = trained
    root, entries = damaged_list
    result = run_tool("evaluate", f"--checkpoint={checkpoint}", f"--data={root / 'list.txt'}", f"--output={tmp_path}",
                   "--batch_size=3", "--noprogress", *SAMPLING)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "1 video(s) could not be read" in result.stderr and "unreadable.csv" in result.stderr
    with open(tmp_path / "unreadable.csv") as handle:
        unreadable = list(csv.DictReader(handle))
    assert [row["video"] for row in unreadable] == ["garbage.mp4"] and unreadable[0]["reason"]
    # Independent truth: good files loaded one by one; the cut file decoded here with PyAV up to where
    # it breaks (fewer frames than its header claims) and sampled over the frames that did decode.
    decoded, claimed = decodable_frames(root / "cut.mp4")
    assert 0 < len(decoded) < claimed == 40
    indices = segment_indices(len(decoded), 4, 2, 2, training=False).numpy().reshape(-1)
    cut_views = tf.reshape(eval_transform(tf.constant(decoded[indices]), 32, 32, 3), (3, 4, 2, 32, 32, 3))
    expected = {}
    for name, label in entries:
        if name == "garbage.mp4":
            continue
        views = cut_views if name == "cut.mp4" else load_video_views(str(root / name), VIEWS)
        expected[name] = (label, np.asarray(video_level_predict(model, views[None], 2))[0])
    with open(tmp_path / "predictions.csv") as handle:
        predicted = {r["video"]: (int(r["predicted"]), float(r["score"])) for r in csv.DictReader(handle)}
    assert sorted(predicted) == sorted(expected)  # nine predictions, the cut one included
    for name, (_, row) in expected.items():
        assert predicted[name] == (row.argmax(), pytest.approx(row.max(), abs=1e-4)), name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    labels = np.array([label for label, _ in expected.values()])
    scores = np.stack([row for _, row in expected.values()])
    assert (metrics["videos_evaluated"], metrics["videos_unreadable"], metrics["videos_repaired"]) == (9, 1, 1)
    assert metrics["videos"] == 9 and metrics["top1"] == pytest.approx(100 * np.mean(scores.argmax(-1) == labels))
    with open(tmp_path / "repaired.csv") as handle:
        assert [row["video"] for row in csv.DictReader(handle)] == ["cut.mp4"]


def test_evaluate_strict_stops_at_the_first_unreadable_video(trained, damaged_list, tmp_path):
    _, checkpoint, _, _ = trained
    root, _ = damaged_list
    result = run_tool("evaluate", f"--checkpoint={checkpoint}", f"--data={root / 'list.txt'}", f"--output={tmp_path}",
                   "--batch_size=3", "--noprogress", "--strict", *SAMPLING)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --data:") and str(root / "garbage.mp4") in last, result.stderr[-2000:]
    assert not (tmp_path / "metrics.json").exists()


def test_evaluate_rejects_a_missing_checkpoint_and_a_class_mismatch(trained, tmp_path):
    _, checkpoint, data, _ = trained
    missing = run_tool("evaluate", f"--checkpoint={tmp_path / 'nope.keras'}", f"--data={data}",
                    f"--output={tmp_path}", *SAMPLING)
    assert missing.returncode == 2 and "checkpoint not found" in missing.stderr and "nope.keras" in missing.stderr
    (data.parent / "three" / "a").mkdir(parents=True)
    for name in ("a", "b", "c"):
        (data.parent / "three" / name).mkdir(exist_ok=True)
        write_video(str(data.parent / "three" / name / "0.mp4"), np.zeros((8, 32, 32, 3), np.uint8))
    mismatch = run_tool("evaluate", f"--checkpoint={checkpoint}", f"--data={data.parent / 'three'}",
                     f"--output={tmp_path}", "--class_names=", *SAMPLING)
    assert mismatch.returncode == 2
    # Its folders are matched to the model's classes by name: three folders, none a class of the model.
    assert "has 3 class folders; ['a', 'b', 'c'] are not among the 2 classes" in mismatch.stderr


def test_predict_lists_top_classes_by_name_and_reports_unreadable_videos(trained, tmp_path):
    model, checkpoint, _, videos = trained
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    good = videos[0][0]
    result = run_tool("predict", f"--checkpoint={checkpoint}", "--json", "--top_k=2", *SAMPLING, good, broken)
    assert result.returncode == 1
    assert str(broken) in result.stderr and "1 of 2 video(s) could not be read" in result.stderr
    (line,) = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    expected = np.asarray(video_level_predict(model, load_video_views(str(good), VIEWS)[None], 2))[0]
    assert line["video"] == str(good)
    assert [t["class"] for t in line["top"]] == [["left", "right"][i] for i in np.argsort(-expected)]
    np.testing.assert_allclose([t["probability"] for t in line["top"]], np.sort(expected)[::-1], atol=1e-5)


def test_predict_needs_videos_and_a_matching_class_list(trained, tmp_path):
    _, checkpoint, _, videos = trained
    no_videos = run_tool("predict", f"--checkpoint={checkpoint}")
    assert no_videos.returncode == 2 and "give one or more video files" in no_videos.stderr
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\n")
    wrong = run_tool("predict", f"--checkpoint={checkpoint}", f"--class_names={names}", videos[0][0])
    assert wrong.returncode == 2 and "lists 3 classes" in wrong.stderr and "2 outputs" in wrong.stderr
    none = run_tool("predict", f"--checkpoint={checkpoint}", "--top_k=0", videos[0][0])  # used to list all but one
    assert none.returncode == 2 and "top_k" in none.stderr and "Traceback" not in none.stderr


def test_predict_refuses_too_many_combinations_and_takes_a_frame_limit(trained):
    _, checkpoint, _, videos = trained
    many = run_tool("predict", f"--checkpoint={checkpoint}", "--num_units=400", "--train_units=4", videos[0][0])
    assert many.returncode == 2 and "Traceback" not in many.stderr
    assert ("error: --num_units=400 (U_infer) in train_units=4 sections makes 100000000 unit combinations for "
            "Algorithm 1, over the limit of 10000") in many.stderr
    limited = run_tool("predict", f"--checkpoint={checkpoint}", "--max_frame_pixels=1000", *SAMPLING, videos[0][0])
    assert limited.returncode == 1  # the 48×40 video (1920 pixels) is not decoded
    assert f"error: {videos[0][0]}: a frame of 48×40 (1920 pixels) is over the limit of 1000 pixels" in limited.stderr


def _keras_v4d(*args):
    """``keras-v4d args…`` (as ``python -m keras_v4d.cli``, the console script's module)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "keras_v4d.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300)


def test_one_command_lists_its_subcommands_and_each_has_help():
    from importlib.metadata import entry_points

    from keras_v4d.cli.main import SUBCOMMANDS

    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get("keras-v4d") == "keras_v4d.cli.main:console_main"  # what `pip install` puts on PATH
    result = _keras_v4d("--help")
    assert result.returncode == 0, result.stderr[-2000:]
    commands = ["train", "evaluate", "predict", "features", "export", "convert-weights", "convert-data", "data-service",
                "summary"]
    for command in commands:
        assert f"  {command} " in result.stdout
    assert list(SUBCOMMANDS) == commands
    helped = run_tool("train", "--help")  # the rest in this process: the same `main`, no new TensorFlow start
    assert helped.returncode == 0 and "usage: keras-v4d train" in helped.stdout
    assert "--num_units: Action units U per video. (default: '4')" in helped.stdout  # VideoSampling's default
    with contextlib.redirect_stderr(io.StringIO()) as unknown:
        assert main(["keras-v4d", "trian"]) == 2
    assert "unknown subcommand 'trian'" in unknown.getvalue()
    bad_flag = run_tool("predict", "--bogus=1", "x.mp4")
    assert bad_flag.returncode == 2 and "error: Unknown command line flag 'bogus'" in bad_flag.stderr
    assert "Traceback" not in bad_flag.stderr


def test_every_subcommand_lives_in_one_process_without_flag_clashes():
    """Each tool defines its flags on its own FlagValues: importing them all (as keras-v4d may) and
    parsing one tool's flags leaves the others' untouched (absl's global FLAGS used to raise
    DuplicateFlagError on `short_side`)."""
    import importlib

    from keras_v4d.cli.common import execute
    from keras_v4d.cli.main import SUBCOMMANDS

    modules = {name: importlib.import_module(f"keras_v4d.cli.{module}") for name, (module, _) in SUBCOMMANDS.items()}
    assert len({id(m.FLAGS) for m in modules.values()}) == len(modules)
    seen = {}
    code = execute("evaluate", lambda argv: seen.setdefault("argv", argv) and 0, modules["evaluate"].FLAGS, "",
                   ["keras-v4d evaluate", "--short_side=128", "--num_crops=1"])
    assert code == 0 and modules["evaluate"].FLAGS.short_side == 128 and modules["evaluate"].FLAGS.num_crops == 1
    assert modules["train"].FLAGS["short_side"].value == 256  # another tool's flag of the same name
    assert modules["predict"].FLAGS["short_side"].value is None
