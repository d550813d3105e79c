"""The Algorithm 1 engine (keras_v4d.inference.algorithm1): its feature store computes each distinct
window of a 4D block once, also across calls (the timeline's windows), and its scores are the
network's on each combination."""

import keras
import numpy as np
import pytest

from keras_v4d.inference.algorithm1 import Algorithm1, mode_combinations, unit_combinations
from keras_v4d.models import build_resnet3d

pytestmark = pytest.mark.backend_agnostic


def distinct_windows(combinations, radii):
    """Per 4D block, how many distinct inputs Algorithm 1 needs it on: the feature at position j of a
    combination is named, at the level above, by the names of positions j-r … j+r of that
    combination (None beyond its ends); the names of the unit level are the units."""
    names = [tuple(int(u) for u in combination) for combination in combinations]
    counts = []
    for radius in radii:
        names = [tuple(tuple(row[j + d] if 0 <= j + d < len(row) else None for d in range(-radius, radius + 1))
                       for j in range(len(row))) for row in names]
        counts.append(len({name for row in names for name in row}))
    return counts


def count_block_inputs(monkeypatch, model, copies):
    """Wraps each 4D block's ``unit_output`` to count the windows sent to it (``copies`` rows per
    window, e.g. the crops); → the list of counts, one per block, updated as the blocks run."""
    counts = []
    for i, block in enumerate(model.parts().blocks4d):
        counts.append(0)

        def counted(x, index, training=None, block=block, i=i, run=block.unit_output):
            counts[i] += int(x.shape[0]) // copies
            return run(x, index, training=training)

        monkeypatch.setattr(block, "unit_output", counted)
    return counts


def block_radii(model, frames_per_unit):
    return [block.unit_radius(frames_per_unit) for block in model.parts().blocks4d]


def trained_like(model, seed=0, scale=0.02):
    """Random weights everywhere (the 4D blocks start as identities, which would hide them)."""
    rng = np.random.default_rng(seed)
    model.set_weights([np.abs(w) + 0.5 if "variance" in v.path else w + rng.normal(0, scale, w.shape).astype(w.dtype)
                       for v, w in zip(model.weights, model.get_weights())])
    return model


def test_the_store_runs_each_distinct_window_once_across_calls(monkeypatch):
    model = trained_like(build_resnet3d(18, "v4d", classes=3, width=0.25))  # narrow: the same code paths
    units = np.random.default_rng(0).random((12, 2, 2, 32, 32, 3)).astype("float32")  # 12 units, 2 crops each
    keys = 100 + np.arange(12)  # e.g. the units' first frames
    engine = Algorithm1(model)
    engine.add_units(keys, units)
    counts = count_block_inputs(monkeypatch, model, copies=2)
    combinations = unit_combinations(8, 4)  # a window of 8 units
    first, second = keys[combinations], keys[2 + combinations]  # the next window: 2 units on
    engine.scores(first)
    scores = keras.ops.convert_to_numpy(engine.scores(second))  # (P, V, classes)
    radii = block_radii(model, 2)
    expected = distinct_windows(np.concatenate([first, second]), radii)
    assert counts == expected == engine.runs[1:] and engine.runs[0] == 12
    assert sum(distinct_windows(first, radii)) + sum(distinct_windows(second, radii)) > sum(expected)  # shared
    assert scores.max() < 0.99  # not saturated: a wrong feature would show
    for v in range(2):  # the network itself on each combination of each crop
        naive = keras.ops.convert_to_numpy(model(units[2 + combinations][:, :, v], training=False))
        np.testing.assert_allclose(scores[:, v], naive, atol=1e-5)
    engine.drop_before(102)  # features reading units 100 and 101 go; the second window reads none of them
    assert not engine.has_unit(101) and engine.has_unit(102)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(engine.scores(second)), scores, atol=1e-6)
    assert counts == expected  # nothing the second window needs was dropped or run again
    engine.add_units(keys[:2], units[:2])
    engine.scores(first)
    assert counts[0] > expected[0] and engine.runs[0] == 14  # what read a dropped unit runs again


def test_a_logit_model_gets_probabilities_and_all_units_is_one_combination():
    model = trained_like(build_resnet3d(18, "f4d", classes=3, classifier_activation=None, width=0.25))
    units = np.random.default_rng(1).random((5, 1, 2, 32, 32, 3)).astype("float32")
    engine = Algorithm1(model)
    engine.add_units(np.arange(5), units)
    combinations = mode_combinations(5, 2, "all_units")
    assert combinations.tolist() == [[0, 1, 2, 3, 4]]
    logits = keras.ops.convert_to_numpy(model(units[None, :, 0], training=False))
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    assert probabilities.max() < 0.99  # logits, not one-hot scores
    np.testing.assert_allclose(keras.ops.convert_to_numpy(engine.scores(combinations))[:, 0], probabilities,
                               atol=1e-5)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        mode_combinations(5, 2, "mean")


def test_a_small_element_budget_gives_the_same_scores():
    model = trained_like(build_resnet3d(18, "v4d", classes=3, width=0.25))  # narrow: the same code paths
    units = np.random.default_rng(2).random((6, 1, 2, 32, 32, 3)).astype("float32")
    combinations = unit_combinations(6, 3)
    answers = []
    for max_elements in (None, 1):  # everything in one call; one item per call
        engine = Algorithm1(model, max_elements)
        engine.add_units(np.arange(6), units)
        answers.append(keras.ops.convert_to_numpy(engine.scores(combinations)))
    np.testing.assert_allclose(answers[1], answers[0], atol=1e-5)
