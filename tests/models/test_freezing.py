"""Freezing named parts (models.freezing): frozen weights stay bit-identical through ``fit``."""

import keras
import numpy as np
import pytest

from keras_v4d.models import build_resnet3d, freeze, unfreeze
from keras_v4d.models.freezing import part_layers

pytestmark = pytest.mark.backend_agnostic


def _values(layers):
    return {w.path: keras.ops.convert_to_numpy(w).copy() for layer in layers for w in layer.weights}


def _fit_once(model):
    rng = np.random.RandomState(0)
    x = rng.rand(4, 2, 2, 32, 32, 3).astype("float32")
    y = np.array([0, 1, 2, 1])
    # a small step: a large one can leave every ReLU dead, and then nothing upstream gets a gradient
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)


@pytest.mark.counts
def test_parts_cover_the_model_once():
    model = build_resnet3d(18, "v4d", classes=3, width=0.25)
    blocks, backbone, head = (part_layers(model, p) for p in ("blocks4d", "backbone", "head"))
    assert [layer.name for layer in blocks] == ["res3_v4d1", "res4_v4d1"]
    assert [layer.name for layer in head] == ["predictions"]
    named = [layer.name for layer in blocks + backbone + head]
    assert sorted(named) == sorted(layer.name for layer in model.layers if layer.weights)
    norms = part_layers(model, "batch_norm")
    assert part_layers(model, "partial_batch_norm") == norms[1:] and norms[0].name == "stem_bn"
    with pytest.raises(ValueError, match="unknown part 'blocks'; parts: blocks4d, backbone"):
        freeze(model, "blocks")


def test_frozen_4d_blocks_stay_bit_identical_through_fit_and_the_rest_trains():
    keras.utils.set_random_seed(0)
    model = build_resnet3d(18, "v4d", classes=3, width=0.25)
    assert freeze(model, "blocks4d") == ["res3_v4d1", "res4_v4d1"]
    blocks, rest = part_layers(model, "blocks4d"), part_layers(model, "backbone") + part_layers(model, "head")
    before_blocks, before_rest = _values(blocks), _values(rest)
    _fit_once(model)
    for path, value in _values(blocks).items():
        np.testing.assert_array_equal(value, before_blocks[path], err_msg=path)
    after = _values(rest)
    assert sum(not np.array_equal(after[p], before_rest[p]) for p in after) > len(after) // 2
    unfreeze(model, "blocks4d")
    _fit_once(model)
    assert any(not np.array_equal(v, before_blocks[p]) for p, v in _values(blocks).items())


def test_frozen_batch_norm_keeps_its_statistics():
    model = build_resnet3d(18, None, classes=3, width=0.25)
    freeze(model, "batch_norm")
    norms = part_layers(model, "batch_norm")
    before = _values(norms)
    _fit_once(model)
    for path, value in _values(norms).items():
        np.testing.assert_array_equal(value, before[path], err_msg=path)
