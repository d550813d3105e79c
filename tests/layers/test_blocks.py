import math

import keras
import numpy as np
import pytest

from keras_v4d.layers import (
    ChannelAttention,
    Conv4D,
    F4DBlock,
    Factorized4D,
    Residual4D,
    SpatioTemporalAttention,
    TemporalAttention,
    factorized_width,
)
from tests.reference import conv_nd_same, sigmoid

pytestmark = pytest.mark.backend_agnostic


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _weights(layer):
    return {w.path.split("/", 1)[-1]: _np(w) for w in layer.weights}


def _randomise(layer, scale=0.5):
    for w in layer.weights:
        w.assign(np.random.randn(*w.shape).astype("float32") * scale)


# --- Residual4D -------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_residual4d_is_identity_at_init(norm):
    x = np.random.randn(2, 4, 3, 5, 5, 8).astype("float32")
    layer = Residual4D(norm=norm)
    np.testing.assert_array_equal(_np(layer(x, training=True)), x)
    np.testing.assert_array_equal(_np(layer(x, training=False)), x)


def test_residual4d_code_form_is_x_plus_conv():
    x = np.random.randn(2, 4, 3, 5, 5, 8).astype("float32")
    layer = Residual4D(kernel_size=(3, 3, 3, 3))
    layer.build(x.shape)
    kernel = np.random.randn(3, 3, 3, 3, 8, 8).astype("float32") * 0.1
    layer.conv.kernel.assign(kernel)
    np.testing.assert_allclose(_np(layer(x)), x + conv_nd_same(x, kernel), atol=1e-4)
    assert len(layer.trainable_weights) == 1  # no bias, no BN in the released block


def test_residual4d_bad_norm():
    with pytest.raises(ValueError, match="norm"):
        Residual4D(norm="layernorm")


# --- one output unit (Algorithm 1 runs each 4D block on a window for its centre only) ------

@pytest.mark.parametrize("kernel_size", [(3, 1, 1, 1), (3, 3, 1, 1), (3, 3, 3, 3), (5, 3, 1, 1)])
@pytest.mark.parametrize("num_units", [1, 2, 5])
def test_conv4d_unit_output_is_that_unit_of_eq1(kernel_size, num_units):
    x = np.random.randn(2, num_units, 3, 4, 4, 6).astype("float32")
    layer = Conv4D(5, kernel_size)
    layer.build(x.shape)
    _randomise(layer)
    expected = conv_nd_same(x, _np(layer.kernel)) + _np(layer.bias)
    for index in range(num_units):
        got = _np(layer.unit_output(x, index))
        assert got.shape == (2, 1, 3, 4, 4, 5)
        np.testing.assert_allclose(got, expected[:, index:index + 1], atol=1e-4)


@pytest.mark.parametrize("make", [lambda: Conv4D(4), lambda: Residual4D(), lambda: F4DBlock()],
                         ids=["conv4d", "residual4d", "f4d"])
def test_unit_output_bad_index(make):
    layer = make()
    x = np.zeros((1, 3, 2, 4, 4, 4), "float32")
    layer.build(x.shape)
    for index in (3, -1):
        with pytest.raises(ValueError, match=f"index={index}"):
            layer.unit_output(x, index)


@pytest.mark.parametrize("make", [
    lambda: Residual4D(norm="none"), lambda: Residual4D(norm="batchnorm"),
    lambda: F4DBlock(dropout_rate=0.0), lambda: F4DBlock(attention=("channel",), dropout_rate=0.0)],
    ids=["v4d-code", "v4d-paper", "f4d", "f4d-ca-only"])
