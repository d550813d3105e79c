import math

import keras
import numpy as np
import pytest

import keras_v4d
from keras_v4d.models import BUILDERS

pytestmark = pytest.mark.backend_agnostic

SMALL = (3, 2, 32, 32, 3)  # U, T, H, W, C: small enough for fast forward passes


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _trainable_params(model):
    return sum(math.prod(w.shape) for w in model.trainable_weights)


# --- figures from the papers (V4D Table 2, F4D Table 1) ----------------------------------------------------------

@pytest.mark.counts
@pytest.mark.parametrize("builder, shape, classes, gmacs, params_m", [
    ("I3DSlowResNet18", (4, 4, 224, 224, 3), 1000, 54.9, 32.3),   # V4D Table 2a/2b
    ("V4DResNet18", (4, 4, 224, 224, 3), 1000, 58.6, 33.1),       # V4D Table 2a/2b
    ("I3DSlowResNet50", (1, 8, 224, 224, 3), 400, 41.7, 32.45),
    ("F4DResNet50", (1, 8, 224, 224, 3), 174, 72.0, 36.8),        # F4D Table 1
])
def test_macs_and_params_match_the_papers(builder, shape, classes, gmacs, params_m):
    model = BUILDERS[builder](classes=classes)
    assert keras_v4d.count_flops(model, shape) / 1e9 == pytest.approx(gmacs, rel=0.02)
    assert _trainable_params(model) / 1e6 == pytest.approx(params_m, rel=0.01)


@pytest.mark.counts
def test_v4d_adds_exactly_its_4d_convs():
    shape = (4, 4, 224, 224, 3)
    extra = (keras_v4d.count_flops(keras_v4d.V4DResNet18(), shape)
             - keras_v4d.count_flops(keras_v4d.TSNResNet18(), shape))
    # one (3,3,1,1) 4D conv at res3 (C=128, 28²) and one at res4 (C=256, 14²), U=T=4
    assert extra == 16 * (28 * 28 * 128 * 128 + 14 * 14 * 256 * 256) * 9


@pytest.mark.counts
def test_count_flops_scales_with_batch_and_needs_a_concrete_shape():
    model = keras_v4d.I3DSlowResNet18(include_top=False, pooling="avg")
    one = keras_v4d.count_flops(model, (1, 4, 64, 64, 3))
    assert keras_v4d.count_flops(model, (1, 4, 64, 64, 3), batch_size=3) == 3 * one
    with pytest.raises(ValueError, match="unknown axes"):
        keras_v4d.count_flops(model)
    with pytest.raises(ValueError, match="5 entries"):
        keras_v4d.count_flops(model, (4, 64, 64, 3))


# --- architecture (V4D Table 1) ----------------------------------------------------------------

@pytest.mark.parametrize("builder, channels",
                         [("V4DResNet18", (64, 128, 256, 512)), ("V4DResNet50", (256, 512, 1024, 2048))])
def test_stage_output_sizes_match_table1(builder, channels):
    model = BUILDERS[builder](input_shape=(4, 4, 224, 224, 3), include_top=False)
    assert model.get_layer("stem_relu").output.shape[1:] == (4, 112, 112, 64)
    last_block = {"V4DResNet18": (1, 1, 1, 1), "V4DResNet50": (2, 3, 5, 2)}[builder]
    for stage, size, c, last in zip(("res2", "res3", "res4", "res5"), (56, 28, 14, 7), channels, last_block):
        assert model.get_layer(f"{stage}_block{last}_out").output.shape[1:] == (4, size, size, c)
    assert model.output.shape == (None, 4, 4, 7, 7, channels[-1])


