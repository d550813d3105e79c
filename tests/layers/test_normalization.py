"""The fused batch-norm path (TensorFlow) equals Keras' BatchNormalization: outputs, gradients and
moving statistics, in training and inference, on 4-D and 5-D input."""

import keras
import numpy as np
import pytest
from conftest import tensorflow_only

from keras_v4d.layers.normalization import BatchNorm


@tensorflow_only()
@pytest.mark.parametrize("shape", [(3, 4, 5, 6, 8), (3, 5, 6, 8)])
@pytest.mark.parametrize("training", [True, False])
def test_fused_batch_norm_equals_keras(shape, training):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(1.0, 2.0, shape).astype("float32"))
    fused = BatchNorm(epsilon=1e-5, momentum=0.9)
    reference = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9)
    weights = [rng.uniform(0.5, 1.5, 8), rng.normal(size=8), rng.normal(size=8), rng.uniform(0.5, 2.0, 8)]
    for layer in (fused, reference):  # gamma, beta, moving mean, moving variance
        layer.build(x.shape)
        layer.set_weights([w.astype("float32") for w in weights])
    results = []
    for layer in (fused, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(y * tf.sin(y))
        gradients = tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])
        results.append([y.numpy()] + [g.numpy() for g in gradients] + [w.copy() for w in layer.get_weights()])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    assert np.allclose(results[0][-2], weights[2]) != training  # moving mean moved only in training


@tensorflow_only()
def test_fused_path_updates_moving_statistics_only_when_training():
    import tensorflow as tf

    layer = BatchNorm(momentum=0.9)
    x = tf.constant(np.random.default_rng(1).normal(3.0, 2.0, (4, 2, 3, 3, 5)).astype("float32"))
    layer(x, training=False)
    np.testing.assert_array_equal(layer.moving_mean.numpy(), np.zeros(5))
    layer(x, training=True)
    batch_mean = x.numpy().reshape(-1, 5).mean(0)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * batch_mean, rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.9 + 0.1 * x.numpy().reshape(-1, 5).var(0), rtol=1e-5)
