"""The live timeline (inference.live, ``keras-v4d predict --stream``) against a local sender that remuxes
an encoded file to ``tcp://127.0.0.1:PORT`` (tests/inference/live_sender.py): its windows are the file
timeline's; a stall, a sender that stops and comes back and a SIGTERM each do what the guide says;
its state does not grow with the stream."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_v4d.data import VideoReadError, write_video
from keras_v4d.inference.live import LiveEvent, LiveSource, LiveWindow, StreamStalled, live_timeline
from keras_v4d.inference.timeline import TimelineStream, timeline_grid, video_timeline
from keras_v4d.models import build_resnet3d
from keras_v4d.records.sampling import VideoSampling
from tests.conftest import tensorflow_only

pytestmark = [tensorflow_only(), pytest.mark.serial]  # a sender process paced in real time
SENDER = os.path.join(os.path.dirname(__file__), "live_sender.py")
SAMPLING = VideoSampling(train_units=2, test_num_units=4, frames_per_unit=2, stride=2, crop_size=32, short_side=32,
                         test_crop_size=32, test_num_crops=1)
FLAGS = ["--num_units=4", "--train_units=2", "--frames_per_unit=2", "--stride=2", "--crop_size=32",
         "--short_side=32", "--num_crops=1"]
FPS = 12


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small V4D saved as .keras, a 5-s video and a 20-s one (12 fps, 40×48)."""
    root = tmp_path_factory.mktemp("live")
    model = build_resnet3d(18, "v4d", classes=3, input_shape=(None, 2, None, None, 3), width=0.25)
    model.save(root / "model.keras")
    rng = np.random.default_rng(0)
    write_video(str(root / "short.mp4"), rng.integers(0, 255, (60, 40, 48, 3), dtype=np.uint8), fps=FPS)
    write_video(str(root / "long.mp4"), rng.integers(0, 255, (240, 40, 48, 3), dtype=np.uint8), fps=FPS)
    return model, root


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _sender(video, *options):
    """Starts the sender on a free port once it listens; returns (process, tcp URL)."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, SENDER, str(video), str(port), *map(str, options)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "listening"
    return process, f"tcp://127.0.0.1:{port}"


def _collect(items, stop=lambda found: False):
    found = []
    for item in items:
        found.append(item)
        if stop(found):
            break
    items.close()
    return found


def _windows(found, segment=0):
    return [item for item in found if isinstance(item, LiveWindow) and item.segment == segment]


def test_the_live_windows_are_the_file_timelines(files, mode="combinations"):  # all_units: the reconnect test
    model, root = files
    expected = video_timeline(model, str(root / "short.mp4"), SAMPLING, window=2.0, hop=1.0, mode=mode)
    sender, url = _sender(root / "short.mp4", "--speed=8")
    found = _collect(live_timeline(model, url, SAMPLING, window=2.0, hop=1.0, mode=mode,
                                   follow=LiveSource(reconnect=False)))
    sender.wait(30)
    windows = _windows(found)
    assert [w.first_frame for w in windows] == list(expected.first_frames[:len(windows)]) and len(windows) == 3
    np.testing.assert_allclose(np.stack([w.probabilities for w in windows]),
                               expected.probabilities[:len(windows)], atol=1e-5)
    # stream time from the packets: a window spans 26 frames at 12 fps, windows 1 s apart
    np.testing.assert_allclose([w.end - w.start for w in windows], 26 / FPS, atol=1e-6)
    np.testing.assert_allclose(np.diff([w.start for w in windows]), 1.0, atol=1e-6)
    assert all(w.mode == mode and 0 <= w.latency < 60 for w in windows)
    assert isinstance(found[-1], LiveEvent) and found[-1].kind == "end"


def test_a_stall_is_reported_and_the_stream_goes_on_or_the_tool_exits(files):
    model, root = files
    expected = video_timeline(model, str(root / "short.mp4"), SAMPLING, window=2.0, hop=1.0)
    sender, url = _sender(root / "short.mp4", "--speed=2", "--pause_after=2.5", "--pause=2.5")
    found = _collect(live_timeline(model, url, SAMPLING, window=2.0, hop=1.0, mode="combinations",
                                   follow=LiveSource(stall_timeout=1.0, reconnect=False)))
    sender.wait(30)
    kinds = [item.kind for item in found if isinstance(item, LiveEvent)]
    assert "stall" in kinds and kinds[-1] == "end"
    stall = kinds.index("stall")
    after = [item for item in found[found.index([i for i in found if isinstance(i, LiveEvent)][stall]):]
             if isinstance(item, LiveWindow)]
    assert after  # windows went on after the stall, the same as the file's
    np.testing.assert_allclose(np.stack([w.probabilities for w in _windows(found)]),
                               expected.probabilities[:len(_windows(found))], atol=1e-5)
    sender, url = _sender(root / "short.mp4", "--speed=2", "--pause_after=2.5", "--pause=2.5")
    with pytest.raises(StreamStalled, match="no frame for 1 s"):
        _collect(live_timeline(model, url, SAMPLING, window=2.0, hop=1.0,
                               follow=LiveSource(stall_timeout=1.0, on_stall="exit", reconnect=False)))
    sender.kill()
    sender.wait(30)


def test_a_sender_that_stops_and_comes_back_gives_a_gap_and_a_new_segment(files):
    model, root = files
    expected = video_timeline(model, str(root / "short.mp4"), SAMPLING, window=2.0, hop=1.0, mode="all_units")
    sender, url = _sender(root / "short.mp4", "--speed=8", "--times=2", "--gap=1")
    found = _collect(live_timeline(model, url, SAMPLING, window=2.0, hop=1.0),
                     stop=lambda found: len(_windows(found, 1)) == 3)
    sender.kill()
    sender.wait(30)
    events = [(item.kind, item.segment) for item in found if isinstance(item, LiveEvent)]
    assert events[:2] == [("gap", 0), ("segment", 1)]  # the gap is in the output, never inside a window
    for segment in (0, 1):
        windows = _windows(found, segment)
        assert [w.first_frame for w in windows] == [0, 12, 24]
        np.testing.assert_allclose(np.stack([w.probabilities for w in windows]), expected.probabilities[:3],
                                   atol=1e-5)


def test_a_frame_size_change_starts_a_new_segment(files, tmp_path):
    """Two MPEG-TS streams of different frame sizes, one after the other in one file (as a camera that
    changes resolution sends them): a "segment" event naming both sizes; each segment's windows are
    its own part's file timeline."""
    model, root = files
    rng = np.random.default_rng(1)
    parts = [tmp_path / "a.ts", tmp_path / "b.ts"]
    write_video(str(parts[0]), rng.integers(0, 255, (40, 40, 48, 3), dtype=np.uint8), fps=FPS)
    write_video(str(parts[1]), rng.integers(0, 255, (40, 36, 64, 3), dtype=np.uint8), fps=FPS)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(parts[0].read_bytes() + parts[1].read_bytes())
    found = _collect(live_timeline(model, str(joined), SAMPLING, window=2.0, hop=1.0, mode="all_units",
                                   follow=LiveSource(reconnect=False)))
    events = [(item.kind, item.segment, item.message) for item in found if isinstance(item, LiveEvent)]
    assert events[0][:2] == ("segment", 1) and "48×40 to 64×36" in events[0][2], events
    assert events[-1][0] == "end"
    for segment, part in enumerate(parts):
        expected = video_timeline(model, str(part), SAMPLING, window=2.0, hop=1.0, mode="all_units")
        windows = _windows(found, segment)
        assert [w.first_frame for w in windows] == [0, 12]
        np.testing.assert_allclose(np.stack([w.probabilities for w in windows]), expected.probabilities[:2],
                                   atol=1e-5)


