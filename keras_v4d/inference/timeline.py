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
distinct window of units (Algorithm 1's memoisation, ``inference.video_level``, carried across the
timeline's windows); only the head runs per combination. When the video's end falls between two
windows, one more window ends at the last frame (its units are off the grid).

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
from keras_v4d.inference.video_level import _windows, unit_combinations, video_parts
from keras_v4d.models.video_model import ends_in_softmax
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
        return self.hop_units * self.unit_step

    def unit_start(self, unit):
        """First frame of grid unit ``unit`` (window ``k`` holds units ``k·hop_units … + U_infer - 1``)."""
        return self.unit_step // 2 + self.unit_step * unit

    def unit_frames(self, start):
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


class _SharedAlgorithm1:
    """Algorithm 1 over many windows of one video with the units, 4D-block windows and their features
    shared between the windows (one store per level, keyed across calls).

    Level 0 holds the 3D part's output per unit, keyed by the unit's first frame; level ``l`` the
    output of 4D block ``l`` and its tail per distinct window of level ``l-1`` keys. Each stored row
    is ``(V, …)``: the V test crops of one unit.
    """

    def __init__(self, model, sampling, mode, max_elements):
        self.parts = video_parts(model)
        self.softmax = not ends_in_softmax(model)
        self.frames_per_unit = sampling.frames_per_unit
        self.max_elements = max_elements
        if mode == "all_units":  # one combination: every unit of the window
            self.combinations = np.arange(sampling.test_num_units)[None]
        else:
            self.combinations = unit_combinations(sampling.test_num_units, sampling.train_units)
        levels = len(self.parts.blocks4d) + 1
        self.features = [{} for _ in range(levels)]  # key → (V, …) tensor
        self.first = [{} for _ in range(levels)]  # key → the first frame of the earliest unit it reads
        self.keys = [{} for _ in range(levels)]  # level ≥ 1: window of lower keys → key
        self.next_key = [0] * levels
        self.runs = [0] * levels  # units (level 0) and distinct block windows (levels ≥ 1) computed
        self.peak_units = 0

    def has_unit(self, start):
        return start in self.features[0]

    def _batches(self, items, per_item):
        step = max(1, self.max_elements // max(1, per_item))
        return [items[i:i + step] for i in range(0, len(items), step)]

    def add_units(self, starts, views):
        """Runs the 3D part on units ``views`` ``(m, V, T, S, S, 3)`` float32, keyed by ``starts``."""
        views = np.asarray(views)
        m, crops = views.shape[:2]
        per_item = int(np.prod(views.shape[1:]))
        for chunk in self._batches(list(range(m)), per_item):
            x = ops.reshape(ops.convert_to_tensor(views[chunk]), (len(chunk) * crops, 1) + views.shape[2:])
            y = self.parts.n3d(x, training=False)[:, 0]
            y = ops.reshape(y, (len(chunk), crops) + tuple(y.shape[1:]))
            for j, i in enumerate(chunk):
                self.features[0][int(starts[i])] = y[j]
                self.first[0][int(starts[i])] = int(starts[i])
        self.runs[0] += m
        self.peak_units = max(self.peak_units, len(self.features[0]))

    def _stacked(self, level, rows):
        """The stored ``level`` features of key rows ``(m, w)`` → ``(m·V, w, …)``."""
        store = self.features[level]
        x = ops.stack([ops.stack([store[key] for key in row], axis=1) for row in rows])  # (m, V, w, …)
        return ops.reshape(x, (-1,) + tuple(x.shape[2:]))

    def _level(self, level, block, tail, keys):
        """Level ``level + 1`` keys ``(P, K)`` of the combinations whose level-``level`` keys are ``keys``,
        computing the block windows not stored yet."""
        radius = block.unit_radius(self.frames_per_unit)
        windows = _windows(keys, radius)
        n, k = keys.shape
        unique, inverse = np.unique(windows.reshape(n * k, -1), axis=0, return_inverse=True)
        known, below, first_below = self.keys[level + 1], self.features[level], self.first[level]
        groups = collections.defaultdict(list)
        for window in map(tuple, unique.tolist()):
            if window not in known:
                valid = np.flatnonzero(np.asarray(window) >= 0)
                groups[(int(valid[0]), len(window) - 1 - int(valid[-1]))].append(window)
        sample = next(iter(below.values()), None)
        for (lo, hi), new in groups.items():
            width = len(new[0]) - lo - hi
            per_item = width * int(np.prod(sample.shape))
            for chunk in self._batches(new, per_item):
                x = self._stacked(level, [window[lo:len(window) - hi] for window in chunk])
                y = tail(block.unit_output(x, radius - lo, training=False), training=False)  # (m·V, 1, …)
                y = ops.reshape(y, (len(chunk), -1) + tuple(y.shape[2:]))
                for j, window in enumerate(chunk):
                    key = self.next_key[level + 1]
                    self.next_key[level + 1] += 1
                    known[window] = key
                    self.features[level + 1][key] = y[j]
                    self.first[level + 1][key] = min(first_below[w] for w in window if w >= 0)
                self.runs[level + 1] += len(chunk)
        ids = np.array([known[window] for window in map(tuple, unique.tolist())], np.int64)
        return ids[np.asarray(inverse).reshape(-1)].reshape(n, k)

    def window_probabilities(self, windows):
        """Class probabilities ``(W, classes)`` of windows given as the first frames of their
        U_infer units ``(W, U_infer)`` (all added with ``add_units``)."""
        windows = np.asarray(windows, np.int64)
        keys = windows[:, self.combinations].reshape(-1, self.combinations.shape[1])  # (W·n, K)
        for level, (block, tail) in enumerate(zip(self.parts.blocks4d, self.parts.tails)):
            keys = self._level(level, block, tail, keys)
        last = len(self.features) - 1
        sample = next(iter(self.features[last].values()))
        scores = []
        for chunk in self._batches(keys, keys.shape[1] * int(np.prod(sample.shape))):
            s = self.parts.head(self._stacked(last, chunk), training=False)  # (m·V, classes)
            if self.softmax:
                s = ops.softmax(s, axis=-1)
            scores.append(ops.convert_to_numpy(s))
        scores = np.concatenate(scores).reshape(len(windows), -1, scores[0].shape[-1])  # (W, n·V, classes)
        return scores.mean(axis=1)

    def drop_before(self, frame):
        """Drops every stored feature that reads a unit starting before ``frame``."""
        for level in range(len(self.features)):
            gone = [key for key, first in self.first[level].items() if first < frame]
            for key in gone:
                del self.features[level][key], self.first[level][key]
            if level and gone:
                gone = set(gone)
                self.keys[level] = {w: k for w, k in self.keys[level].items() if k not in gone}


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


def video_timeline(model, path, sampling=None, *, window=DEFAULT_WINDOW_SECONDS, hop=DEFAULT_HOP_SECONDS,
                   mode="combinations", class_names=None, windows_per_call=8, max_elements=64 * 4 * 224 * 224 * 3,
                   max_frame_pixels=MAX_FRAME_PIXELS):
    """The ``Timeline`` of the video file ``path``: windows of about ``window`` seconds every ``hop``
    seconds (``timeline_grid``), each with ``model``'s test protocol from ``sampling`` (default: the
    model's fixed U/T and the defaults) — the probabilities of ``predict`` on that window alone.

    ``windows_per_call`` windows are computed together (their new units and block windows batched);
    ``max_elements`` bounds one call's input. A video shorter than one window gets one window over
    all of it (``predict``'s answer). Raises ``VideoReadError`` naming the file when it cannot be read
    or no frame decodes; a stream that stops early (a damaged file) ends the timeline there, with a
    warning.
    """
    if mode not in ("combinations", "all_units"):
        raise ValueError(f"`mode` must be 'combinations' or 'all_units', got {mode!r}")
    sampling = sampling or resolve_sampling(model)
    fps = frame_rate(path, max_frame_pixels)
    grid = timeline_grid(sampling, fps, window, hop)
    shared = _SharedAlgorithm1(model, sampling, mode, max_elements)
    args = dict(crop_size=sampling.test_crop, short_side=sampling.short_side, num_crops=sampling.test_num_crops)

    def views(frames):  # (T, H, W, 3) uint8 → (V, T, S, S, 3) float32
        return eval_transform(tf.convert_to_tensor(frames), **args).numpy()

    held, cut, errors = {}, [], []  # frames kept by index; units cut and not run yet: (start, views)
    times, recent = {}, collections.deque(maxlen=grid.window_frames + 1)
    results, next_unit, next_window = [], 0, 0  # (first frame, probabilities)
    offsets = {(grid.unit_step // 2 + t * grid.stride) % grid.unit_step for t in range(grid.frames_per_unit)}

    def run_windows(count):
        nonlocal next_window
        if cut:
            shared.add_units([s for s, _ in cut], np.stack([v for _, v in cut]))
            cut.clear()
        starts = [grid.unit_start(k * grid.hop_units + np.arange(grid.num_units))
                  for k in range(next_window, next_window + count)]
        probabilities = shared.window_probabilities(starts)
        results.extend((next_window * grid.hop_frames + i * grid.hop_frames, p) for i, p in enumerate(probabilities))
        next_window += count
        shared.drop_before(grid.unit_start(next_window * grid.hop_units))

    index = -1
    for index, (frame, time) in enumerate(stream_frames(path, True, max_frame_pixels, errors)):
        recent.append(time)
        if index % grid.hop_frames == 0 or (index + 1 - grid.window_frames) % grid.hop_frames == 0:
            times[index] = time
        if index >= grid.unit_step // 2 and index % grid.unit_step in offsets:
            held[index] = frame
        if index == grid.unit_start(next_unit) + grid.stride * (grid.frames_per_unit - 1):  # a unit is complete
            start = grid.unit_start(next_unit)
            cut.append((start, views(np.stack([held[i] for i in grid.unit_frames(start)]))))
            next_unit += 1
            for i in [i for i in held if i < grid.unit_start(next_unit)]:
                del held[i]
        # windows whose units are cut and whose frames have all been decoded
        by_units, by_frames = next_unit - grid.num_units, index + 1 - grid.window_frames
        ready = 0 if min(by_units, by_frames) < 0 else min(by_units // grid.hop_units, by_frames // grid.hop_frames) + 1
        if ready - next_window >= windows_per_call:
            run_windows(ready - next_window)
    count = index + 1
    if count == 0:
        raise VideoReadError(f"{path}: no frame decodes" + (f" ({errors[0]})" if errors else ""))
    if errors:
        logger.warning("%s: decoding stopped or skipped packets (%s); the timeline covers the %d frames that "
                       "decoded", path, errors[0], count)
    complete = (count - grid.window_frames) // grid.hop_frames + 1 if count >= grid.window_frames else 0
    if complete > next_window:
        run_windows(complete - next_window)
    held.clear()
    end_time = recent[-1] + 1.0 / fps
    rows = [(first, p, times[first], times[first + grid.window_frames - 1] + 1.0 / fps) for first, p in results]
    covered = results[-1][0] + grid.window_frames if results else 0
    if covered < count:  # the end: one window ending at the last frame (or all of a short video)
        first = max(0, count - grid.window_frames)
        length = count - first
        indices = first + segment_indices(length, grid.num_units, grid.frames_per_unit, grid.stride,
                                          training=False).numpy()
        try:
            frames = read_frames(path, indices.reshape(-1), max_frame_pixels)
        except VideoReadError as error:
            logger.warning("%s: the last %d frames cannot be read again (%s); the timeline ends at frame %d",
                           path, length, error, covered)
        else:
            shared.drop_before(first)
            unit_views = np.stack([views(f) for f in frames.reshape((grid.num_units, -1) + frames.shape[1:])])
            new = list({s: i for i, s in reversed(list(enumerate(indices[:, 0].tolist())))
                        if not shared.has_unit(s)}.values())
            shared.add_units(indices[new, 0], unit_views[new])
            probabilities = shared.window_probabilities(indices[None, :, 0])[0]
            rows.append((first, probabilities, recent[-length], end_time))
    return Timeline(path=path, starts=np.array([r[2] for r in rows]), ends=np.array([r[3] for r in rows]),
                    probabilities=np.stack([r[1] for r in rows]), class_names=class_names,
                    first_frames=np.array([r[0] for r in rows], np.int64), grid=grid, fps=fps,
                    units_run=shared.runs[0], block_windows_run=shared.runs[1:], peak_units_held=shared.peak_units)


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
