"""SavedModel and TFLite export: uint8 video in, the Keras model's probabilities out."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_v4d.data import normalize_imagenet
from keras_v4d.export import export_saved_model, export_tflite, run_tflite
from keras_v4d.models import build_resnet3d


@pytest.fixture(scope="module")
def model():
    return build_resnet3d(18, "v4d", classes=5, input_shape=(None, 2, None, None, 3), width=0.25)


def _video(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def _keras_probabilities(model, video):
    return np.asarray(model(normalize_imagenet(tf.constant(video))))


def test_saved_model_serving_signature_takes_uint8_video_of_any_unit_count(model, tmp_path):
    export_saved_model(model, str(tmp_path / "sm"))
    serve = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    assert serve.structured_input_signature[1]["video"].dtype == tf.uint8
    for shape in ((1, 4, 2, 32, 32, 3), (2, 7, 2, 40, 48, 3)):  # trained U=4; U=7 and another size work too
        video = _video(shape)
        got = serve(video=tf.constant(video))["probabilities"].numpy()
        np.testing.assert_allclose(got, _keras_probabilities(model, video), atol=1e-4)


def test_tflite_variants_match_the_keras_model(model, tmp_path):
    video = _video((1, 4, 2, 32, 32, 3), seed=1)
    expected = _keras_probabilities(model, video)
    for variant, tolerance in (("float32", 1e-4), ("dynamic", 1e-2), ("fp16", 1e-2)):
        path = export_tflite(model, str(tmp_path / f"{variant}.tflite"), 4, 2, 32, variant)
        np.testing.assert_allclose(run_tflite(path, video), expected, atol=tolerance, err_msg=variant)
    with pytest.raises(ValueError, match=r"takes video of shape \(1, 4, 2, 32, 32, 3\)"):
        run_tflite(str(tmp_path / "float32.tflite"), _video((1, 5, 2, 32, 32, 3)))


def test_export_errors_name_what_is_wrong(model, tmp_path):
    with pytest.raises(ValueError, match="TFLite needs a static input shape"):
        export_tflite(model, str(tmp_path / "x.tflite"), None, 2, 32)
    with pytest.raises(ValueError, match="the model takes frames_per_unit=2, cannot export it with 4"):
        export_saved_model(model, str(tmp_path / "y"), frames_per_unit=4)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    missing = subprocess.run([sys.executable, "-m", "keras_v4d.cli.export", f"--checkpoint={tmp_path / 'nope.keras'}",
                              f"--output={tmp_path / 'out'}"], env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "checkpoint not found" in missing.stderr and "nope.keras" in missing.stderr