def test_the_tool_prints_json_lines_only_and_sigterm_ends_it_cleanly(files, tmp_path):
    model, root = files
    sender, url = _sender(root / "long.mp4", "--speed=1")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    tool = subprocess.Popen([sys.executable, "-m", "keras_v4d.cli.predict", f"--checkpoint={root / 'model.keras'}",
                             f"--stream={url}", "--window=2", "--hop=1", f"--append={tmp_path / 'lines.jsonl'}",
                             *FLAGS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    try:
        while len(lines) < 3:
            line = tool.stdout.readline()
            assert line, tool.stderr.read()[-3000:]
            lines.append(json.loads(line))
        tool.send_signal(signal.SIGTERM)
        rest = tool.stdout.read()  # through the same reader: lines it read ahead are in its buffer
        stderr = tool.stderr.read()
        tool.wait(60)
    finally:
        tool.kill()
        sender.kill()
        sender.wait(30)
    assert tool.returncode == 128 + signal.SIGTERM and "terminated (SIGTERM)" in stderr
    lines += [json.loads(line) for line in rest.splitlines()]  # every line whole JSON, nothing else on stdout
    windows = [line for line in lines if "event" not in line]
    assert len(windows) >= 3 and all(w["mode"] == "all_units" and w["segment"] == 0 for w in windows)
    assert all(set(w) == {"segment", "start", "end", "mode", "latency_s", "lag_s", "skipped", "top"} for w in windows)
    assert all(0 <= w["latency_s"] < 60 and w["lag_s"] < 60 and w["skipped"] == 0 and len(w["top"]) == 3
               for w in windows)
    appended = [json.loads(line) for line in (tmp_path / "lines.jsonl").read_text().splitlines()]
    # whole lines there too; a stop between the two writes leaves the file one line short
    assert appended == lines[:len(appended)] and len(lines) - len(appended) <= 1


def _slowed(monkeypatch, seconds):
    """Makes each window cost ``seconds`` more: a model slower than the stream."""
    run = TimelineStream.run_windows

    def slow_run(self, count):
        time.sleep(seconds * count)
        run(self, count)

    monkeypatch.setattr(TimelineStream, "run_windows", slow_run)


def _as_in_the_file(windows, expected):
    rows = {int(first): i for i, first in enumerate(expected.first_frames)}
    np.testing.assert_allclose(np.stack([w.probabilities for w in windows]),
                               expected.probabilities[[rows[w.first_frame] for w in windows]], atol=1e-5)


def test_a_model_slower_than_the_stream_skips_late_windows_or_keeps_them_late(files, monkeypatch):
    # The 20-s video sent at 2× real time gives a window every 0.25 s of wall time; each costs 1 s here, over
    # half of max_lag, so the windows given are never within half of it again: one behind event.
    model, root = files
    expected = video_timeline(model, str(root / "long.mp4"), SAMPLING, window=2.0, hop=0.5, mode="all_units")
    _slowed(monkeypatch, 1.0)
    runs = {}
    for on_behind in ("skip", "keep"):
        sender, url = _sender(root / "long.mp4", "--speed=2")
        follow = LiveSource(reconnect=False, max_lag=1.5, on_behind=on_behind)
        runs[on_behind] = _collect(live_timeline(model, url, SAMPLING, window=2.0, hop=0.5, mode="all_units",
                                                 follow=follow, windows_per_call=1),
                                   stop=lambda found: len(_windows(found)) == 10)
        sender.kill()
        sender.wait(30)
    for on_behind, found in runs.items():
        windows = _windows(found)
        _as_in_the_file(windows, expected)  # a skipped window leaves the others' units and 4D levels whole
        events = [item for item in found if isinstance(item, LiveEvent) and item.kind == "behind"]
        assert len(events) == 1 and "max_lag=1.5 s" in events[0].message
        assert found.index(events[0]) < found.index(next(w for w in windows if w.lag > 1.5 or w.skipped))
    skipped, kept = _windows(runs["skip"]), _windows(runs["keep"])
    assert sum(w.skipped for w in skipped) > 0 and max(w.lag for w in skipped) < 1.5 + 1.0 + 2.0
    # each window counts the ones skipped just before it
    assert skipped[0].first_frame == 0 and all(b.first_frame - a.first_frame == 6 * (1 + b.skipped)
                                               for a, b in zip(skipped, skipped[1:]))
    assert [w.first_frame for w in kept] == [6 * i for i in range(10)] and not any(w.skipped for w in kept)
    assert kept[-1].lag > 1.5 + 2.0  # the kept windows fall further and further behind


def _held(stream):
    """How much a live timeline holds: frames, times, results and stored units of every level."""
    return (len(stream.held), len(stream.times), len(stream.results),
            sum(len(level.row) for level in stream.engine.levels))


def test_the_state_of_an_endless_stream_stays_bounded(files):
    model, _ = files
    grid = timeline_grid(SAMPLING, FPS, 2.0, 1.0)
    stream = TimelineStream(model, SAMPLING, grid, FPS, mode="all_units", windows_per_call=1)
    frame, sizes = np.zeros((32, 32, 3), np.uint8), {}
    for index in range(grid.window_frames + 100 * grid.hop_frames):
        stream.add_frame(frame, index / FPS)
        stream.take_windows()
        if stream.next_window in (10, 100):
            sizes[stream.next_window] = _held(stream)
    assert sizes[10] == sizes[100]  # ten times more windows, the same held


def test_live_settings_are_checked_naming_the_field(files, tmp_path):
    for bad, message in (({"on_stall": "retry"}, "`on_stall` must be one of"),
                         ({"stall_timeout": 0}, "`stall_timeout` must be positive"),
                         ({"fps": -1}, "`fps` must be positive"),
                         ({"on_behind": "drop"}, "`on_behind` must be one of"),
                         ({"max_lag": 0}, "`max_lag` must be positive")):
        with pytest.raises(ValueError, match=message):
            LiveSource(**bad)
    model, _ = files
    with pytest.raises(VideoReadError, match="cannot be opened"):  # nothing listens there, no reconnection
        _collect(live_timeline(model, f"tcp://127.0.0.1:{_free_port()}", SAMPLING,
                               follow=LiveSource(reconnect=False, open_timeout=0.5)))
