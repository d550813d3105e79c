"""Video-level inference (V4D Algorithm 1) and multi-view averaging.

Algorithm 1 splits the network at its first 4D block into N3D (before it) and N4D (from it on).
Nothing in N3D mixes units, so N3D runs **once** on all ``U_infer`` units; the feature maps are
divided into ``train_units`` sections, every combination of one unit per section goes through
N4D, and the softmax scores are averaged. (The official code re-runs the whole network for
every combination.) A model without 4D blocks is split before its head, which makes the same
procedure the usual clip/segment score averaging.
"""

import itertools

import keras
import numpy as np
from keras import ops

from keras_v4d.layers import F4DBlock, Residual4D, UnfoldUnits
from keras_v4d.layers.units import unfold_units

MODES = ("combinations", "all_units")
BLOCKS_4D = (Residual4D, F4DBlock)


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


def _nodes_in_order(model):
    return [node for depth in sorted(model._nodes_by_depth, reverse=True) for node in model._nodes_by_depth[depth]]


def split_point(model):
    """The folded tensor ``(B·U, T, h, w, C)`` entering the first 4D block (or the head)."""
    nodes = _nodes_in_order(model)
    for node in nodes:
        if isinstance(node.operation, BLOCKS_4D):
            unfold = node.input_tensors[0]._keras_history.operation
            return unfold._inbound_nodes[0].input_tensors[0]
    for node in nodes:
        if node.operation.name == "pool_thw":
            return node.input_tensors[0]
    raise ValueError(f"model '{model.name}' has neither a 4D block nor a 'pool_thw' head to split at; "
                     "build it with include_top=True or pooling='avg'/'max'.")


class _UnfoldKnownUnits(keras.layers.Layer):
    """``UnfoldUnits`` with a fixed number of units (N4D has no video input to read U from)."""

    def __init__(self, num_units, **kwargs):
        super().__init__(**kwargs)
        self.num_units = num_units

    def call(self, inputs):
        return unfold_units(inputs, self.num_units)

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] // self.num_units
        return (batch, self.num_units) + tuple(input_shape[1:])


class VideoLevelPredictor:
    """Runs Algorithm 1 for one model: ``predictor(videos, train_units)`` → ``(B, classes)``."""

    def __init__(self, model):
        self.model = model
        self.split = split_point(model)
        self.n3d = keras.Model(model.inputs[0], self.split, name=f"{model.name}_n3d")
        split_id = id(self.split)
        nodes = _nodes_in_order(model)
        # N4D: the nodes downstream of the split, in topological order.
        downstream, self.n4d_nodes = {split_id}, []
        for node in nodes:
            if any(id(t) in downstream for t in node.input_tensors):
                self.n4d_nodes.append(node)
                downstream.update(id(t) for t in node.outputs)
        output = model.outputs[0]
        self.output_id = id(output)
        activation = getattr(output._keras_history.operation, "activation", None)
        self.outputs_probabilities = getattr(activation, "__name__", "") == "softmax"
        self._n4d_models = {}

    def n4d(self, num_units):
        """N4D as a Keras model for ``num_units`` units: ``(N·num_units, T, h, w, C)`` → ``(N, classes)``.

        Built by replaying the downstream nodes on a new input, so it shares the model's weights
        and runs compiled (``predict_on_batch``) instead of layer by layer.
        """
        if num_units not in self._n4d_models:
            features = keras.Input(batch_shape=(None,) + tuple(self.split.shape[1:]), name="n3d_features")
            self._n4d_models[num_units] = keras.Model(features, self.run_n4d(features, num_units),
                                                      name=f"{self.model.name}_n4d_u{num_units}")
        return self._n4d_models[num_units]

    def run_n4d(self, features, num_units):
        """features ``(N·num_units, T, h, w, C)`` → class scores ``(N, classes)``."""
        values = {id(self.split): features}
        for node in self.n4d_nodes:
            if isinstance(node.operation, UnfoldUnits):
                outputs = _UnfoldKnownUnits(num_units)(values[id(node.input_tensors[0])])
            else:
                args, kwargs = node.arguments.fill_in(values)
                outputs = node.operation(*args, **{**kwargs, "training": False})
            values[id(node.outputs[0])] = outputs
        scores = values[self.output_id]
        return scores if self.outputs_probabilities else ops.softmax(scores, axis=-1)

    def __call__(self, videos, train_units, max_combinations_per_batch=16):
        batch, num_units = videos.shape[0], videos.shape[1]
        combinations = unit_combinations(num_units, train_units)
        features = self.n3d.predict_on_batch(videos)  # N3D once: (B·U_infer, T, h, w, C)
        features = ops.reshape(features, (batch, num_units) + tuple(features.shape[1:]))
        total = 0.0
        for start in range(0, len(combinations), max_combinations_per_batch):
            chosen = combinations[start:start + max_combinations_per_batch]  # (n, train_units)
            selected = ops.take(features, ops.convert_to_tensor(chosen.reshape(-1)), axis=1)
            folded = ops.reshape(selected, (-1, train_units) + tuple(features.shape[2:]))
            folded = ops.reshape(folded, (-1,) + tuple(features.shape[2:]))  # (B·n·train_units, ...)
            scores = self.n4d(train_units).predict_on_batch(folded)  # (B·n, classes)
            total = total + ops.sum(ops.reshape(scores, (batch, len(chosen), -1)), axis=1)
        return total / len(combinations)


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
        predictor = predictor or VideoLevelPredictor(model)
        if not predictor.outputs_probabilities:
            scores = ops.softmax(scores, axis=-1)
    else:
        scores = (predictor or VideoLevelPredictor(model))(videos, train_units)
    return ops.mean(ops.reshape(scores, (-1, views, scores.shape[-1])), axis=1)
