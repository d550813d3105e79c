"""Timeline inference: what happens when in a long, untrimmed video.

``video_timeline(model, "match.mp4", sampling, window=10.0, hop=1.0)`` → a ``Timeline`` (per window
its start and end in seconds and its class probabilities); ``write_timeline(timeline, "out/match")``
writes ``match.timeline.csv``, ``.json`` and ``.png``. The command-line tool is
``keras-v4d predict --timeline``.

Each window gets the model's test protocol on that stretch of video alone: U_infer units of T
frames τ apart, centred as the test loader centres them, the test crops, Algorithm 1 (V4D §3.4) and
score averaging — the probabilities ``predict`` gives for a clip of exactly the window's frames.

The windows share their units. A window is ``U_infer·g + (T-1)·τ`` frames with ``g`` a whole number of
frames (the unit step), so the test loader's units fall at ``⌊g/2⌋ + g·u`` from its start; windows
start every ``hop_units·g`` frames, so all their units lie on one grid of the video. Each unit is
decoded, cropped and run through the 3D part once; each 4D block and its 3D tail run once per
distinct window of units (one ``inference.algorithm1`` store for all the timeline's windows); only
the head runs per combination. When the video's end falls between two windows, one more window
ends at the last frame (its units are off the grid). ``TimelineStream`` holds the stream's state.

Memory does not grow with the video: frames are decoded as a stream and kept only until the units
that read them are cut; a unit's features (and the block outputs built on them) are dropped once
the windows have passed it.
"""

import collections
import csv
import dataclasses
import json
import logging
import os

import numpy as np
import tensorflow as tf
from keras import ops

from keras_v4d.data.frame_indices import segment_indices, unit_span
from keras_v4d.data.frame_size import MAX_FRAME_PIXELS
from keras_v4d.data.transforms import eval_transform
from keras_v4d.data.video_io import VideoReadError, frame_rate, read_frames, stream_frames
from keras_v4d.inference.algorithm1 import MAX_ELEMENTS, Algorithm1, mode_combinations
from keras_v4d.records.atomic import open_atomically, write_atomically
from keras_v4d.records.class_names import top_classes
from keras_v4d.records.sampling import resolve_sampling

logger = logging.getLogger(__name__)

DEFAULT_WINDOW_SECONDS = 10.0  # a Kinetics clip
DEFAULT_HOP_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class TimelineGrid:
    """Where a timeline's units and windows fall, in frames.

    Attributes:
        num_units: U_infer, units per window.
        frames_per_unit, stride: T and τ.
        unit_step: g, frames between two units of a window (the test loader's tick).
        hop_units: windows start every ``hop_units`` unit steps.
    """

    num_units: int
    frames_per_unit: int
    stride: int
    unit_step: int
    hop_units: int

    @property
    def window_frames(self):
        """Frames in a window: ``U_infer·g + (T-1)·τ``."""
        return self.num_units * self.unit_step + unit_span(self.frames_per_unit, self.stride) - 1

    @property
    def hop_frames(self):
        """Frames between two windows' starts: ``hop_units·g``."""
        return self.hop_units * self.unit_step

    def unit_start(self, unit):
        """First frame of grid unit ``unit`` (window ``k`` holds units ``k·hop_units … + U_infer - 1``)."""
        return self.unit_step // 2 + self.unit_step * unit

    def unit_frames(self, start):
        """The frame indices ``(T,)`` of the unit whose first frame is ``start``."""
        return start + self.stride * np.arange(self.frames_per_unit)


def timeline_grid(sampling, fps, window=DEFAULT_WINDOW_SECONDS, hop=DEFAULT_HOP_SECONDS):
    """The ``TimelineGrid`` closest to windows of ``window`` seconds every ``hop`` seconds at ``fps``
    (the window's length rounds to whole unit steps, the hop to whole unit steps of at least one)."""
    for value, name in ((window, "window"), (hop, "hop"), (fps, "fps")):
        if not value > 0:
            raise ValueError(f"timeline: `{name}` must be positive, got {value!r}")
    span = unit_span(sampling.frames_per_unit, sampling.stride)
    step = max(1, round((window * fps - span + 1) / sampling.test_num_units))
    return TimelineGrid(sampling.test_num_units, sampling.frames_per_unit, sampling.stride, step,
                        max(1, round(hop * fps / step)))


