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

import numpy as np
from keras import ops

from keras_v4d.models.video_model import VideoModel

MODES = ("combinations", "all_units")


def unit_sections(num_units, num_sections):
    """``num_units`` unit indices split into ``num_sections`` equal sections (V4D §3.1's rule)."""
    bounds = [(i * num_units) // num_sections for i in range(num_sections + 1)]
    return [list(range(bounds[i], bounds[i + 1])) for i in range(num_sections)]


def unit_combinations(num_units, train_units):
    """Every choice of one unit per section: ``(n_combinations, train_units)`` int array."""
    if num_units < train_units:
        raise ValueError(f"video-level inference needs U_infer >= train_units, got U_infer={num_units} "
                         f"and train_units={train_units}.")
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


def outputs_probabilities(model):
    """Whether ``model`` ends in a softmax (otherwise its scores are logits or features)."""
    config = model.get_config() if isinstance(model, VideoModel) else {}
    return bool(config.get("include_top")) and config.get("classifier_activation") == "softmax"


def _windows(keys, radius):
    """Per (combination, position) the ids of positions ``j-r … j+r`` (-1 beyond the ends):
    ``(n, K, 2r+1)``."""
    padded = np.pad(keys, ((0, 0), (radius, radius)), constant_values=-1)
    return np.stack([padded[:, j:j + 2 * radius + 1] for j in range(keys.shape[1])], axis=1)


def _numpy(x):
    return ops.convert_to_numpy(x)


class VideoLevelPredictor:
    """Runs Algorithm 1 for one model: ``predictor(videos, train_units)`` → ``(B, classes)``.

    Args:
        model: a ``VideoModel`` with a head.
        max_elements: most input elements sent through a part in one call (bounds memory). The
            default holds 64 units of 4×224²×3 video; later parts, on smaller maps, take
            proportionally more units per call.
    """

    def __init__(self, model, max_elements=64 * 4 * 224 * 224 * 3):
        self.model = model
        self.parts = video_parts(model)
        self.outputs_probabilities = outputs_probabilities(model)
        self.max_elements = max_elements
        self.last_counts = None  # distinct windows each 4D block and its tail ran on, set by each call

    def _in_chunks(self, fn, x):
        """``fn`` over the leading axis of ``x``, in chunks of at most ``max_elements`` elements."""
        step = max(1, self.max_elements // max(1, int(np.prod(x.shape[1:]))))
        return np.concatenate([_numpy(fn(x[i:i + step])) for i in range(0, len(x), step)])

    def _block_level(self, block, tail, table, keys, frames):
        """Runs ``block`` (at the window centre only) + ``tail`` once per distinct window; returns
        the new table, keys and the number of distinct windows."""
        radius = block.unit_radius(frames)
        windows = _windows(keys, radius)
        n, k = keys.shape
        unique, inverse = np.unique(windows.reshape(n * k, -1), axis=0, return_inverse=True)
        batch = table.shape[0]
        outputs = None
        valid = unique >= 0
        left, right = np.argmax(valid, axis=1), np.argmax(valid[:, ::-1], axis=1)
        for lo, hi in sorted(set(zip(left.tolist(), right.tolist()))):
            # Windows cut by the combination's ends (lo units missing on the left, hi on the right)
            # have fewer units; each such group is one batch.
            rows = np.flatnonzero((left == lo) & (right == hi))
            ids = unique[rows][:, lo:unique.shape[1] - hi]  # (m, w) valid window ids
            x = table[:, ids]  # (B, m, w, T, h, w, C)
            x = x.reshape((-1,) + x.shape[2:])  # (B·m, w, ...)

            def block_and_tail(window, centre=radius - lo):
                return tail(block.unit_output(window, centre, training=False), training=False)

            y = self._in_chunks(block_and_tail, x)[:, 0]
            y = y.reshape((batch, len(rows)) + y.shape[1:])
            if outputs is None:
                outputs = np.empty((batch, len(unique)) + y.shape[2:], y.dtype)
            outputs[:, rows] = y
        return outputs, np.asarray(inverse).reshape(n, k), len(unique)

    def __call__(self, videos, train_units):
        videos = _numpy(videos).astype("float32")
        batch, num_units = videos.shape[:2]
        combinations = unit_combinations(num_units, train_units)  # (n, K)
        table = self._in_chunks(lambda v: self.parts.n3d(v, training=False), videos)  # (B, U_infer, T, h, w, C)
        frames = table.shape[2]
        keys, counts = combinations, []
        for block, tail in zip(self.parts.blocks4d, self.parts.tails):
            table, keys, count = self._block_level(block, tail, table, keys, frames)
            counts.append(count)
        self.last_counts = counts
        selected = table[:, keys]  # (B, n, K, T, h, w, C)
        selected = selected.reshape((-1,) + selected.shape[2:])  # (B·n, K, ...)
        scores = self._in_chunks(lambda x: self.parts.head(x, training=False), selected)
        if not self.outputs_probabilities:
            scores = _numpy(ops.softmax(scores, axis=-1))
        return scores.reshape(batch, len(combinations), -1).mean(axis=1)


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
        if not outputs_probabilities(model):
            scores = ops.softmax(scores, axis=-1)
        scores = _numpy(scores)
    else:
        scores = (predictor or VideoLevelPredictor(model))(videos, train_units)
    return ops.convert_to_tensor(np.mean(scores.reshape(-1, views, scores.shape[-1]), axis=1))
