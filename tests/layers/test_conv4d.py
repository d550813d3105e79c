import keras
import numpy as np
import pytest

from keras_v4d.layers import Conv4D
from keras_v4d.layers.conv4d import conv4d_shifted_sum, conv4d_spatial_pointwise
from tests.reference import conv4d_eq1

pytestmark = pytest.mark.backend_agnostic

KERNELS = [(3, 1, 1, 1), (3, 3, 1, 1), (3, 3, 3, 3), (1, 3, 3, 3), (5, 1, 3, 1)]


@pytest.mark.parametrize("kernel_size", KERNELS)
@pytest.mark.parametrize("units", [1, 4, 5])
@pytest.mark.parametrize("use_bias", [True, False])
def test_conv4d_equals_eq1(kernel_size, units, use_bias):
    x = np.random.randn(2, units, 3, 5, 6, 4).astype("float32")
    layer = Conv4D(3, kernel_size, use_bias=use_bias, bias_initializer="random_normal")
    y = keras.ops.convert_to_numpy(layer(x))
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    bias = keras.ops.convert_to_numpy(layer.bias) if use_bias else None
    assert y.shape == (2, units, 3, 5, 6, 3)
    np.testing.assert_allclose(y, conv4d_eq1(x, kernel, bias), atol=1e-4, rtol=0)


@pytest.mark.parametrize("units", [1, 2, 4, 7])
def test_spatial_pointwise_fast_path_equals_general_path(units):
    x = np.random.randn(3, units, 4, 5, 5, 6).astype("float32")
    kernel = np.random.randn(3, 3, 1, 1, 6, 8).astype("float32")
    fast = keras.ops.convert_to_numpy(conv4d_spatial_pointwise(x, kernel))
    general = keras.ops.convert_to_numpy(conv4d_shifted_sum(x, kernel))
    np.testing.assert_allclose(fast, general, atol=1e-4, rtol=0)


def test_units_of_one_video_do_not_mix_with_another():
    x = np.random.randn(2, 4, 2, 4, 4, 3).astype("float32")
    layer = Conv4D(2, (3, 3, 3, 3))
    y0 = keras.ops.convert_to_numpy(layer(x))
    x[1] = 0.0  # the second video must not influence the first
    y1 = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_array_equal(y0[0], y1[0])


def test_unknown_units_in_a_functional_model():
    inputs = keras.Input((None, 2, None, None, 3))
    model = keras.Model(inputs, Conv4D(4, (3, 3, 3, 3))(inputs))
    for units in (1, 4, 10):
        assert model(np.zeros((1, units, 2, 6, 6, 3), "float32")).shape == (1, units, 2, 6, 6, 4)


def test_count_macs_counts_every_tap():
    layer = Conv4D(8, (3, 3, 1, 1))
    assert layer.count_macs((1, 4, 4, 28, 28, 16)) == 4 * 4 * 28 * 28 * 8 * 9 * 16


@pytest.mark.parametrize("kernel_size, message", [
    ((3, 3, 1), "kernel_size` must have 4 entries"),
    ((2, 3, 1, 1), "must be odd"),
    ((3, 3, 1, 4), "must be odd"),
    ((0, 1, 1, 1), ">= 1"),
    ("abc", "kernel_size"),
])
def test_bad_kernel_size(kernel_size, message):
    with pytest.raises(ValueError, match=message):
        Conv4D(4, kernel_size)


def test_bad_input_rank_names_the_shape():
    with pytest.raises(ValueError, match=r"rank-6 .*\(2, 3, 4, 4, 3\)"):
        Conv4D(4)(np.zeros((2, 3, 4, 4, 3), "float32"))


def test_wrong_channel_count_names_the_shape():
    layer = Conv4D(4)
    layer(np.zeros((1, 2, 2, 4, 4, 3), "float32"))
    with pytest.raises(ValueError, match=r"expects 3 input channels.*5 channels"):
        layer(np.zeros((1, 2, 2, 4, 4, 5), "float32"))


def test_bad_filters():
    with pytest.raises(ValueError, match="filters"):
        Conv4D(0)
