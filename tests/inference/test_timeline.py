"""Timeline inference over a long video (keras_v4d.inference.timeline, ``predict --timeline``)."""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_v4d.data import eval_transform, read_frames, segment_indices, write_video
from keras_v4d.inference import predict_videos, unit_combinations, video_level_predict
from keras_v4d.inference.timeline import timeline_grid, video_timeline
from keras_v4d.models import build_resnet3d
from keras_v4d.records.sampling import VideoSampling
from tests.commands import run_tool
from tests.inference.test_algorithm1 import block_radii, distinct_windows

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "timeline.py")
_spec = importlib.util.spec_from_file_location("timeline_example", EXAMPLE)
example = importlib.util.module_from_spec(_spec)  # the colour clips, model and episodes video of the README
_spec.loader.exec_module(example)
FPS, SAMPLING = example.FPS, example.SAMPLING


def _window_alone(model, path, first, grid, sampling):
    """``predict``'s answer for a clip of exactly the window's frames, from a decode of just those frames."""
    indices = first + segment_indices(grid.window_frames, grid.num_units, grid.frames_per_unit, grid.stride,
                                      training=False).numpy().reshape(-1)
    views = eval_transform(tf.constant(read_frames(path, indices)), sampling.test_crop, sampling.short_side,
                           sampling.test_num_crops)
    views = tf.reshape(views, (1, sampling.test_num_crops, grid.num_units, grid.frames_per_unit) + views.shape[2:])
    return keras.ops.convert_to_numpy(video_level_predict(model, views, sampling.train_units))[0]


@pytest.mark.parametrize("block4d, crops", [("v4d", 3), ("v4d", 1), (None, 1)])
def test_each_window_equals_predicting_that_window_alone(tmp_path, block4d, crops):
    path = str(tmp_path / "noise.mp4")
    write_video(path, np.random.default_rng(0).integers(0, 256, (190, 36, 48, 3)).astype(np.uint8), fps=FPS)
    model = build_resnet3d(18, block4d, classes=5, input_shape=(None, 2, None, None, 3), width=0.25)
    sampling = VideoSampling(**{**SAMPLING.to_dict(), "test_num_crops": crops})
    timeline = video_timeline(model, path, sampling, window=2.0, hop=0.5, windows_per_call=3)
    grid = timeline.grid
    assert (grid.unit_step, grid.hop_units, grid.window_frames) == (6, 2, 50)  # 2.0 s → 8·6 + 3 - 1 frames
    regular = (190 - 50) // 12 + 1
    # every regular window, then one more ending at the last frame (frames 140…189)
    np.testing.assert_array_equal(timeline.first_frames, list(range(0, 12 * regular, 12)) + [140])
    np.testing.assert_allclose(timeline.starts[:regular], timeline.first_frames[:regular] / FPS, atol=1e-6)
    np.testing.assert_allclose(timeline.ends, (timeline.first_frames + 50) / FPS, atol=1e-6)
    for first, probabilities in zip(timeline.first_frames, timeline.probabilities):
        np.testing.assert_allclose(probabilities, _window_alone(model, path, first, grid, sampling), atol=1e-5)
    # the 3D part ran once per distinct unit: the grid's units, and the last window's units off the grid
    grid_units = (regular - 1) * grid.hop_units + grid.num_units
    last_window = {140 + grid.unit_step // 2 + grid.unit_step * u for u in range(grid.num_units)}
    on_grid = {grid.unit_start(m) for m in range(grid_units)}
    assert timeline.units_run == grid_units + len(last_window - on_grid) < len(timeline.starts) * grid.num_units
    # each 4D block ran once per distinct window of units over all the timeline's windows
    unit_starts = [grid.unit_start(k * grid.hop_units + np.arange(grid.num_units)) for k in range(regular)]
    combinations = unit_combinations(grid.num_units, sampling.train_units)
    keys = np.concatenate([np.asarray(starts)[combinations] for starts in unit_starts + [sorted(last_window)]])
    assert timeline.block_windows_run == distinct_windows(keys, block_radii(model, grid.frames_per_unit))


def test_a_video_shorter_than_a_window_gets_predicts_answer(tmp_path):
    path = str(tmp_path / "short.mp4")
    write_video(path, np.random.default_rng(1).integers(0, 256, (30, 36, 48, 3)).astype(np.uint8), fps=FPS)
    model = build_resnet3d(18, "v4d", classes=5, input_shape=(None, 2, None, None, 3), width=0.25)
    timeline = video_timeline(model, path, SAMPLING, window=4.0, hop=1.0)
    (_, best, _), = predict_videos(model, [path], SAMPLING, top_k=5)
    assert timeline.first_frames.tolist() == [0] and timeline.ends[0] == pytest.approx(30 / FPS)
    np.testing.assert_allclose([p for _, p in timeline.top(5)[0]], [p for _, p in best], atol=1e-5)


def test_the_grid_rounds_to_whole_unit_steps():
    grid = timeline_grid(VideoSampling(), fps=30, window=10.0, hop=1.0)  # U_infer 10, T 4, τ 8: span 25
    assert (grid.unit_step, grid.window_frames, grid.hop_units) == (28, 304, 1)
    with pytest.raises(ValueError, match="`hop` must be positive"):
        timeline_grid(VideoSampling(), fps=30, hop=0)


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory):
    """examples/timeline.py's V4D, trained to name the colour a video shows, saved as a training run
    would save it. → (checkpoint path, model)."""
    model = example.train_colour_model()
    return example.save_run(model, str(tmp_path_factory.mktemp("colour_model"))), model


