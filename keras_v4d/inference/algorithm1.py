"""V4D Algorithm 1 (§3.4), the one engine behind video-level prediction, evaluation, the timeline
and the SavedModel's whole-video signatures.

Algorithm 1 divides U_infer units into ``train_units`` sections, runs the network on every
combination of one unit per section and averages the softmax scores. The official code re-runs the
whole network per combination (36 times for 10 → 4). The model's parts (``VideoModel.parts()``)
make it cheaper and still exact:

- the 3D part before the first 4D block mixes no units: it runs **once** per unit;
- a 4D block's output at position ``j`` of a combination depends only on the window of inputs
  ``j - r … j + r`` (``r`` = the block's ``unit_radius``; nothing beyond the combination's ends),
  and the 3D layers after it work per unit. So each block (for the window's centre unit only,
  ``unit_output``) and its 3D tail run once per **distinct window** (memoised), not once per
  combination and position;
- only the head (pooling and the classifier) runs per combination.

A model without 4D blocks has no block levels, which makes the same procedure the usual
clip/segment score averaging. All index work (combinations, windows, which are new) is NumPy on
the keys, so the engine also runs inside a ``tf.function``: the graph holds each block once per
distinct window.
"""

import collections
import itertools
import math

import numpy as np
from keras import ops

from keras_v4d.models.video_model import VideoModel, ends_in_softmax

MODES = ("combinations", "all_units")
"""Algorithm 1's combinations of one unit per section, or every unit through the network at once."""

# The papers run 36 combinations (10 → 4); 40 units in 4 sections make 10⁴. Every combination runs the
# head, and its windows of units are held per video and view (np.unique over B·V·n·K rows), so the
# count, a product, grows into hours and gigabytes fast: 400 → 4 makes 10⁸ and ends in the OOM killer.
MAX_UNIT_COMBINATIONS = 10_000
"""Most unit combinations one video's Algorithm 1 may run (``check_unit_combinations``)."""

MAX_ELEMENTS = 64 * 4 * 224 * 224 * 3
"""Most input elements sent through one part of the model in one call (bounds memory): 64 units of
4×224²×3 video; later parts, on smaller maps, take proportionally more units per call."""


