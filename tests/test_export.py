"""SavedModel and TFLite export: uint8 video in, the Keras model's probabilities out."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_v4d.data import normalize_imagenet
from keras_v4d.export import ExportError, export_saved_model, export_tflite, run_tflite
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
    for variant, tolerance in (("float32", 1e-5), ("dynamic", 1e-2), ("fp16", 1e-2)):
        path = export_tflite(model, str(tmp_path / f"{variant}.tflite"), 4, 2, 32, variant)
        # the file takes the video's U·T frames; its sampled units (1, U, T, S, S, 3) are taken too
        for given in (video.reshape(8, 32, 32, 3), video):
            np.testing.assert_allclose(run_tflite(path, given), expected, atol=tolerance, err_msg=variant)
    with pytest.raises(ValueError, match=r"takes video frames of shape \(8, 32, 32, 3\)"):
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


def test_the_serving_signature_refuses_empty_input_naming_the_dimension(tmp_path):
    free = build_resnet3d(18, "v4d", classes=5, input_shape=(None, None, None, None, 3), width=0.25)
    export_saved_model(free, str(tmp_path / "sm"))
    serve = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    for axis, name in enumerate(("batch", "U", "T", "H", "W")):
        shape = [1, 4, 2, 32, 32, 3]
        shape[axis] = 0
        with pytest.raises(tf.errors.InvalidArgumentError, match=rf"video: {name} \(axis {axis}\) is 0"):
            serve(video=tf.zeros(shape, tf.uint8))
    for shape in ((1, 4, 2, 32, 32, 3), (1, 1, 1, 1, 1, 3)):  # one unit of one 1×1 frame is still a video
        got = serve(video=tf.constant(_video(shape)))["probabilities"].numpy()
        assert got.shape == (1, 5) and np.isfinite(got).all()
        np.testing.assert_allclose(got.sum(), 1.0, atol=1e-5)


def _failing(*args, **kwargs):
    raise RuntimeError("converter refused an op")


def _temporaries(folder):
    return [name for name in os.listdir(folder) if name.startswith(".tmp-")]


def test_a_failed_tflite_conversion_leaves_the_previous_file(model, tmp_path, monkeypatch):
    path = tmp_path / "model.tflite"
    export_tflite(model, str(path), 4, 2, 32)
    previous = path.read_bytes()
    monkeypatch.setattr(tf.lite.TFLiteConverter, "convert", _failing)
    with pytest.raises(ExportError, match=r"TFLite \(float32\) conversion for .*model\.tflite failed "
                                          r"\(RuntimeError: converter refused an op\)"):
        export_tflite(model, str(path), 4, 2, 32)
    assert path.read_bytes() == previous and _temporaries(tmp_path) == []


def test_a_failed_saved_model_export_leaves_the_previous_folder(model, tmp_path, monkeypatch):
    path = tmp_path / "sm"
    export_saved_model(model, str(path))
    before = {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    real_save = tf.saved_model.save

    def half_written(module, folder, **kwargs):  # writes part of a SavedModel, then fails
        os.makedirs(os.path.join(folder, "variables"))
        with open(os.path.join(folder, "saved_model.pb"), "wb") as handle:
            handle.write(b"torn")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", half_written)
    with pytest.raises(ExportError, match=r"SavedModel export to .*sm failed \(OSError: .*No space left"):
        export_saved_model(model, str(path))
    assert {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()} == before
    assert _temporaries(tmp_path) == []
    monkeypatch.setattr(tf.saved_model, "save", real_save)
    export_saved_model(model, str(path), num_units=3)  # a good export replaces the previous one whole
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    assert serve.structured_input_signature[1]["video"].shape[1] == 3 and _temporaries(tmp_path) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="exists and is not a folder"):
        export_saved_model(model, str(tmp_path / "file"))


def test_the_export_tool_reports_a_failed_conversion_without_a_traceback(model, tmp_path, monkeypatch, capsys):
    from keras_v4d.cli import export as export_tool
    from keras_v4d.cli.common import EXIT_NOT_WRITTEN, execute

    model.save(tmp_path / "model.keras")
    argv = ["export", f"--checkpoint={tmp_path / 'model.keras'}", f"--output={tmp_path / 'out'}",
            "--formats=tflite", "--tflite_variants=float32", "--num_units=4", "--crop_size=32"]
    assert execute("export", export_tool.main, export_tool.FLAGS, export_tool.__doc__, argv) == 0
    previous = (tmp_path / "out" / "model_float32.tflite").read_bytes()
    capsys.readouterr()
    monkeypatch.setattr(tf.lite.TFLiteConverter, "convert", _failing)
    assert execute("export", export_tool.main, export_tool.FLAGS, export_tool.__doc__, argv) == EXIT_NOT_WRITTEN
    err = capsys.readouterr().err
    assert err.startswith("error: TFLite (float32) conversion for ") and "converter refused an op" in err
    assert "Traceback" not in err
    assert (tmp_path / "out" / "model_float32.tflite").read_bytes() == previous
    assert _temporaries(tmp_path / "out") == []
