"""SavedModel, TFLite and ONNX export: uint8 video in, the Keras model's probabilities out."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_v4d import _compat
from keras_v4d.data import normalize_imagenet, video_dataset, write_video
from keras_v4d.export import (
    ExportError,
    export_onnx,
    export_saved_model,
    export_tflite,
    representative_videos,
    run_onnx,
    run_tflite,
    tflite_interpreter,
    tflite_ops,
)
from keras_v4d.models import V4DResNet18, build_resnet3d
from keras_v4d.records.folder_lock import LOCK_FILE
from keras_v4d.records.run_files import write_settings
from keras_v4d.records.sampling import VideoSampling
from tests.commands import run_tool
from tests.export.test_lowering import _calibrate, _randomized

# the TFLite / ONNX input of the tests' exports: U=4 units of T=2 frames at 32²
SAMPLING = VideoSampling(train_units=4, frames_per_unit=2, stride=2, crop_size=32, short_side=36, test_num_units=4,
                         test_num_crops=1)


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
        path = export_tflite(model, str(tmp_path / f"{variant}.tflite"), SAMPLING, variant)
        # the file takes the video's U·T frames; its sampled units (1, U, T, S, S, 3) are taken too
        for given in (video.reshape(8, 32, 32, 3), video):
            np.testing.assert_allclose(run_tflite(path, given), expected, atol=tolerance, err_msg=variant)
        # XNNPACK takes every op but the input's CAST; fp16: a first partition of the weights' DEQUANTIZE nodes
        report = tflite_ops(path)
        assert set(report["not_delegated"]) == {"CAST"} and report["partitions"] == 1 + (variant == "fp16"), report
    with pytest.raises(ValueError, match=r"takes video frames of shape \(8, 32, 32, 3\)"):
        run_tflite(str(tmp_path / "float32.tflite"), _video((1, 5, 2, 32, 32, 3)))


def test_export_errors_name_what_is_wrong(model, tmp_path):
    with pytest.raises(ValueError, match="TFLite needs a static input shape"):
        export_tflite(model, str(tmp_path / "x.tflite"), None)
    four_frames = VideoSampling(frames_per_unit=4)
    with pytest.raises(ValueError, match="the model takes frames_per_unit=2, cannot export it with 4"):
        export_saved_model(model, str(tmp_path / "y"), four_frames, static=("frames_per_unit",))
    with pytest.raises(ValueError, match="the model takes frames_per_unit=2, cannot export it with 4"):
        export_saved_model(model, str(tmp_path / "y"), four_frames)  # the whole-video signatures' T
    with pytest.raises(ValueError, match="the model takes frames_per_unit=2, cannot export it with 4"):
        export_tflite(model, str(tmp_path / "x.tflite"), four_frames)
    with pytest.raises(ValueError, match=r"`static` takes fields among .*got \['frames'\]"):
        export_saved_model(model, str(tmp_path / "y"), static=("frames",))
    with pytest.raises(ValueError, match="the int8 TFLite variant needs `representative_frames`"):
        export_tflite(model, str(tmp_path / "x.tflite"), SAMPLING, "int8")
    with pytest.raises(ValueError, match=r"representative_frames takes uint8 RGB frames .*got float32"):
        export_tflite(model, str(tmp_path / "x.tflite"), SAMPLING, "int8", np.zeros((1, 8, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"representative_frames takes video frames of shape \(8, 32, 32, 3\)"):
        export_tflite(model, str(tmp_path / "x.tflite"), SAMPLING, "int8", [_video((6, 32, 32, 3))])
    with pytest.raises(ValueError, match="calibrate the int8 variant only"):
        export_tflite(model, str(tmp_path / "x.tflite"), SAMPLING, "fp16", [_video((8, 32, 32, 3))])
    with pytest.raises(ValueError, match="ONNX needs a static input shape"):
        export_onnx(model, str(tmp_path / "x.onnx"), None)
    with pytest.raises(ValueError, match="no annotation list, folder or TFRecord files at .*nowhere"):
        representative_videos(str(tmp_path / "nowhere"), SAMPLING)
    missing = run_tool("export", f"--checkpoint={tmp_path / 'nope.keras'}", f"--output={tmp_path / 'out'}")
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
    export_tflite(model, str(path), SAMPLING)
    previous = path.read_bytes()
    monkeypatch.setattr(tf.lite.TFLiteConverter, "convert", _failing)
    with pytest.raises(ExportError, match=r"TFLite \(float32\) conversion for .*model\.tflite failed "
                                          r"\(RuntimeError: converter refused an op\)"):
        export_tflite(model, str(path), SAMPLING)
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
    # the disk, in a user's words, not the library's text
    with pytest.raises(ExportError, match=r"SavedModel export to .*sm failed: it could not be written \(no space left "
                                          r"on the device\); a previous SavedModel there is left as it was"):
        export_saved_model(model, str(path))
    assert {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()} == before
    assert _temporaries(tmp_path) == []
    monkeypatch.setattr(tf.saved_model, "save", real_save)
    # a good export replaces the previous one whole
    export_saved_model(model, str(path), VideoSampling(train_units=3, frames_per_unit=2), static=("train_units",))
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


def _write_videos(folder, levels):
    """One 20-frame 40×48 H.264 video per grey level (its label: the index); returns the list file."""
    os.makedirs(folder, exist_ok=True)
    lines = []
    for i, level in enumerate(levels):
        write_video(os.path.join(folder, f"v{i}.mp4"), np.full((20, 40, 48, 3), level, np.uint8))
        lines.append(f"v{i}.mp4 {i}")
    path = os.path.join(folder, "list.txt")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def test_representative_videos_are_the_pipelines_frames_spread_over_the_source(tmp_path):
    listing = _write_videos(str(tmp_path / "videos"), [30 * (i + 1) for i in range(6)])
    frames = representative_videos(listing, SAMPLING, count=3)
    assert frames.shape == (3, 8, 32, 32, 3) and frames.dtype == np.uint8
    # videos 0, 2 and 5 of 6 (spread, not the first three): grey levels 30, 90, 180 (H.264 moves them a little)
    np.testing.assert_allclose(frames.reshape(3, -1).mean(axis=1), [30, 90, 180], atol=3)
    # the evaluation pipeline's views, rounded back to uint8: within half a grey level
    evaluation = VideoSampling(**{**SAMPLING.to_dict(), "test_crop_size": 32})  # 4 centred units, a 32² crop
    views = next(iter(video_dataset(listing, evaluation, training=False, batch_size=6)))[0].numpy()[[0, 2, 5], 0]
    np.testing.assert_allclose(np.asarray(normalize_imagenet(frames)), views.reshape(3, 8, 32, 32, 3),
                               atol=0.5 / 255 / 0.224 + 1e-5)
    assert representative_videos(listing, SAMPLING, count=10).shape[0] == 6  # all there are


def _float32_tensors(interpreter):
    return sorted(d["name"] for d in interpreter.get_tensor_details() if d["dtype"] == np.float32)


def test_the_int8_tflite_file_is_full_integer_rank_4_and_gives_probabilities(tmp_path):
    model = _randomized(18, "v4d", 2)  # 4D blocks far from the identity (a trained model's are not zero)
    videos = [_video((1, 4, 2, 32, 32, 3), seed=10 + i) for i in range(12)]
    _calibrate(model, videos[0])
    path = export_tflite(model, str(tmp_path / "int8.tflite"), SAMPLING, "int8",
                         [video.reshape(8, 32, 32, 3) for video in videos[:8]])
    plain = tflite_interpreter(path, xnnpack=False)
    (inp,), (out,) = plain.get_input_details(), plain.get_output_details()
    assert tuple(inp["shape"]) == (8, 32, 32, 3) and inp["dtype"] == np.uint8 and out["dtype"] == np.float32
    assert max(len(d["shape"]) for d in plain.get_tensor_details()) <= 4
    report = tflite_ops(path)
    assert "CONV_3D" not in report["ops"] and report["ops"]["CONV_2D"] > 0 and report["ops"]["QUANTIZE"] == 1
    # full-integer: float32 only between the input's CAST and its QUANTIZE, and for the dequantised output
    tensors = {d["index"]: d for d in plain.get_tensor_details()}
    for node in _compat.tflite_nodes(plain):
        if node["op_name"] in ("CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "SUB", "MEAN", "SOFTMAX"):
            assert {tensors[t]["dtype"] for t in node["inputs"][:1] + node["outputs"]} == {np.int8}, node
    assert len(_float32_tensors(plain)) == 2, _float32_tensors(plain)
    print(f"\nint8 file: XNNPACK partitions {report['partitions']}, left to the built-in kernels "
          f"{dict(report['not_delegated'])}")
    assert set(report["not_delegated"]) <= {"CAST", "SOFTMAX"}  # XNNPACK has no int8 softmax

    agree, largest = 0, 0.0
    for video in videos[8:]:  # videos the calibration did not see
        expected = np.asarray(model(normalize_imagenet(tf.constant(video))))
        for xnnpack in (True, False):
            got = run_tflite(path, video, xnnpack=xnnpack)
            assert got.shape == (1, 5) and np.isfinite(got).all() and (got >= 0).all()
            assert abs(got.sum() - 1) <= 5 / 256  # the int8 softmax's output: steps of 1/256
        agree += int(got.argmax() == expected.argmax())
        largest = max(largest, float(np.abs(got - expected).max()))
    print(f"int8 against float32 (random weights, 4 random videos): top-1 agreement {agree}/4, "
          f"largest probability difference {largest:.4f}")


def test_the_onnx_file_gives_the_keras_probabilities(tmp_path):
    model = _randomized(18, "v4d", 2)
    video = _video((1, 4, 2, 32, 32, 3), seed=3)
    _calibrate(model, video)
    expected = np.asarray(model(normalize_imagenet(tf.constant(video))))
    assert expected.max() < 0.99  # not one-hot: the comparison means something
    path = export_onnx(model, str(tmp_path / "model.onnx"), SAMPLING)
    for given in (video, video.reshape(8, 32, 32, 3)):
        np.testing.assert_allclose(run_onnx(path, given), expected, atol=1e-4)
    with pytest.raises(ValueError, match=r"takes video frames of shape \(8, 32, 32, 3\)"):
        run_onnx(path, _video((1, 3, 2, 32, 32, 3)))


def test_the_export_tool_writes_every_format_and_int8_only_with_representative_data(model, tmp_path, capsys):
    from keras_v4d.cli import export as export_tool
    from keras_v4d.cli.common import execute

    def export(argv):  # each run starts from the flags' defaults (execute resets them), as a new process does
        return execute("export", export_tool.main, export_tool.FLAGS, export_tool.__doc__, argv)

    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    write_settings(str(run), SAMPLING)
    out = tmp_path / "out"
    argv = ["export", f"--checkpoint={run / 'model.keras'}", f"--output={out}"]
    assert export(argv) == 0
    printed = capsys.readouterr().out
    assert "TFLite (int8): left out" in printed and "--representative_data" in printed
    assert sorted(os.listdir(out)) == [LOCK_FILE, "model.onnx", "model_dynamic.tflite", "model_float32.tflite",
                                       "model_fp16.tflite", "saved_model"]
    video = _video((1, 4, 2, 32, 32, 3), seed=4)
    expected = _keras_probabilities(model, video)
    np.testing.assert_allclose(run_onnx(str(out / "model.onnx"), video), expected, atol=1e-4)
    np.testing.assert_allclose(run_tflite(str(out / "model_float32.tflite"), video), expected, atol=1e-5)

    listing = _write_videos(str(tmp_path / "videos"), [40, 120, 200])
    argv += [f"--representative_data={listing}", "--formats=tflite", "--tflite_variants=int8"]
    assert export(argv) == 0
    assert "calibrated on 3 videos" in capsys.readouterr().out
    got = run_tflite(str(out / "model_int8.tflite"), video)
    assert got.shape == (1, 5) and abs(got.sum() - 1) <= 5 / 256

    argv[-2:] = ["--formats=onnx"]
    assert export(argv) == 2
    assert "--representative_data calibrates the int8 TFLite file" in capsys.readouterr().err
    argv[-2:] = [f"--representative_data={tmp_path / 'missing.txt'}", "--formats=tflite"]
    assert export(argv) == 2
    assert "--representative_data: `source`: no annotation list" in capsys.readouterr().err


def test_the_export_tool_takes_a_registered_weights_tag(tmp_path, monkeypatch, capsys):
    from keras_v4d.cli import export as export_tool
    from keras_v4d.cli.common import execute
    from keras_v4d.records.presets import _registry, register, sha256_of

    model = V4DResNet18(classes=3, frames_per_unit=2)
    (tmp_path / "cache" / "keras_v4d").mkdir(parents=True)
    weights = tmp_path / "cache" / "keras_v4d" / "export_tag.weights.h5"
    model.save_weights(weights)
    monkeypatch.setenv("KERAS_V4D_CACHE", str(tmp_path / "cache"))
    tag_sampling = VideoSampling(train_units=2, frames_per_unit=2, crop_size=32, short_side=36, test_num_units=2,
                                 test_num_crops=1)
    register("test_export_tag", {"builder": "V4DResNet18", "arguments": {"classes": 3, "frames_per_unit": 2},
                                 "file_name": weights.name, "url": None, "sha256": sha256_of(weights),
                                 "input": tag_sampling.to_dict(), "class_names": ["archery", "bowling", "cycling"]})
    try:
        argv = ["export", "--checkpoint=test_export_tag", f"--output={tmp_path / 'out'}", "--formats=tflite",
                "--tflite_variants=float32"]
        assert execute("export", export_tool.main, export_tool.FLAGS, export_tool.__doc__, argv) == 0
        assert "TFLite (float32, input 4×32×32×3: 2 units × 2 frames)" in capsys.readouterr().out  # the tag's U, T, S
        video = _video((1, 2, 2, 32, 32, 3), seed=5)
        np.testing.assert_allclose(run_tflite(str(tmp_path / "out" / "model_float32.tflite"), video),
                                   _keras_probabilities(model, video), atol=1e-5)
        argv.append("--model=V4DResNet18")
        assert execute("export", export_tool.main, export_tool.FLAGS, export_tool.__doc__, argv) == 2
        assert "the weights tag 'test_export_tag' names its architecture" in capsys.readouterr().err
    finally:
        del _registry()["test_export_tag"]
