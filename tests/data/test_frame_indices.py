import numpy as np
import pytest
import tensorflow as tf

from keras_v4d.data import segment_indices, unit_span

# (num_frames, U, T, stride) -> expected evaluation indices, worked out by hand from the official loader's rule (the
# official TSN-derived loader's centring): span = (T-1)·τ + 1, tick = (n - span + 1) / U, unit u
# starts at int(tick/2 + tick·u); a video shorter than a unit starts every unit at 0; indices are
# clamped to the video. E.g. n=300, U=4, T=4, τ=8: span 25, tick 69, starts 34, 103, 172, 241.
EVAL_CASES = [
    ((300, 4, 4, 8), [[34, 42, 50, 58], [103, 111, 119, 127], [172, 180, 188, 196], [241, 249, 257, 265]]),
    ((16, 4, 2, 1), [[1, 2], [5, 6], [9, 10], [13, 14]]),                                # tick 3.75
    ((10, 3, 2, 2), [[1, 3], [4, 6], [6, 8]]),                                           # tick 8/3
    ((20, 4, 4, 8), [[0, 8, 16, 19]] * 4),                                               # n < T·τ
    ((3, 4, 1, 1), [[0], [1], [1], [2]]),                                                # n < U: tick 0.75
    ((1, 2, 3, 4), [[0, 0, 0], [0, 0, 0]]),
    ((0, 2, 2, 1), [[0, 0], [0, 0]]),                                                    # empty: no crash
]


def official_test_starts(num_frames, num_units, frames_per_unit, stride):
    """The official loader's test-time offsets, written as its Python (float64) code computes them."""
    tick = (num_frames - ((frames_per_unit - 1) * stride + 1) + 1) / float(num_units)
    return [int(tick / 2.0 + tick * x) for x in range(num_units)]


@pytest.mark.parametrize("num_frames", [25, 26, 27, 31, 64, 99, 100, 101, 250, 299, 300, 301, 1000, 12345])
@pytest.mark.parametrize("units, frames, stride", [(4, 4, 8), (10, 4, 8), (3, 8, 2), (7, 1, 1)])
def test_evaluation_starts_match_the_official_loader(num_frames, units, frames, stride):
    if num_frames < (frames - 1) * stride + 1:
        pytest.skip("shorter than a unit")
    starts = segment_indices(num_frames, units, frames, stride, training=False).numpy()[:, 0]
    assert starts.tolist() == official_test_starts(num_frames, units, frames, stride)


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