def unit_sections(num_units, num_sections):
    """``num_units`` unit indices split into ``num_sections`` equal sections (V4D §3.4, Algorithm 1)."""
    bounds = [(i * num_units) // num_sections for i in range(num_sections + 1)]
    return [list(range(bounds[i], bounds[i + 1])) for i in range(num_sections)]


def count_unit_combinations(num_units, train_units):
    """How many combinations Algorithm 1 runs for U_infer = ``num_units``: the product of the section
    sizes (computed from the bounds, so a huge ``num_units`` costs nothing)."""
    bounds = [(i * num_units) // train_units for i in range(train_units + 1)]
    return math.prod(bounds[i + 1] - bounds[i] for i in range(train_units))


def check_unit_combinations(num_units, train_units, max_combinations=MAX_UNIT_COMBINATIONS, name="num_units"):
    """Raises a ``ValueError`` naming ``name`` (the U_infer argument), the number of combinations and
    the limit when ``num_units`` in ``train_units`` sections makes more than ``max_combinations``
    (None: no limit); returns the number."""
    if num_units < train_units:
        raise ValueError(f"video-level inference needs U_infer >= train_units, got U_infer={num_units} "
                         f"and train_units={train_units}.")
    count = count_unit_combinations(num_units, train_units)
    if max_combinations is not None and count > max_combinations:
        per_section = 1
        while (per_section + 1) ** train_units <= max_combinations:
            per_section += 1
        raise ValueError(
            f"{name}={num_units} (U_infer) in train_units={train_units} sections makes {count} unit combinations "
            f"for Algorithm 1, over the limit of {max_combinations} (max_combinations): each one runs the "
            f"network's head and is held in memory. Use at most {per_section * train_units} units, or mode "
            "'all_units' (every unit through the network at once).")
    return count


def unit_combinations(num_units, train_units, max_combinations=MAX_UNIT_COMBINATIONS):
    """Every choice of one unit per section: ``(n_combinations, train_units)`` int array; a
    ``ValueError`` (see ``check_unit_combinations``) when there would be more than ``max_combinations``."""
    check_unit_combinations(num_units, train_units, max_combinations)
    return np.array(list(itertools.product(*unit_sections(num_units, train_units))), dtype=np.int64)


def check_mode(mode):
    """A ``ValueError`` naming ``mode`` unless it is one of ``MODES``."""
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")


def mode_combinations(num_units, train_units, mode="combinations", max_combinations=MAX_UNIT_COMBINATIONS):
    """The unit combinations ``(n, K)`` that ``mode`` runs: Algorithm 1's, or for ``"all_units"`` one
    combination of every unit."""
    check_mode(mode)
    if mode == "all_units":
        return np.arange(num_units, dtype=np.int64)[None]
    return unit_combinations(num_units, train_units, max_combinations)


def video_parts(model):
    """``model.parts()`` with a head, or a ``ValueError`` saying why Algorithm 1 cannot run."""
    if not isinstance(model, VideoModel):
        raise ValueError(f"model '{model.name}' is a {type(model).__name__}, not a keras_v4d VideoModel; build it "
                         "with a keras_v4d builder or load it with keras.models.load_model")
    parts = model.parts()
    if parts.head is None:
        raise ValueError(f"model '{model.name}' has no head (include_top=False, pooling=None): video-level "
                         "inference needs class scores; build it with include_top=True or pooling='avg'/'max'.")
    return parts


def block_windows(keys, radius):
    """Per (combination, position) of ``keys`` ``(n, K)`` the keys of positions ``j-r … j+r`` (-1
    beyond the combination's ends): ``(n, K, 2r+1)``."""
    padded = np.pad(keys, ((0, 0), (radius, radius)), constant_values=-1)
    return np.stack([padded[:, j:j + 2 * radius + 1] for j in range(keys.shape[1])], axis=1)


class _Level:
    """The stored features of one level: ``table`` ``(N, V, …)`` (V copies per key, e.g. test crops),
    the row of each key, the smallest unit key each key reads and (levels ≥ 1) the key of each window."""

    def __init__(self):
        self.table = None
        self.row, self.first, self.known = {}, {}, {}
        self.next_key = 0

    def add(self, keys, firsts, rows):
        """Appends ``rows`` ``(m, V, …)`` under ``keys`` (m ints) reading units from ``firsts`` on."""
        start = 0 if self.table is None else int(self.table.shape[0])
        for i, (key, first) in enumerate(zip(keys, firsts)):
            self.row[key], self.first[key] = start + i, first
        self.table = rows if self.table is None else ops.concatenate([self.table, rows], axis=0)

    def drop_before(self, key):
        """Drops every row that reads a unit keyed below ``key``."""
        gone = {k for k, first in self.first.items() if first < key}
        if not gone:
            return
        kept = sorted((row, k) for k, row in self.row.items() if k not in gone)
        self.row = {k: i for i, (_, k) in enumerate(kept)}
        self.first = {k: self.first[k] for k in self.row}
        self.known = {window: k for window, k in self.known.items() if k not in gone}
        rows = np.array([row for row, _ in kept], np.int64)
        self.table = ops.take(self.table, ops.convert_to_tensor(rows), axis=0) if len(rows) else None


class Algorithm1:
    """Algorithm 1 for one model over a feature store: ``add_units`` runs the 3D part on units
    ``(m, V, T, H, W, 3)`` keyed by ints (e.g. a unit's first frame, or its index), ``scores`` gives
    the probabilities ``(P, V, classes)`` of P combinations ``(P, K)`` of those keys (with
    ``probabilities=False`` the head's outputs as they are, e.g. pooled features). Each level keeps
    its features (V copies per key, e.g. the test crops) until ``clear`` or ``drop_before``, so
    a block window is computed once over all ``scores`` calls: for one call (``VideoLevelPredictor``)
    or across the windows of a timeline.

    Args:
        model: a ``VideoModel`` with a head.
        max_elements: most input elements sent through a part in one call (bounds memory; None: no
            bound).
        probabilities: apply a softmax to a head that gives logits; False: never (features).
    """

    def __init__(self, model, max_elements=MAX_ELEMENTS, probabilities=True):
        self.parts = video_parts(model)
        self.softmax = probabilities and not ends_in_softmax(model)
        self.max_elements = max_elements
        self.clear()

    def clear(self):
        """Forgets every stored feature and count."""
        self.levels = [_Level() for _ in range(len(self.parts.blocks4d) + 1)]
        self.runs = [0] * len(self.levels)  # units (level 0) and distinct block windows (levels ≥ 1) computed
        self.peak_units = 0  # most units held at once

    def has_unit(self, key):
        """Whether the 3D features of unit ``key`` are stored."""
        return key in self.levels[0].row

    def _mapped(self, fn, table, rows):
        """``fn`` on ``table`` ``(N, V, …)`` gathered at int ``rows`` ``(m, w)``, sent as ``(c·V, w, …)``
        in calls of at most ``max_elements``; ``fn``'s ``(c·V, …)`` → ``(m, V, …)``."""
        width, copies = rows.shape[1], int(table.shape[1])
        per_item = width * math.prod(table.shape[1:]) if None not in table.shape[1:] else None
        step = len(rows) if self.max_elements is None or per_item is None else max(1, self.max_elements // per_item)
        outputs = []
        for i in range(0, len(rows), step):
            chunk = rows[i:i + step]
            x = ops.take(table, ops.convert_to_tensor(chunk.reshape(-1)), axis=0)  # (c·w, V, …)
            x = ops.moveaxis(ops.reshape(x, (len(chunk), width) + tuple(x.shape[1:])), 1, 2)  # (c, V, w, …)
            y = fn(ops.reshape(x, (len(chunk) * copies, width) + tuple(x.shape[3:])))
            outputs.append(ops.reshape(y, (len(chunk), copies) + tuple(y.shape[1:])))
        return outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=0)

    def add_units(self, keys, units):
        """Runs the 3D part on ``units`` ``(m, V, T, H, W, 3)`` float32 and stores them under ``keys``
        (m distinct ints ≥ 0, not stored yet)."""
        units = ops.convert_to_tensor(units, dtype="float32")
        keys = [int(key) for key in np.asarray(keys).reshape(-1)]
        rows = self._mapped(lambda x: self.parts.n3d(x, training=False)[:, 0], units, np.arange(len(keys))[:, None])
        self.levels[0].add(keys, keys, rows)
        self.runs[0] += len(keys)
        self.peak_units = max(self.peak_units, len(self.levels[0].row))

    def _block_level(self, index, keys):
        """The level ``index + 1`` keys ``(P, K)`` of combinations whose level-``index`` keys are
        ``keys``; 4D block ``index`` (at each window's centre unit only) and its tail run on the
        distinct windows not stored yet."""
        block, tail = self.parts.blocks4d[index], self.parts.tails[index]
        below, above = self.levels[index], self.levels[index + 1]
        radius = block.unit_radius(int(below.table.shape[2]))
        n, k = keys.shape
        unique, inverse = np.unique(block_windows(keys, radius).reshape(n * k, -1), axis=0, return_inverse=True)
        windows = list(map(tuple, unique.tolist()))
        groups = collections.defaultdict(list)
        for window in windows:
            if window not in above.known:
                # Windows cut by the combination's ends (lo units missing on the left, hi on the right)
                # have fewer units; each such group runs as windows of its own length.
                valid = np.flatnonzero(np.asarray(window) >= 0)
                groups[(int(valid[0]), len(window) - 1 - int(valid[-1]))].append(window)
        for (lo, hi), new in sorted(groups.items()):
            def block_and_tail(x, centre=radius - lo):
                return tail(block.unit_output(x, centre, training=False), training=False)[:, 0]

            rows = np.array([[below.row[key] for key in window[lo:len(window) - hi]] for window in new], np.int64)
            new_keys = list(range(above.next_key, above.next_key + len(new)))
            above.next_key += len(new)
            above.known.update(zip(new, new_keys))
            above.add(new_keys, [min(below.first[key] for key in window if key >= 0) for window in new],
                      self._mapped(block_and_tail, below.table, rows))
            self.runs[index + 1] += len(new)
        ids = np.array([above.known[window] for window in windows], np.int64)
        return ids[np.asarray(inverse).reshape(-1)].reshape(n, k)

    def scores(self, combinations):
        """Class probabilities ``(P, V, classes)`` (a tensor; the head's outputs with ``probabilities=False``)
        of ``combinations`` ``(P, K)`` of stored unit keys: the block levels computed for the windows not
        stored yet, the head per combination."""
        keys = np.asarray(combinations, np.int64)
        for index in range(len(self.parts.blocks4d)):
            keys = self._block_level(index, keys)
        top = self.levels[-1]
        rows = np.vectorize(top.row.__getitem__, otypes=[np.int64])(keys)

        def head(x):
            scores = self.parts.head(x, training=False)
            return ops.softmax(scores, axis=-1) if self.softmax else scores

        return self._mapped(head, top.table, rows)

    def drop_before(self, key):
        """Drops every stored feature that reads a unit keyed below ``key``."""
        for level in self.levels:
            level.drop_before(key)