def test_block_unit_output_equals_slice_of_whole_output(make):
    x = np.random.randn(2, 5, 2, 4, 4, 16).astype("float32")
    layer = make()
    layer.build(x.shape)
    _randomise(layer, scale=0.2)
    for w in layer.weights:  # variances must stay positive for a meaningful BN
        if "variance" in w.path:
            w.assign(np.abs(_np(w)) + 0.5)
    whole = _np(layer(x, training=False))
    for index in range(5):
        np.testing.assert_allclose(_np(layer.unit_output(x, index, training=False)),
                                   whole[:, index:index + 1], atol=1e-4)


# --- Factorized4D -----------------------------------------------------------------------------

@pytest.mark.counts
@pytest.mark.parametrize("kernel_size, channels",
                         [((3, 3, 1, 1), 512), ((3, 3, 3, 3), 64), ((3, 1, 1, 1), 96), ((5, 3, 3, 3), 32)])
def test_factorized_width_and_params_match_full_4d(kernel_size, channels):
    u, t, h, w = kernel_size
    expected_m = math.floor(u * t * h * w * channels * channels / (u * h * w * channels + t * channels))
    assert factorized_width(kernel_size, channels, channels) == expected_m
    layer = Factorized4D(channels, kernel_size)
    layer.build((None, 4, 4, 7, 7, channels))
    assert layer.intermediate_filters == expected_m
    full = Conv4D(channels, kernel_size, use_bias=False)
    full.build((None, 4, 4, 7, 7, channels))
    factorized_params = sum(math.prod(v.shape) for v in layer.trainable_weights)
    full_params = sum(math.prod(v.shape) for v in full.trainable_weights)
    assert abs(factorized_params - full_params) / full_params < 0.02


def test_factorized4d_is_two_4d_convs_with_bn_relu_between():
    x = np.random.randn(2, 3, 4, 5, 5, 6).astype("float32")
    layer = Factorized4D(5, (3, 3, 3, 3))
    y = _np(layer(x, training=False))
    spatial = conv_nd_same(x, _np(layer.spatial_conv.kernel))
    bn = layer.norm
    spatial = ((spatial - _np(bn.moving_mean)) / np.sqrt(_np(bn.moving_variance) + bn.epsilon) * _np(bn.gamma)
               + _np(bn.beta))
    expected = conv_nd_same(np.maximum(spatial, 0), _np(layer.temporal_conv.kernel))
    assert layer.spatial_conv.kernel.shape[:4] == (3, 1, 3, 3)
    assert layer.temporal_conv.kernel.shape[:4] == (1, 3, 1, 1)
    np.testing.assert_allclose(y, expected, atol=1e-4)


# --- attention ---------------------------------------------------------------------------------

def _conv1d_dilated(sequence, kernel, bias, dilation):
    """sequence (B, L) with one channel, kernel (3,), 'same' zero padding."""
    padded = np.pad(sequence, ((0, 0), (dilation, dilation)))
    length = sequence.shape[1]
    return sum(kernel[i] * padded[:, i * dilation:i * dilation + length] for i in range(3)) + bias


def test_temporal_attention_matches_reference():
    x = np.random.randn(2, 3, 4, 5, 5, 6).astype("float32")
    layer = TemporalAttention()
    layer.build(x.shape)
    _randomise(layer)
    y = _np(layer(x))
    frames = x.reshape(2, 12, -1).astype(np.float64)  # unit-major U·T sequence
    descriptor = frames.mean(-1) + frames.max(-1)
    logits = sum(_conv1d_dilated(descriptor, _np(c.kernel)[:, 0, 0], _np(c.bias)[0], d)
                 for c, d in zip(layer.convs, (2, 3)))
    attention = sigmoid(logits).reshape(2, 3, 4, 1, 1, 1)
    np.testing.assert_allclose(y, x * attention + x, atol=1e-4)


