import numpy as np
import pytest
import tensorflow as tf

from keras_v4d.data import segment_indices, unit_span

# (num_frames, U, T, stride) -> expected evaluation indices, worked out by hand from V4D §3.1:
# sections [⌊i·n/U⌋, ⌊(i+1)·n/U⌋), unit centred in its section, indices clamped to the video.
EVAL_CASES = [
    ((300, 4, 4, 8), [[25, 33, 41, 49], [100, 108, 116, 124], [175, 183, 191, 199], [250, 258, 266, 274]]),
    ((16, 4, 2, 1), [[1, 2], [5, 6], [9, 10], [13, 14]]),
    ((10, 3, 2, 2), [[0, 2], [3, 5], [6, 8]]),
    ((20, 4, 4, 8), [[0, 0, 6, 14], [0, 3, 11, 19], [0, 8, 16, 19], [5, 13, 19, 19]]),  # n < T·τ
    ((3, 4, 1, 1), [[0], [0], [1], [2]]),                                                # n < U
    ((1, 2, 3, 4), [[0, 0, 0], [0, 0, 0]]),
    ((0, 2, 2, 1), [[0, 0], [0, 0]]),                                                    # empty: no crash
]


@pytest.mark.parametrize("args, expected", EVAL_CASES)
def test_evaluation_indices_are_exact(args, expected):
    indices = segment_indices(*args, training=False)
    assert indices.dtype == tf.int32
    np.testing.assert_array_equal(indices.numpy(), expected)


def _draw_starts(num_frames, units, frames, stride, draws):
    sample = tf.function(lambda: segment_indices(num_frames, units, frames, stride, training=True))
    return np.stack([sample().numpy() for _ in range(draws)])  # (draws, U, T)


def test_training_units_stay_in_their_sections_and_cover_every_start():
    n, units, frames, stride = 300, 4, 4, 8
    indices = _draw_starts(n, units, frames, stride, 10_000)
    span = unit_span(frames, stride)
    np.testing.assert_array_equal(np.diff(indices, axis=2), stride)  # a unit is T frames at stride τ
    for i in range(units):
        first, end = i * n // units, (i + 1) * n // units
        starts = indices[:, i, 0]
        assert starts.min() >= first and indices[:, i, -1].max() < end  # inside its own section
        assert set(starts.tolist()) == set(range(first, end - span + 1))  # every allowed start occurs


def test_training_with_sections_shorter_than_a_unit_starts_inside_the_section():
    n, units = 40, 4  # sections of 10 frames, units span 25
    indices = _draw_starts(n, units, 4, 8, 2_000)
    for i in range(units):
        assert set(indices[:, i, 0].tolist()) == set(range(10 * i, 10 * i + 10))
    assert indices.max() == n - 1  # clamped to the last frame, never past it


def test_training_is_reproducible_with_a_seed():
    a = segment_indices(300, 4, 4, 8, training=True, seed=7)
    b = segment_indices(300, 4, 4, 8, training=True, seed=7)
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_works_on_a_tensor_frame_count_in_graph():
    fn = tf.function(lambda n: segment_indices(n, 4, 4, 8, training=False))
    np.testing.assert_array_equal(fn(tf.constant(300)).numpy(), EVAL_CASES[0][1])


@pytest.mark.parametrize("kwargs", [dict(num_units=0), dict(frames_per_unit=-1), dict(stride=1.5)])
def test_bad_arguments(kwargs):
    args = dict(num_frames=10, num_units=2, frames_per_unit=2, stride=1, training=False) | kwargs
    with pytest.raises(ValueError, match=list(kwargs)[0]):
        segment_indices(**args)
