"""A head of the user's on a package backbone (models.heads.with_head) keeps video-level inference."""

import itertools

import keras
import numpy as np
import pytest

from keras_v4d.inference.video_level import video_level_predict
from keras_v4d.models import HeadedVideoModel, build_resnet3d, with_head

pytestmark = pytest.mark.backend_agnostic


def _head(classes=5):
    return keras.Sequential([keras.layers.Reshape((-1, 128)), keras.layers.GlobalMaxPooling1D(),
                             keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(classes, activation="softmax")], name="my_head")


def test_algorithm_1_on_a_users_head_equals_every_combination_through_the_model(tmp_path):
    model = with_head(build_resnet3d(18, "v4d", include_top=False, width=0.25), _head())
    assert isinstance(model, HeadedVideoModel) and model.outputs[0].shape[-1] == 5
    videos = np.random.RandomState(0).rand(1, 4, 2, 32, 32, 3).astype("float32")  # U_infer 4, U_train 2
    combinations = list(itertools.product([0, 1], [2, 3]))  # one unit per section (V4D Algorithm 1)
    naive = np.mean([keras.ops.convert_to_numpy(model(videos[:, list(c)])) for c in combinations], axis=0)
    scores = keras.ops.convert_to_numpy(video_level_predict(model, videos, train_units=2))
    np.testing.assert_allclose(scores, naive, atol=1e-5)
    path = tmp_path / "headed.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, HeadedVideoModel)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(video_level_predict(loaded, videos, train_units=2)),
                               scores, atol=1e-6)


def test_a_backbone_with_a_head_already_is_refused():
    with pytest.raises(ValueError, match="include_top=False and pooling=None"):
        with_head(build_resnet3d(18, None, classes=3, width=0.25), _head())
    with pytest.raises(ValueError, match="the head must map features"):
        with_head(build_resnet3d(18, None, include_top=False, width=0.25), keras.layers.Dense(3))