def test_channel_attention_matches_reference():
    x = np.random.randn(3, 4, 5, 5, 32).astype("float32")
    layer = ChannelAttention(reduction=16)
    layer.build(x.shape)
    _randomise(layer, 0.3)
    w0, b0, w1, b1 = (_np(v) for v in (layer.squeeze.kernel, layer.squeeze.bias,
                                       layer.excite.kernel, layer.excite.bias))
    assert w0.shape == (32, 2)

    def mlp(v):
        return np.maximum(v @ w0 + b0, 0) @ w1 + b1

    flat = x.reshape(3, -1, 32).astype(np.float64)
    attention = sigmoid(mlp(flat.mean(1)) + mlp(flat.max(1)))[:, None, None, None, :]
    np.testing.assert_allclose(_np(layer(x)), x * attention + x, atol=1e-4)


def test_spatiotemporal_attention_matches_reference():
    x = np.random.randn(2, 5, 7, 6, 4).astype("float32")
    layer = SpatioTemporalAttention()
    layer.build(x.shape)
    _randomise(layer)
    descriptor = np.concatenate([x.mean(-1, keepdims=True), x.max(-1, keepdims=True)], -1)
    spatial = sum(conv_nd_same(descriptor, _np(c.kernel), (1, d, d)) + _np(c.bias)
                  for c, d in zip(layer.spatial_convs, (2, 3)))
    spatial = np.maximum(spatial, 0)
    logits = sum(conv_nd_same(spatial, _np(c.kernel), (d, 1, 1)) + _np(c.bias)
                 for c, d in zip(layer.temporal_convs, (2, 3)))
    np.testing.assert_allclose(_np(layer(x)), x * sigmoid(logits) + x, atol=1e-4)


# --- F4DBlock ----------------------------------------------------------------------------------

def test_f4d_block_is_identity_at_init():
    x = np.random.randn(2, 4, 3, 6, 6, 32).astype("float32")
    layer = F4DBlock()
    np.testing.assert_array_equal(_np(layer(x, training=False)), x)


def test_f4d_block_mixes_units_once_trained():
    x = np.random.randn(1, 4, 2, 4, 4, 16).astype("float32")
    layer = F4DBlock(dropout_rate=0.0)
    layer.build(x.shape)
    layer.norm.gamma.assign(np.ones(16, "float32"))
    y = _np(layer(x))
    x_changed = x.copy()
    x_changed[0, 3] += 1.0  # change only the last unit
    y_changed = _np(layer(x_changed))
    assert np.abs(y_changed[0, 1] - y[0, 1]).max() > 1e-4  # unit 1 sees unit 3 through TA's dilated conv


def test_f4d_block_without_attention_is_x_plus_dropout_relu_bn_factorized():
    x = np.random.randn(2, 3, 2, 4, 4, 8).astype("float32")
    layer = F4DBlock(attention=(), dropout_rate=0.0)
    layer.build(x.shape)
    _randomise(layer.norm)
    layer.norm.moving_variance.assign(np.ones(8, "float32"))
    branch = _np(layer.factorized(x, training=False))
    bn = layer.norm
    branch = (branch - _np(bn.moving_mean)) / np.sqrt(1 + bn.epsilon) * _np(bn.gamma) + _np(bn.beta)
    np.testing.assert_allclose(_np(layer(x, training=False)), x + np.maximum(branch, 0), atol=1e-4)


def test_f4d_block_bad_attention():
    with pytest.raises(ValueError, match="attention"):
        F4DBlock(attention=("spatial",))


@pytest.mark.parametrize("layer, shape", [
    (lambda: TemporalAttention(), (2, 3, 4, 4, 8)),
    (lambda: ChannelAttention(), (2, 3, 4, 4, 3, 8)),
    (lambda: F4DBlock(), (2, 3, 4, 4, 8)),
    (lambda: Residual4D(), (2, 3, 4, 8)),
])
def test_wrong_rank_raises_value_error_naming_shape(layer, shape):
    with pytest.raises(ValueError, match=r"expects a rank-\d input.*" + re_shape(shape)):
        layer()(np.zeros(shape, "float32"))


def re_shape(shape):
    return r"\(" + r", ".join(str(s) for s in shape) + r"\)"