def test_the_top_class_follows_the_episodes(tmp_path, colour_model):
    _, model = colour_model
    episodes = (1, 0, 2, 0)  # green, red, blue, red: 3 s each
    video = example.write_episodes(str(tmp_path / "episodes.mp4"), episodes, seconds=3.0)
    timeline = video_timeline(model, video, SAMPLING, window=1.0, hop=0.25, class_names=example.CLASS_NAMES)
    inside = 0
    for start, end, probabilities in zip(timeline.starts, timeline.ends, timeline.probabilities):
        episode = int(start // 3)
        if end <= 3 * (episode + 1):  # the window lies within one episode
            inside += 1
            assert probabilities.argmax() == episodes[episode], (start, end, probabilities)
    assert inside >= 30


def _peak_memory(paths):
    """In a new process: the timeline of each of ``paths`` after one untimed run of the first; per path,
    ``(windows, most units held, peak resident memory in MiB during that timeline)`` (Linux: the peak
    is reset before each through /proc/self/clear_refs)."""
    script = (
        "import sys, keras, keras_v4d\n"
        "from keras_v4d.inference.timeline import video_timeline\n"
        "from keras_v4d.records.sampling import VideoSampling\n"
        "keras.utils.set_random_seed(0)\n"
        "model = keras_v4d.models.build_resnet3d(18, 'v4d', classes=5, input_shape=(None, 2, None, None, 3), "
        "width=0.25)\n"
        "s = VideoSampling(train_units=4, frames_per_unit=2, stride=2, crop_size=32, short_side=32, "
        "test_num_units=8, test_num_crops=1)\n"
        "def run(path):\n"
        "    return video_timeline(model, path, s, window=2.0, hop=2.0, windows_per_call=2)\n"
        "run(sys.argv[1])\n"
        "for path in sys.argv[1:]:\n"
        "    open('/proc/self/clear_refs', 'w').write('5')\n"
        "    t = run(path)\n"
        "    peak = next(line for line in open('/proc/self/status') if line.startswith('VmHWM'))\n"
        "    print(len(t.starts), t.peak_units_held, int(peak.split()[1]) // 1024)\n")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", script, *paths], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return [tuple(map(int, line.split())) for line in done.stdout.strip().splitlines()[-len(paths):]]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="resets the peak through Linux's /proc")
def test_peak_memory_does_not_grow_with_the_video(tmp_path):
    rng = np.random.default_rng(2)
    # blocky noise: as large decoded as plain noise, quicker to encode
    pattern = np.kron(rng.integers(0, 256, (50, 30, 40, 3)), np.ones((1, 8, 8, 1))).astype(np.uint8)
    paths = []
    for name, repeats in (("short", 5), ("long", 50)):  # 10 s and 100 s: 250 and 2500 frames of 320×240
        paths.append(str(tmp_path / f"{name}.mp4"))
        write_video(paths[-1], np.tile(pattern, (repeats, 1, 1, 1)), fps=FPS)
    short, long = _peak_memory(paths)
    whole_video_mib = 2500 * 240 * 320 * 3 / 2**20  # 549 MiB of decoded frames
    assert long[0] > 8 * short[0]  # about ten times the windows
    assert long[1] == short[1]  # the same most units held
    assert long[2] - short[2] < 0.05 * whole_video_mib, (short, long)


def test_predict_timeline_writes_csv_json_and_png(tmp_path, colour_model):
    checkpoint, _ = colour_model
    video = example.write_episodes(str(tmp_path / "match.mp4"), (2, 1), seconds=2.0, seed=6)  # blue, green
    out = tmp_path / "timelines"
    done = run_tool("predict", f"--checkpoint={checkpoint}", "--timeline", "--window=1", "--hop=0.5", "--top_k=2",
                    f"--output_dir={out}", video, tmp_path / "missing.mp4")
    assert done.returncode == 1 and "missing.mp4" in done.stderr  # the other video is still done
    paths = {kind: str(out / f"match.timeline.{kind}") for kind in ("csv", "json", "png")}
    for kind, path in paths.items():
        assert f"{kind}: {path}" in done.stdout
    with open(paths["json"]) as handle:
        document = json.load(handle)
    with open(paths["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(document["windows"]) >= 5 and document["class_names"] == ["red", "green", "blue"]
    assert rows[0]["class1"] == "blue" and rows[-1]["class1"] == "green" and set(rows[0]) == {
        "start_s", "end_s", "class1", "probability1", "class2", "probability2"}
    for row, window in zip(rows, document["windows"]):
        assert float(row["start_s"]) == pytest.approx(window["start"], abs=1e-3)
        assert float(row["probability1"]) == pytest.approx(max(window["probabilities"]), abs=1e-5)
    with open(paths["png"], "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
