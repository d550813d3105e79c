import itertools

import keras
import numpy as np
import pytest

import keras_v4d
from keras_v4d.inference import (
    MAX_UNIT_COMBINATIONS,
    VideoLevelPredictor,
    check_unit_combinations,
    count_unit_combinations,
    unit_combinations,
    unit_sections,
    video_level_predict,
)
from tests.inference.test_algorithm1 import distinct_windows

pytestmark = pytest.mark.backend_agnostic


def _np(x):
    return keras.ops.convert_to_numpy(x)


def naive_combinations(model, videos, train_units):
    """The official code's way: the whole network re-run on every combination of input units."""
    sections = unit_sections(videos.shape[1], train_units)
    combinations = list(itertools.product(*sections))
    clips = np.concatenate([videos[:, list(c)] for c in combinations])  # every combination in one batch
    scores = _np(model(clips, training=False)).reshape(len(combinations), videos.shape[0], -1)
    return scores.mean(axis=0)


def _trained_like(model):
    for layer in model.layers:
        if isinstance(layer, (keras_v4d.layers.Residual4D, keras_v4d.layers.F4DBlock)):
            for w in layer.weights:
                if "gamma" in w.path:
                    w.assign(np.ones(w.shape, "float32"))
                elif "kernel" in w.path:
                    w.assign(np.random.randn(*w.shape).astype("float32") * 0.05)
    return model


def test_sections_and_combinations():
    assert unit_sections(10, 4) == [[0, 1], [2, 3, 4], [5, 6], [7, 8, 9]]
    assert len(unit_combinations(10, 4)) == 36  # the paper's 10 → 4 case
    assert unit_combinations(4, 4).tolist() == [[0, 1, 2, 3]]
    with pytest.raises(ValueError, match="U_infer=3 and train_units=4"):
        unit_combinations(3, 4)


