"""Video-level inference (V4D Algorithm 1) and multi-view averaging.

Algorithm 1 divides ``U_infer`` units into ``train_units`` sections, runs the network on every
combination of one unit per section and averages the softmax scores. The official code re-runs
the whole network per combination (36 times for 10 → 4). Here the model's parts
(``VideoModel.parts()``) make it cheaper and still exact:

- the 3D part before the first 4D block mixes no units: it runs **once** per unit;
- a 4D block's output at position ``j`` of a combination depends only on the window of inputs
  ``j - r … j + r`` (``r`` = the block's ``unit_radius``; nothing beyond the combination's ends),
  and the 3D layers after it work per unit. So each block (for the window's centre unit only,
  ``unit_output``) and its 3D tail run once per **distinct window** (memoised), not once per
  combination and position;
- only the head (pooling and the classifier) runs per combination.

A model without 4D blocks has no block levels, which makes the same procedure the usual
clip/segment score averaging.
"""

import itertools
import math

import numpy as np
from keras import ops

from keras_v4d.models.video_model import VideoModel, ends_in_softmax

MODES = ("combinations", "all_units")

# The papers run 36 combinations (10 → 4); 40 units in 4 sections make 10⁴. Every combination runs the
# head, and its windows of units are held per video and view (np.unique over B·V·n·K rows), so the
# count, a product, grows into hours and gigabytes fast: 400 → 4 makes 10⁸ and ends in the OOM killer.
MAX_UNIT_COMBINATIONS = 10_000


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


def _windows(keys, radius):
    """Per (combination, position) the ids of positions ``j-r … j+r`` (-1 beyond the ends):
    ``(n, K, 2r+1)``."""
    padded = np.pad(keys, ((0, 0), (radius, radius)), constant_values=-1)
    return np.stack([padded[:, j:j + 2 * radius + 1] for j in range(keys.shape[1])], axis=1)


def _numpy(x):
    return ops.convert_to_numpy(x)


