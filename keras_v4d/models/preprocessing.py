"""Input preprocessing that travels with the models: ImageNet mean/std on RGB, as the released code
normalises.

``preprocess_input`` is the one normalisation of the package: the ``tf.data`` pipelines, the
exported SavedModel/TFLite graphs and a JAX or PyTorch user feeding frames by hand all call it.
"""

import keras
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _imagenet_normalization():
    # keras.layers.Normalization runs in the active backend when called eagerly and in TensorFlow
    # inside a tf.data map, whatever the backend: one definition serves the model and the pipeline.
    # A new layer per call: a shared one would keep constants of the first graph that traced it.
    mean = np.array(IMAGENET_MEAN, "float64") * 255.0
    variance = (np.array(IMAGENET_STD, "float64") * 255.0) ** 2
    return keras.layers.Normalization(mean=mean, variance=variance, dtype="float32", name="imagenet_normalization")


def preprocess_input(x):
    """RGB frames with values in [0, 255] (uint8 or float, any shape ending in 3 channels) →
    float32 ``(x / 255 − mean) / std`` with ImageNet statistics, the models' input.

    Works on every Keras backend, on NumPy arrays and inside a ``tf.data`` map.
    """
    if x.shape[-1] != 3:
        raise ValueError(f"preprocess_input: expected RGB frames with 3 channels last, got shape {tuple(x.shape)}")
    layer = _imagenet_normalization()
    layer.build(tuple(x.shape))  # explicit: inside a tf.data map on another backend it is not built on call
    return layer(x)