@pytest.mark.counts
def test_resnet18_temporal_kernels_follow_table1():
    model = keras_v4d.I3DSlowResNet18()
    assert model.get_layer("res3_block0_1_conv").kernel.shape[:3] == (1, 3, 3)
    assert model.get_layer("res4_block0_1_conv").kernel.shape[:3] == (3, 3, 3)
    assert model.get_layer("res5_block1_2_conv").kernel.shape[:3] == (3, 3, 3)
    r50 = keras_v4d.I3DSlowResNet50()
    assert r50.get_layer("res3_block0_1_conv").kernel.shape[:3] == (1, 1, 1)
    assert r50.get_layer("res4_block0_1_conv").kernel.shape[:3] == (3, 1, 1)
    assert r50.get_layer("res4_block0_2_conv").kernel.shape[:3] == (1, 3, 3)


@pytest.mark.counts
@pytest.mark.parametrize("builder, placement, expected", [
    ("V4DResNet18", "code", ["res3_v4d1", "res4_v4d1"]),
    ("V4DResNet50", "code", ["res3_v4d1", "res3_v4d3"]),
    ("V4DResNet50", "paper", ["res3_v4d1", "res3_v4d3", "res4_v4d1", "res4_v4d3", "res4_v4d5"]),
    ("F4DResNet50", "res2-res5",
     ["res2_f4d1", "res3_f4d1", "res3_f4d3", "res4_f4d1", "res4_f4d3", "res4_f4d5", "res5_f4d1"]),
    ("V4DResNet18", {"res5": [0]}, ["res5_v4d0"]),
])
def test_block4d_placement(builder, placement, expected):
    model = BUILDERS[builder](block4d_placement=placement)
    kinds = (keras_v4d.layers.Residual4D, keras_v4d.layers.F4DBlock)
    assert [layer.name for layer in model.layers if isinstance(layer, kinds)] == expected


# --- video-level behaviour ----------------------------------------------------------------------

def _tsn_and_v4d():
    tsn = keras_v4d.TSNResNet18(input_shape=SMALL, classes=5, classifier_activation=None)
    v4d = keras_v4d.V4DResNet18(input_shape=SMALL, classes=5, classifier_activation=None)
    _randomise_bn_statistics(tsn)
    for layer in tsn.layers:
        if layer.weights:
            v4d.get_layer(layer.name).set_weights(layer.get_weights())
    return tsn, v4d


def _randomise_bn_statistics(model):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.moving_mean.assign(np.random.randn(c).astype("float32") * 0.1)
            layer.moving_variance.assign(np.random.uniform(0.5, 2, c).astype("float32"))


def test_v4d_with_zero_4d_kernels_is_tsn():
    tsn, v4d = _tsn_and_v4d()
    x = np.random.randn(2, *SMALL).astype("float32")
    np.testing.assert_allclose(_np(v4d(x, training=False)), _np(tsn(x, training=False)), atol=1e-5, rtol=1e-5)


def test_unit_order_matters_to_v4d_not_to_tsn():
    tsn, v4d = _tsn_and_v4d()
    for layer in v4d.layers:
        if isinstance(layer, keras_v4d.layers.Residual4D):
            layer.conv.kernel.assign(np.random.randn(*layer.conv.kernel.shape).astype("float32") * 0.05)
    x = np.random.randn(2, *SMALL).astype("float32")
    reversed_units = x[:, ::-1]
    tsn_a, tsn_b = _np(tsn(x, training=False)), _np(tsn(reversed_units, training=False))
    v4d_a, v4d_b = _np(v4d(x, training=False)), _np(v4d(reversed_units, training=False))
    np.testing.assert_allclose(tsn_a, tsn_b, atol=1e-5, rtol=1e-5)
    assert np.abs(v4d_a - v4d_b).max() > 1e-3 * np.abs(v4d_a).max()


