import os

import keras_v4d  # noqa: F401  (before Keras imports TensorFlow: oneDNN on every x86 CPU, as in the tools)

# isort: split
import keras
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)


def tensorflow_only():
    return pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow backend only")