def test_the_number_of_combinations_is_bounded_before_any_is_made():
    for units, train_units in ((10, 4), (7, 4), (40, 4), (9, 2), (5, 5)):
        assert count_unit_combinations(units, train_units) == len(unit_combinations(units, train_units))
    assert count_unit_combinations(400, 4) == 100**4 and count_unit_combinations(10**12, 4) == (10**12 // 4) ** 4
    assert MAX_UNIT_COMBINATIONS == count_unit_combinations(40, 4)  # 40 units in 4 sections: the most allowed
    message = (r"num_units=400 \(U_infer\) in train_units=4 sections makes 100000000 unit combinations for "
               r"Algorithm 1, over the limit of 10000 \(max_combinations\).* Use at most 40 units, or mode 'all_units'")
    with pytest.raises(ValueError, match=message):
        unit_combinations(400, 4)
    with pytest.raises(ValueError, match=r"--num_units=41 \(U_infer\) .* makes 11000 unit combinations"):
        check_unit_combinations(41, 4, name="--num_units")
    assert check_unit_combinations(400, 4, max_combinations=None) == 10**8  # no limit: counted, not built
    assert len(unit_combinations(12, 2, max_combinations=36)) == 36
    with pytest.raises(ValueError, match="makes 36 unit combinations .* limit of 35 .* at most 10 units"):
        VideoLevelPredictor(keras_v4d.V4DResNet18(classes=2), max_combinations=35)(np.zeros((1, 12, 2, 8, 8, 3)), 2)


@pytest.mark.parametrize("units", [4, 7, 10])
def test_combinations_equal_naive_rerun(units):
    model = _trained_like(keras_v4d.V4DResNet18(classes=5))
    videos = np.random.rand(2, units, 2, 32, 32, 3).astype("float32")
    ours = _np(video_level_predict(model, videos, train_units=4))
    np.testing.assert_allclose(ours, naive_combinations(model, videos, 4), atol=1e-5)
    np.testing.assert_allclose(ours.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("units", [4, 7, 10])
@pytest.mark.parametrize("builder", [
    lambda: keras_v4d.V4DResNet50(classes=3),
    lambda: keras_v4d.V4DResNet50(classes=3, block4d_placement="paper"),
    lambda: keras_v4d.F4DResNet18(classes=3),
], ids=["v4d_r50_code", "v4d_r50_paper", "f4d_r18"])
def test_memoised_algorithm_equals_naive_rerun(builder, units):
    """Memoising every 4D block per distinct window of units is exact (V4D Algorithm 1)."""
    model = _trained_like(builder())
    videos = np.random.rand(1, units, 2, 32, 32, 3).astype("float32")  # T=2: F4D's attention reaches 2 units
    np.testing.assert_allclose(_np(video_level_predict(model, videos, train_units=4)),
                               naive_combinations(model, videos, 4), atol=1e-5)


def test_the_predictor_counts_the_distinct_windows_each_block_ran_on():
    model = keras_v4d.V4DResNet18(classes=3)
    predictor = VideoLevelPredictor(model)
    video_level_predict(model, np.random.rand(2, 10, 2, 32, 32, 3).astype("float32"), 4, predictor=predictor)
    radii = [block.unit_radius(2) for block in model.parts().blocks4d]
    assert predictor.last_counts == distinct_windows(unit_combinations(10, 4), radii)  # per video
    assert predictor.last_counts[0] < 36 * 4  # fewer than the combinations' positions


def test_f4d_logit_model_with_views():
    model = _trained_like(keras_v4d.F4DResNet18(classes=3, classifier_activation=None))
    videos = np.random.rand(1, 3, 5, 2, 32, 32, 3).astype("float32")  # 3 views of 5 units
    ours = _np(video_level_predict(model, videos, train_units=2))
    per_view = []
    for v in range(3):
        sections = unit_sections(5, 2)
        logits = np.stack([_np(model(videos[:, v][:, list(c)], training=False)) for c in itertools.product(*sections)])
        probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        per_view.append(probabilities.mean(0))
    np.testing.assert_allclose(ours, np.mean(per_view, axis=0), atol=1e-5)


def test_model_without_4d_blocks_averages_combination_scores():
    model = keras_v4d.TSNResNet18(classes=4)
    videos = np.random.rand(2, 6, 2, 32, 32, 3).astype("float32")
    np.testing.assert_allclose(_np(video_level_predict(model, videos, 3)), naive_combinations(model, videos, 3),
                               atol=1e-5)


def test_all_units_mode_is_one_pass():
    model = keras_v4d.V4DResNet18(classes=4)
    videos = np.random.rand(2, 6, 2, 32, 32, 3).astype("float32")
    np.testing.assert_allclose(_np(video_level_predict(model, videos, 4, mode="all_units")),
                               _np(model(videos, training=False)), atol=1e-6)


def test_bad_arguments():
    model = keras_v4d.V4DResNet18(classes=4)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        video_level_predict(model, np.zeros((1, 4, 2, 32, 32, 3)), 4, mode="mean")
    with pytest.raises(ValueError, match=r"`videos` must be .*\(1, 4, 32, 32, 3\)"):
        video_level_predict(model, np.zeros((1, 4, 32, 32, 3)), 4)
    with pytest.raises(ValueError, match="has no head"):
        VideoLevelPredictor(keras_v4d.TSNResNet18(include_top=False))


def test_a_model_that_fixes_its_unit_count_runs_algorithm_1_as_the_naive_way():
    """Algorithm 1 runs the 3D part on single units: it works on a model built with U fixed too."""
    model = _trained_like(keras_v4d.V4DResNet18(weights=None, classes=3, input_shape=(2, 2, 32, 32, 3)))
    videos = np.random.default_rng(0).normal(size=(2, 5, 2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(_np(video_level_predict(model, videos, 2)), naive_combinations(model, videos, 2),
                               atol=2e-5)