@pytest.mark.parametrize("builder", ["V4DResNet18", "F4DResNet18", "I3DSlowResNet18"])
def test_model_built_with_unknown_units_runs_on_any_number(builder):
    model = BUILDERS[builder](classes=7)
    assert model.input.shape == (None, None, None, None, None, 3)
    for units in (1, 4, 10):
        probabilities = _np(model(np.random.rand(1, units, 2, 32, 32, 3).astype("float32")))
        assert probabilities.shape == (1, 7)
        np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("pooling, shape", [(None, (2, 3, 2, 2, 2, 512)), ("avg", (2, 512)), ("max", (2, 512))])
def test_include_top_false(pooling, shape):
    model = keras_v4d.V4DResNet18(include_top=False, pooling=pooling, input_shape=(3, 2, 64, 64, 3))
    out = _np(model(np.random.rand(2, 3, 2, 64, 64, 3).astype("float32")))
    assert out.shape == shape


def test_average_pooling_equals_mean_of_feature_map():
    model = keras_v4d.V4DResNet18(include_top=False, input_shape=(3, 2, 64, 64, 3))
    pooled = keras_v4d.V4DResNet18(include_top=False, pooling="avg", input_shape=(3, 2, 64, 64, 3))
    pooled.set_weights(model.get_weights())
    x = np.random.rand(2, 3, 2, 64, 64, 3).astype("float32")
    np.testing.assert_allclose(_np(pooled(x)), _np(model(x)).mean(axis=(1, 2, 3, 4)), atol=1e-5)


@pytest.mark.parametrize("builder", ["V4DResNet18", "F4DResNet18"])
def test_keras_file_round_trip(builder, tmp_path):
    model = (BUILDERS[builder](classes=4, norm="batchnorm") if builder.startswith("V4D")
             else BUILDERS[builder](classes=4))
    for layer in model.layers:  # make every 4D block non-trivial so the round trip really tests it
        for w in layer.weights:
            if "v4d" in w.path or "f4d" in w.path:
                w.assign(np.random.randn(*w.shape).astype("float32") * 0.1 + (1.0 if "gamma" in w.path else 0.0))
    x = np.random.rand(2, 4, 2, 32, 32, 3).astype("float32")
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(_np(loaded(x, training=False)), _np(model(x, training=False)))


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(weights="imagenet"), r"`weights` must be None, a registered tag.*'imagenet'"),
    (dict(weights="/no/such/file.weights.h5"), "file not found: '/no/such/file.weights.h5'"),
    (dict(input_shape=(4, 224, 224, 3)), r"`input_shape` must be \(U, T, H, W, 3\).*\(4, 224, 224, 3\)"),
    (dict(input_shape=(4, 4, 224, 224, 1)), r"3 RGB channels.*\(4, 4, 224, 224, 1\)"),
    (dict(input_shape=(4, 4, 16, 224, 3)), "H must be >= 32"),
    (dict(num_units=4, input_shape=(3, 4, 224, 224, 3)), "`num_units`=4 disagrees"),
    (dict(pooling="sum"), "`pooling` must be one of"),
    (dict(classes=0), "`classes` must be a positive int"),
    (dict(kernel_size=(3, 3, 1)), "kernel_size` must have 4 entries"),
    (dict(kernel_size=(2, 3, 1, 1)), "must be odd"),
    (dict(block4d_placement="everywhere"), "`block4d_placement` must be"),
    (dict(block4d_placement={"res3": [5]}), r"res3 has blocks 0..1, got \[5\]"),
    (dict(block4d_placement={"res6": [1]}), "unknown stage 'res6'"),
])
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        keras_v4d.V4DResNet18(**kwargs)


def test_bad_input_tensor():
    with pytest.raises(ValueError, match=r"`input_tensor` must have shape \(batch, U, T, H, W, 3\)"):
        keras_v4d.TSNResNet18(input_tensor=keras.Input((4, 32, 32, 3)))


def test_input_tensor_is_used():
    video = keras.Input((2, 2, 32, 32, 3), name="clip")
    model = keras_v4d.I3DSlowResNet18(input_tensor=video, classes=3)
    assert model.inputs[0] is video
