"""The TFLite lowering: each network rebuilt on rank-4 tensors and Conv2D gives the Keras model's
probabilities, and its TFLite file holds no tensor of rank above 4 and no CONV_3D."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_v4d.export import LOWERING_RULES, export_tflite, lowering_rule, run_tflite, tflite_ops
from keras_v4d.export.frame_convolutions import conv3d_frames, conv4d_frames
from keras_v4d.export.lowering import lower
from keras_v4d.layers import FoldUnits
from keras_v4d.models import build_resnet3d
from keras_v4d.models.preprocessing import preprocess_input
from keras_v4d.records.sampling import VideoSampling

# (depth, block4d, U, T, extra builder arguments): I3D-S is one unit; TSN, V4D and F4D several
NETWORKS = {
    "i3d_slow_resnet18": (18, None, 1, 4, {}),
    "tsn_resnet18": (18, None, 3, 2, {}),
    "v4d_resnet18": (18, "v4d", 3, 2, {}),
    "f4d_resnet18": (18, "f4d", 3, 2, {}),
    "v4d_resnet50": (50, "v4d", 3, 2, {"block4d_placement": "paper"}),
}
SIZE = 48  # odd sizes on the way down (48 → 24 → 12 → 6 → 3 → 2): the strided convs' symmetric padding


def _randomized(depth, block4d, frames_per_unit, seed=0, **kwargs):
    """A small model with random weights (4D blocks far from the identity, BN variances positive), its
    classifier scaled so that the probabilities are far from one-hot."""
    model = build_resnet3d(depth, block4d, classes=5, input_shape=(None, frames_per_unit, None, None, 3),
                           width=0.25, **kwargs)
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape, path = tuple(weight.shape), weight.path
        if "moving_variance" in path or "gamma" in path:
            value = rng.uniform(0.5, 1.5, shape)
        elif "moving_mean" in path or "beta" in path or "bias" in path:
            value = rng.normal(0.0, 0.1, shape)
        else:
            value = rng.normal(0.0, 1.0, shape) / np.sqrt(max(1, np.prod(shape[:-1])))
        weight.assign(value.astype("float32"))
    return model


def _calibrate(model, video):
    features = keras.Model(model.inputs, model.get_layer("pool_units").output)(preprocess_input(video))
    classifier = model.get_layer("predictions")
    scale = 1.0 / (np.sqrt(classifier.kernel.shape[0]) * float(np.std(features)) + 1e-6)
    classifier.kernel.assign(np.asarray(classifier.kernel) * scale)


def _video(units, frames, size=SIZE, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (1, units, frames, size, size, 3)).astype(np.uint8)


def _keras(model, video):
    return np.asarray(model(preprocess_input(tf.constant(video)), training=False))


@pytest.mark.parametrize("name", list(NETWORKS))
def test_the_tflite_file_is_rank_4_conv2d_and_gives_the_keras_probabilities(name, tmp_path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    depth, block4d, units, frames, kwargs = NETWORKS[name]
    model = _randomized(depth, block4d, frames, **kwargs)
    video = _video(units, frames)
    _calibrate(model, video)
    expected = _keras(model, video)
    assert expected.max() < 0.99  # not one-hot: the comparison means something

    sampling = VideoSampling(train_units=units, frames_per_unit=frames, crop_size=SIZE)  # the file's U, T, S
    path = export_tflite(model, str(tmp_path / f"{name}.tflite"), sampling)
    plain = Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    plain.allocate_tensors()
    (inp,) = plain.get_input_details()
    assert tuple(inp["shape"]) == (units * frames, SIZE, SIZE, 3) and inp["dtype"] == np.uint8
    ranks = {detail["name"]: len(detail["shape"]) for detail in plain.get_tensor_details()}
    assert max(ranks.values()) <= 4, {n: r for n, r in ranks.items() if r > 4}
    report = tflite_ops(path)
    assert "CONV_3D" not in report["ops"] and report["ops"]["CONV_2D"] > 0, report
    # XNNPACK takes every op but the uint8 → float32 CAST of the input: one partition
    assert set(report["not_delegated"]) <= {"CAST"} and report["partitions"] == 1, report

    frames_in = video.reshape(units * frames, SIZE, SIZE, 3)
    np.testing.assert_allclose(run_tflite(path, frames_in), expected, atol=1e-5)  # XNNPACK
    plain.set_tensor(inp["index"], frames_in)
    plain.invoke()
    np.testing.assert_allclose(plain.get_tensor(plain.get_output_details()[0]["index"]), expected, atol=1e-5)


@pytest.mark.parametrize("block4d, kwargs", [
    ("v4d", {"kernel_size": (3, 3, 3, 3), "norm": "batchnorm"}),  # a 4D kernel with spatial extent, paper form
    ("v4d", {"kernel_size": (3, 1, 1, 1)}),
    ("f4d", {"kernel_size": (3, 3, 3, 3), "block4d_placement": "res2-res5"}),
    ("f4d", {"attention": ("channel",)}),
])
def test_the_lowered_function_equals_the_model_for_other_4d_kernels_and_blocks(block4d, kwargs):
    model = _randomized(18, block4d, 2, **kwargs)
    video = _video(3, 2, size=40)
    _calibrate(model, video)
    got = lower(model, 3, 2, 40)(tf.constant(video.reshape(6, 40, 40, 3)))["probabilities"].numpy()
    np.testing.assert_allclose(got, _keras(model, video), atol=1e-5)


def test_a_logits_model_gets_a_softmax_and_a_size_pair_is_taken():
    model = build_resnet3d(18, "v4d", classes=5, input_shape=(None, 2, None, None, 3), width=0.25,
                           classifier_activation=None)
    video = np.random.default_rng(2).integers(0, 256, (1, 2, 2, 32, 40, 3)).astype(np.uint8)  # 32 × 40 frames
    got = lower(model, 2, 2, (32, 40))(tf.constant(video.reshape(4, 32, 40, 3)))["probabilities"].numpy()
    np.testing.assert_allclose(got, tf.nn.softmax(_keras(model, video)).numpy(), atol=1e-5)


def test_the_conv_views_equal_conv3d_and_the_4d_convolution():
    from keras_v4d.layers.conv4d import conv4d

    rng = np.random.default_rng(0)
    # float32 sums of up to 567 terms in another order: within 2e-6 of the largest output
    x = rng.normal(size=(2, 3, 4, 5, 6)).astype("float32")  # (N, T, H, W, C)
    for kernel_shape, strides, padding, dilation in (((3, 3, 3, 6, 4), (1, 1, 1), "same", (1, 1, 1)),
                                                      ((3, 1, 1, 6, 4), (1, 1, 1), "same", (2, 1, 1)),
                                                      ((1, 3, 3, 6, 4), (1, 2, 2), "valid", (1, 1, 1)),
                                                      ((3, 3, 1, 6, 4), (1, 2, 1), "valid", (1, 1, 1))):
        kernel = rng.normal(size=kernel_shape).astype("float32")
        want = tf.nn.convolution(x, kernel, strides=strides, padding=padding.upper(), dilations=dilation).numpy()
        got, t = conv3d_frames(tf.constant(x.reshape(6, 4, 5, 6)), 2, 3, tf.constant(kernel), strides, padding,
                               dilation)
        got = got.numpy().reshape((2, t) + tuple(got.shape[1:]))
        np.testing.assert_allclose(got, want, atol=2e-6 * np.abs(want).max(), err_msg=str(kernel_shape))
    video = rng.normal(size=(1, 3, 4, 5, 6, 7)).astype("float32")  # (1, U, T, H, W, C)
    for kernel_shape in ((3, 3, 1, 1), (3, 1, 1, 1), (1, 3, 3, 3), (3, 3, 3, 3), (5, 3, 1, 1)):
        kernel = rng.normal(size=kernel_shape + (7, 4)).astype("float32")
        want = np.asarray(conv4d(tf.constant(video), tf.constant(kernel)))
        got = conv4d_frames(tf.constant(video.reshape(12, 5, 6, 7)), 3, 4, tf.constant(kernel))
        got = got.numpy().reshape(want.shape)
        np.testing.assert_allclose(got, want, atol=2e-6 * np.abs(want).max(), err_msg=str(kernel_shape))


def test_a_layer_without_a_rank_4_form_is_named():
    inputs = keras.Input((2, 2, 32, 32, 3))
    x = keras.layers.Reshape((4, 32, 32, 3))(inputs)
    x = keras.layers.Conv3D(4, 1)(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling3D()(x))
    with pytest.raises(ValueError, match=r"no rank-4 form of layer .*\(Reshape\)"):
        lower(model, 2, 2, 32).get_concrete_function()


class _Doubling(keras.layers.Layer):
    def call(self, inputs):
        return 2.0 * inputs


class _CappedReLU(keras.layers.ReLU):
    """A subclass without a rule of its own: lowered by ``ReLU``'s."""


def test_rules_are_looked_up_along_the_class_hierarchy_and_a_registered_rule_is_used():
    inputs = keras.Input((1, 2, 16, 16, 3))
    x = keras.layers.Conv3D(4, (1, 3, 3), padding="same")(FoldUnits()(inputs))
    x = _Doubling()(_CappedReLU()(x))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalMaxPooling3D()(x)))
    with pytest.raises(ValueError, match=r"no rank-4 form of layer .*\(_Doubling\)"):
        lower(model, 1, 2, 16).get_concrete_function()

    @lowering_rule(_Doubling)
    def double(layer, value):
        return value.mapped(lambda tensor: 2.0 * tensor)

    try:
        video = _video(1, 2, size=16)
        got = lower(model, 1, 2, 16)(tf.constant(video.reshape(2, 16, 16, 3)))["probabilities"].numpy()
        np.testing.assert_allclose(got, _keras(model, video), atol=1e-5)
    finally:
        del LOWERING_RULES[_Doubling]
