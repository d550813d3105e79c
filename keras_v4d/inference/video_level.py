"""Video-level inference: V4D Algorithm 1 (``inference.algorithm1``) on batches of sampled videos,
and the averaging of their views."""

import numpy as np
from keras import ops

from keras_v4d.inference.algorithm1 import (
    MAX_ELEMENTS,
    MAX_UNIT_COMBINATIONS,
    Algorithm1,
    check_mode,
    unit_combinations,
)
from keras_v4d.models.video_model import ends_in_softmax


class VideoLevelPredictor:
    """Runs Algorithm 1 for one model: ``predictor(videos, train_units)`` → ``(B, classes)``.

    Each call has a feature store of its own (one row per distinct unit of each video, then per
    distinct window of each 4D block), dropped when the call returns.

    Args:
        model: a ``VideoModel`` with a head.
        max_elements: most input elements sent through a part in one call (bounds memory;
            ``algorithm1.MAX_ELEMENTS``).
        max_combinations: most unit combinations per video (``MAX_UNIT_COMBINATIONS``; None: no
            limit); more is a ``ValueError`` naming U_infer, the count and the limit.
    """

    def __init__(self, model, max_elements=MAX_ELEMENTS, max_combinations=MAX_UNIT_COMBINATIONS):
        self.model = model
        self.engine = Algorithm1(model, max_elements)
        self.max_combinations = max_combinations
        self.last_counts = None  # per 4D block: distinct windows per video it and its tail ran on

    def __call__(self, videos, train_units):
        videos = ops.convert_to_tensor(videos, dtype="float32")
        batch, num_units = videos.shape[:2]
        combinations = unit_combinations(num_units, train_units, self.max_combinations)  # (n, K)
        keys = (np.arange(batch)[:, None, None] * num_units + combinations[None]).reshape(-1, train_units)
        self.engine.clear()
        try:
            self.engine.add_units(np.arange(batch * num_units),  # one key per (video, unit); V = 1
                                  ops.reshape(videos, (batch * num_units, 1) + tuple(videos.shape[2:])))
            scores = ops.convert_to_numpy(self.engine.scores(keys))  # (B·n, 1, classes)
            self.last_counts = [count // batch for count in self.engine.runs[1:]]
        finally:
            self.engine.clear()
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
    check_mode(mode)
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
        scores = ops.convert_to_numpy(scores)
    else:
        scores = (predictor or VideoLevelPredictor(model))(videos, train_units)
    return ops.convert_to_tensor(np.mean(scores.reshape(-1, views, scores.shape[-1]), axis=1))