@dataclasses.dataclass
class Timeline:
    """Class probabilities over a video's time.

    Attributes:
        path: the video file.
        starts, ends: ``(W,)`` seconds, each window's first frame's time and its last frame's end.
        probabilities: ``(W, classes)``.
        class_names: the classes' names, or None.
        first_frames: ``(W,)`` each window's first frame; ``window_frames`` frames each.
        grid: the ``TimelineGrid``; fps: the stream's frame rate.
        units_run: units through the 3D part; block_windows_run: distinct windows per 4D block.
        peak_units_held: most units whose 3D features were held at once.
    """

    path: str
    starts: np.ndarray
    ends: np.ndarray
    probabilities: np.ndarray
    class_names: list | None
    first_frames: np.ndarray
    grid: TimelineGrid
    fps: float
    units_run: int = 0
    block_windows_run: list = dataclasses.field(default_factory=list)
    peak_units_held: int = 0

    def top(self, k=5):
        """Per window ``[(class name, probability), …]`` of its ``k`` most likely classes."""
        return [top_classes(p, self.class_names, k) for p in self.probabilities]


class TimelineStream:
    """One video's timeline while its frames stream in: the frames kept until their units are cut, the
    units cut and not run yet, the windows' probabilities so far and the Algorithm 1 store that the
    windows share (features dropped once the windows have passed their units).

    ``add_frame`` takes the decoded frames in order and runs the windows ``windows_per_call`` at a
    time as they become ready (None: the caller runs them, ``run_windows``); ``finish`` runs the rest
    and returns the rows ``(first frame, probabilities (classes,), start s, end s)``.
    """

    def __init__(self, model, sampling, grid, fps, *, mode="combinations", windows_per_call=8,
                 max_elements=MAX_ELEMENTS, probabilities=True):
        self.engine = Algorithm1(model, max_elements, probabilities)
        self.combinations = mode_combinations(sampling.test_num_units, sampling.train_units, mode)
        self.sampling, self.grid, self.fps, self.windows_per_call = sampling, grid, fps, windows_per_call
        self.held, self.cut = {}, []  # frames kept by index; units cut and not run yet: (start, views)
        self.times, self.recent = {}, collections.deque(maxlen=grid.window_frames + 1)
        self.results = []  # (first frame, probabilities)
        self.next_unit = self.next_window = self.count = 0
        self.offsets = {(grid.unit_step // 2 + t * grid.stride) % grid.unit_step for t in range(grid.frames_per_unit)}

    def views(self, frames):
        """``(T, H, W, 3)`` uint8 → the test crops ``(V, T, S, S, 3)`` float32."""
        s = self.sampling
        return eval_transform(tf.convert_to_tensor(frames), s.test_crop, s.short_side, s.test_num_crops).numpy()

    def add_frame(self, frame, time):
        """Takes the next decoded frame (``(H, W, 3)`` uint8) and its time in seconds."""
        grid, index = self.grid, self.count
        self.count += 1
        self.recent.append(time)
        if index % grid.hop_frames == 0 or (index + 1 - grid.window_frames) % grid.hop_frames == 0:
            self.times[index] = time
        if index >= grid.unit_step // 2 and index % grid.unit_step in self.offsets:
            self.held[index] = frame
        start = grid.unit_start(self.next_unit)
        if index == start + grid.stride * (grid.frames_per_unit - 1):  # a unit is complete
            self.cut.append((start, self.views(np.stack([self.held[i] for i in grid.unit_frames(start)]))))
            self.next_unit += 1
            for i in [i for i in self.held if i < grid.unit_start(self.next_unit)]:
                del self.held[i]
        if self.windows_per_call is not None and self.pending_windows() >= self.windows_per_call:
            self.run_windows(self.pending_windows())

    def pending_windows(self):
        """How many grid windows have all their units cut and all their frames decoded, and have not run."""
        grid = self.grid
        by_units, by_frames = self.next_unit - grid.num_units, self.count - grid.window_frames
        ready = 0 if min(by_units, by_frames) < 0 else min(by_units // grid.hop_units,
                                                             by_frames // grid.hop_frames) + 1
        return ready - self.next_window

    def take_windows(self):
        """The windows run since the last call as rows ``(first frame, probabilities, start s, end s)``,
        forgotten here (a live stream keeps no history: its state stays bounded)."""
        grid = self.grid
        rows = [(first, p, self.times[first], self.times[first + grid.window_frames - 1] + 1.0 / self.fps)
                for first, p in self.results]
        self.results.clear()
        for index in [i for i in self.times if i < self.next_window * grid.hop_frames]:
            del self.times[index]
        return rows

    def window_probabilities(self, unit_starts):
        """Class probabilities ``(W, classes)`` of windows given as the first frames of their U_infer
        units ``(W, U_infer)`` (all in the store)."""
        windows = np.asarray(unit_starts, np.int64)
        keys = windows[:, self.combinations].reshape(-1, self.combinations.shape[1])  # (W·n, K)
        scores = ops.convert_to_numpy(self.engine.scores(keys))  # (W·n, V, classes)
        return scores.reshape(len(windows), -1, scores.shape[-1]).mean(axis=1)

    def run_windows(self, count):
        """Runs the next ``count`` grid windows (their units all cut) and drops what they have passed."""
        grid = self.grid
        if self.cut:
            self.engine.add_units([s for s, _ in self.cut], np.stack([v for _, v in self.cut]))
            self.cut.clear()
        starts = [grid.unit_start(k * grid.hop_units + np.arange(grid.num_units))
                  for k in range(self.next_window, self.next_window + count)]
        for i, p in enumerate(self.window_probabilities(starts)):
            self.results.append(((self.next_window + i) * grid.hop_frames, p))
        self.skip_windows(count)

    def skip_windows(self, count):
        """Passes over the next ``count`` windows (run, or skipped unrun by a live source the model has
        fallen behind) and drops the units that only windows before them read."""
        self.next_window += count
        first_unit = self.grid.unit_start(self.next_window * self.grid.hop_units)
        self.cut = [(start, views) for start, views in self.cut if start >= first_unit]
        self.engine.drop_before(first_unit)

    def finish(self, path, max_frame_pixels=MAX_FRAME_PIXELS):
        """Runs the windows left and, when the video's end falls after the last one, one more window
        ending at the last frame (its frames read again from ``path``; all of a video shorter than a
        window); → the rows ``(first frame, probabilities, start s, end s)``."""
        grid, fps = self.grid, self.fps
        complete = (self.count - grid.window_frames) // grid.hop_frames + 1 if self.count >= grid.window_frames else 0
        if complete > self.next_window:
            self.run_windows(complete - self.next_window)
        self.held.clear()
        rows = [(first, p, self.times[first], self.times[first + grid.window_frames - 1] + 1.0 / fps)
                for first, p in self.results]
        covered = self.results[-1][0] + grid.window_frames if self.results else 0
        if covered < self.count:
            last = self._last_window(path, max_frame_pixels, covered)
            if last is not None:
                first, probabilities = last
                rows.append((first, probabilities, self.recent[-(self.count - first)], self.recent[-1] + 1.0 / fps))
        return rows

    def _last_window(self, path, max_frame_pixels, covered):
        """``(first frame, probabilities)`` of the window ending at the last frame, or None (with a
        warning) when its frames cannot be read again."""
        grid, count = self.grid, self.count
        first = max(0, count - grid.window_frames)
        indices = first + segment_indices(count - first, grid.num_units, grid.frames_per_unit, grid.stride,
                                          training=False).numpy()
        try:
            frames = read_frames(path, indices.reshape(-1), max_frame_pixels)
        except VideoReadError as error:
            logger.warning("%s: the last %d frames cannot be read again (%s); the timeline ends at frame %d",
                           path, count - first, error, covered)
            return None
        self.engine.drop_before(first)
        unit_views = np.stack([self.views(f) for f in frames.reshape((grid.num_units, -1) + frames.shape[1:])])
        new = list({s: i for i, s in reversed(list(enumerate(indices[:, 0].tolist())))
                    if not self.engine.has_unit(s)}.values())
        self.engine.add_units(indices[new, 0], unit_views[new])
        return first, self.window_probabilities(indices[None, :, 0])[0]


def video_timeline(model, path, sampling=None, *, window=DEFAULT_WINDOW_SECONDS, hop=DEFAULT_HOP_SECONDS,
                   mode="combinations", class_names=None, windows_per_call=8, max_elements=MAX_ELEMENTS,
                   max_frame_pixels=MAX_FRAME_PIXELS, probabilities=True):
    """The ``Timeline`` of the video file ``path``: windows of about ``window`` seconds every ``hop``
    seconds (``timeline_grid``), each with ``model``'s test protocol from ``sampling`` (default: the
    model's fixed U/T and the defaults) — the probabilities of ``predict`` on that window alone.

    ``windows_per_call`` windows are computed together (their new units and block windows batched);
    ``max_elements`` bounds one call's input; ``probabilities=False`` keeps the head's outputs as they
    are (``inference.features.window_features``). A video shorter than one window gets one window over
    all of it (``predict``'s answer). Raises ``VideoReadError`` naming the file when it cannot be read
    or no frame decodes; a stream that stops early (a damaged file) ends the timeline there, with a
    warning.
    """
    sampling = sampling or resolve_sampling(model)
    fps = frame_rate(path, max_frame_pixels)
    grid = timeline_grid(sampling, fps, window, hop)
    stream = TimelineStream(model, sampling, grid, fps, mode=mode, windows_per_call=windows_per_call,
                            max_elements=max_elements, probabilities=probabilities)
    errors = []
    for frame, time in stream_frames(path, True, max_frame_pixels, errors):
        stream.add_frame(frame, time)
    if stream.count == 0:
        raise VideoReadError(f"{path}: no frame decodes" + (f" ({errors[0]})" if errors else ""))
    if errors:
        logger.warning("%s: decoding stopped or skipped packets (%s); the timeline covers the %d frames that "
                       "decoded", path, errors[0], stream.count)
    rows = stream.finish(path, max_frame_pixels)
    engine = stream.engine
    return Timeline(path=path, starts=np.array([r[2] for r in rows]), ends=np.array([r[3] for r in rows]),
                    probabilities=np.stack([r[1] for r in rows]), class_names=class_names,
                    first_frames=np.array([r[0] for r in rows], np.int64), grid=grid, fps=fps,
                    units_run=engine.runs[0], block_windows_run=engine.runs[1:], peak_units_held=engine.peak_units)


def _clock(seconds, _=None):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def write_timeline(timeline, prefix, top_k=5, plotted=5):
    """Writes ``prefix.timeline.csv`` (per window: start, end, its ``top_k`` classes and probabilities),
    ``prefix.timeline.json`` (the settings and every window's probabilities) and ``prefix.timeline.png``
    (the ``plotted`` classes with the highest peak probability over the video's time); returns
    ``{"csv": path, "json": path, "png": path}``. Each file is written whole or not at all."""
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    paths = {kind: f"{prefix}.timeline.{kind}" for kind in ("csv", "json", "png")}
    top = timeline.top(top_k)
    with open_atomically(paths["csv"], "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["start_s", "end_s"] + [f"{name}{i}" for i in range(1, len(top[0]) + 1)
                                                 for name in ("class", "probability")])
        for start, end, best in zip(timeline.starts, timeline.ends, top):
            writer.writerow([f"{start:.3f}", f"{end:.3f}"] + [v for name, p in best for v in (name, f"{p:.6f}")])
    grid = timeline.grid
    document = {
        "video": timeline.path, "fps": timeline.fps, "window_frames": grid.window_frames,
        "hop_frames": grid.hop_frames, "window_seconds": grid.window_frames / timeline.fps,
        "hop_seconds": grid.hop_frames / timeline.fps, "units_per_window": grid.num_units,
        "frames_per_unit": grid.frames_per_unit, "stride": grid.stride, "class_names": timeline.class_names,
        "windows": [{"start": float(start), "end": float(end), "first_frame": int(first),
                     "top": [{"class": name, "probability": p} for name, p in best],
                     "probabilities": [float(p) for p in probabilities]}
                    for start, end, first, best, probabilities in zip(timeline.starts, timeline.ends,
                                                                       timeline.first_frames, top,
                                                                       timeline.probabilities)]}
    with open_atomically(paths["json"], "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1)
    write_atomically(paths["png"], lambda path: _plot(timeline, path, plotted))
    return paths


def _plot(timeline, path, plotted):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot, ticker

    centres = (timeline.starts + timeline.ends) / 2
    classes = np.argsort(-timeline.probabilities.max(axis=0), kind="stable")[:plotted]
    figure, axes = pyplot.subplots(figsize=(10, 3.6), dpi=100)
    for c in classes:
        name = timeline.class_names[c] if timeline.class_names else f"class {c}"
        axes.plot(centres, timeline.probabilities[:, c], label=name, linewidth=1.6)
    axes.set_xlim(0, max(float(timeline.ends.max()), 1e-3))
    axes.set_ylim(0, 1)
    axes.xaxis.set_major_formatter(ticker.FuncFormatter(_clock))
    axes.set_xlabel("time in the video (window centres; m:ss)")
    axes.set_ylabel("probability")
    window, hop = timeline.grid.window_frames / timeline.fps, timeline.grid.hop_frames / timeline.fps
    axes.set_title(f"{os.path.basename(timeline.path)}: windows of {window:.1f} s every {hop:.2f} s", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    figure.tight_layout()
    figure.savefig(path, format="png")
    pyplot.close(figure)