class VideoLevelPredictor:
    """Runs Algorithm 1 for one model: ``predictor(videos, train_units)`` → ``(B, classes)``.

    Features stay in the backend's tensors, one row per distinct unit (a flat table); each call
    gathers the rows it needs, so no window of feature maps is materialised beyond one call.

    Args:
        model: a ``VideoModel`` with a head.
        max_elements: most input elements sent through a part in one call (bounds memory). The
            default holds 64 units of 4×224²×3 video; later parts, on smaller maps, take
            proportionally more units per call.
        max_combinations: most unit combinations per video (``MAX_UNIT_COMBINATIONS``; None: no
            limit); more is a ``ValueError`` naming U_infer, the count and the limit.
    """

    def __init__(self, model, max_elements=64 * 4 * 224 * 224 * 3, max_combinations=MAX_UNIT_COMBINATIONS):
        self.model = model
        self.parts = video_parts(model)
        self.outputs_probabilities = ends_in_softmax(model)
        self.max_elements = max_elements
        self.max_combinations = max_combinations
        self.last_counts = None  # per 4D block: distinct windows per video it and its tail ran on

    def _gathered(self, fn, table, rows):
        """``fn`` on ``table[rows]`` for int ``rows`` ``(m, w)`` (each a group of w table rows,
        sent as one item ``(w, …)``), in calls of at most ``max_elements``; → the outputs, concatenated."""
        per_item = rows.shape[1] * int(np.prod(table.shape[1:]))
        step = max(1, self.max_elements // per_item)
        outputs = []
        for i in range(0, len(rows), step):
            chunk = rows[i:i + step]
            x = ops.take(table, ops.convert_to_tensor(chunk.reshape(-1)), axis=0)
            outputs.append(fn(ops.reshape(x, (len(chunk), rows.shape[1]) + tuple(table.shape[1:]))))
        return outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=0)

    def _block_level(self, block, tail, table, keys, frames):
        """Runs ``block`` (at each window's centre unit only) + ``tail`` once per distinct window.

        Args:
            table: ``(N, T, h, w, C)``, the distinct inputs of this level.
            keys: ``(P, K)``, the ``table`` rows that the K positions of each of P combinations read.
        Returns:
            The next table ``(M, T', h', w', C')``, its keys ``(P, K)`` and M.
        """
        radius = block.unit_radius(frames)
        windows = _windows(keys, radius)
        n, k = keys.shape
        unique, inverse = np.unique(windows.reshape(n * k, -1), axis=0, return_inverse=True)
        valid = unique >= 0
        left, right = np.argmax(valid, axis=1), np.argmax(valid[:, ::-1], axis=1)
        outputs, order = [], []
        for lo, hi in sorted(set(zip(left.tolist(), right.tolist()))):
            # Windows cut by the combination's ends (lo units missing on the left, hi on the right)
            # have fewer units; each such group runs as windows of its own length.
            rows = np.flatnonzero((left == lo) & (right == hi))

            def block_and_tail(window, centre=radius - lo):
                y = tail(block.unit_output(window, centre, training=False), training=False)
                return ops.reshape(y, (-1,) + tuple(y.shape[2:]))  # (m, 1, …) → (m, …)

            outputs.append(self._gathered(block_and_tail, table, unique[rows][:, lo:unique.shape[1] - hi]))
            order.append(rows)
        position = np.empty(len(unique), np.int64)
        position[np.concatenate(order)] = np.arange(len(unique))
        table = outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=0)
        return table, position[np.asarray(inverse).reshape(n, k)], len(unique)

    def __call__(self, videos, train_units):
        videos = ops.convert_to_tensor(videos, dtype="float32")
        batch, num_units = videos.shape[:2]
        combinations = unit_combinations(num_units, train_units, self.max_combinations)  # (n, K)

        def n3d(x):  # (m, 1, T, H, W, 3) → (m, T, h, w, C)
            return self.parts.n3d(x, training=False)[:, 0]

        # The 3D part mixes no units: one table row per (video, unit).
        units = ops.reshape(videos, (batch * num_units,) + tuple(videos.shape[2:]))
        table = self._gathered(n3d, units, np.arange(batch * num_units)[:, None])
        keys = (np.arange(batch)[:, None, None] * num_units + combinations[None]).reshape(-1, train_units)
        counts = []
        for block, tail in zip(self.parts.blocks4d, self.parts.tails):
            table, keys, count = self._block_level(block, tail, table, keys, table.shape[1])
            counts.append(count // batch)
        self.last_counts = counts
        scores = self._gathered(lambda x: self.parts.head(x, training=False), table, keys)  # (B·n, classes)
        if not self.outputs_probabilities:
            scores = ops.softmax(scores, axis=-1)
        return _numpy(scores).reshape(batch, len(combinations), -1).mean(axis=1)


def video_level_predict(model, videos, train_units, mode="combinations", predictor=None):
    """Video-level class probabilities ``(B, classes)``.

    Args:
        model: a model of this package (softmax or logits output).
        videos: ``(B, U_infer, T, H, W, 3)``, or ``(B, V, U_infer, T, H, W, 3)`` with V views
            (crops) per video, whose scores are averaged.
        train_units: U the model was trained with (the number of sections).
        mode: ``"combinations"`` (Algorithm 1) or ``"all_units"`` (all units through the network at once).
        predictor: a ``VideoLevelPredictor`` for ``model`` to reuse across calls.
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
    videos = ops.convert_to_tensor(videos, dtype="float32")
    if len(videos.shape) not in (6, 7):
        raise ValueError(f"`videos` must be (B, U, T, H, W, 3) or (B, V, U, T, H, W, 3), got {tuple(videos.shape)}.")
    views = 1
    if len(videos.shape) == 7:
        views = videos.shape[1]
        videos = ops.reshape(videos, (-1,) + tuple(videos.shape[2:]))
    if mode == "all_units":
        scores = model(videos, training=False)
        if not ends_in_softmax(model):
            scores = ops.softmax(scores, axis=-1)
        scores = _numpy(scores)
    else:
        scores = (predictor or VideoLevelPredictor(model))(videos, train_units)
    return ops.convert_to_tensor(np.mean(scores.reshape(-1, views, scores.shape[-1]), axis=1))
