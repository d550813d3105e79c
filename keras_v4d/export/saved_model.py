"""Export for deployment: a TF Serving SavedModel, TFLite files and an ONNX file that take uint8 video.

``export_saved_model(model, "exported/v4d")``, ``export_tflite(model, "v4d.tflite", U, T, S)``,
``run_tflite(path, frames)``, ``tflite_ops(path)``, ``representative_videos(source, sampling)`` (the int8
file's calibration frames), ``export_onnx(model, "v4d.onnx", U, T, S)``, ``run_onnx(path, frames)``; the
command-line tool is ``keras-v4d export``.

The SavedModel's ``serving_default`` takes ``video`` uint8 ``(batch, U, T, H, W, 3)`` RGB and
returns ``probabilities`` ``(batch, classes)``; ImageNet normalisation runs inside the graph. U, H
and W stay free where the model allows them (U is fixed by the TFLite files, which need static
shapes). Beside it, ``video_frames`` and ``video_jpeg`` take one whole video and run the test
protocol in the graph (``keras_v4d.export.serving``). The TFLite files take one video's uint8 frames
``(U·T, S, S, 3)`` and hold the network lowered to rank-4 tensors and Conv2D (``keras_v4d.export.lowering``),
so LiteRT's XNNPACK delegate runs it. TFLite variants: ``float32``, ``dynamic`` (dynamic-range int8
weights), ``fp16`` (float16 weights), ``int8`` (full-integer: int8 weights and activations, calibrated on
representative frames; uint8 frames in, float32 probabilities out). The ONNX file holds the same lowered
network and takes the same frames (ONNX Runtime).

An empty input (any of batch, U, T, H, W equal to 0) is an ``InvalidArgumentError`` naming the
dimension. Exports replace their output whole or not at all: a failed export (``ExportError``)
leaves the previous SavedModel folder or TFLite file as it was.
"""

import collections
import dataclasses
import os
import shutil
import warnings

import numpy as np
import tensorflow as tf

from keras_v4d import _compat
from keras_v4d.data.frame_size import MAX_FRAME_PIXELS
from keras_v4d.data.pipeline import video_dataset
from keras_v4d.data.sources import RawFrames, VideoFiles, resolve_source
from keras_v4d.export.lowering import lower
from keras_v4d.export.serving import whole_video_functions
from keras_v4d.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD, preprocess_input
from keras_v4d.models.video_model import VideoModel, ends_in_softmax
from keras_v4d.records.atomic import TEMPORARY_PREFIX, open_atomically, temporary_path
from keras_v4d.records.sampling import resolve_sampling

TFLITE_VARIANTS = ("float32", "dynamic", "fp16", "int8")
ONNX_OPSET = 17
VIDEO_AXES = ("batch", "U", "T", "H", "W")


class ExportError(RuntimeError):
    """A SavedModel or TFLite export that failed; the message names the output path and the cause."""


def _serving_function(model, input_shape):
    @tf.function(input_signature=[tf.TensorSpec((None,) + tuple(input_shape), tf.uint8, name="video")])
    def serve(video):
        # The network answers an empty dimension with an obscure error deep inside, or with NaN.
        shape = tf.shape(video)
        checks = [tf.debugging.assert_positive(
            shape[axis], message=f"video: {name} (axis {axis}) is 0; the signature takes uint8 (batch, U, T, H, W, 3) "
                                 "with every dimension at least 1") for axis, name in enumerate(VIDEO_AXES)]
        with tf.control_dependencies([check for check in checks if check is not None]):
            x = preprocess_input(video)
        scores = model(x, training=False)
        if not ends_in_softmax(model):
            scores = tf.nn.softmax(scores, axis=-1)
        return {"probabilities": scores}

    return serve


def export_saved_model(model, path, num_units=None, frames_per_unit=None, spatial_size=None, *, sampling=None,
                       class_names=None, top_k=5, max_frame_pixels=MAX_FRAME_PIXELS):
    """Writes a SavedModel; returns ``path``.

    Signatures: ``serving_default`` (sampled units, uint8 ``(batch, U, T, H, W, 3)``; dimensions left
    ``None`` and not fixed by the model stay free) and, for a model with a head, the whole-video
    ``video_frames`` and ``video_jpeg`` (``keras_v4d.export.serving``: one video's frames in, the test
    protocol of ``sampling`` (default: the model's fixed U/T and the defaults) inside, probabilities
    and the top-``top_k`` classes, named with ``class_names``, out; JPEG frames over
    ``max_frame_pixels`` are refused before decoding). The SavedModel is written to a temporary
    folder beside ``path`` and swapped in when complete; on failure (``ExportError``) a previous
    SavedModel at ``path`` is left as it was.
    """
    shape = _input_shape(model, num_units, frames_per_unit, spatial_size)
    module = tf.Module()
    module.model = model
    module.serve = _serving_function(model, shape)
    signatures = {"serving_default": module.serve}
    if isinstance(model, VideoModel) and model.parts().head is not None:
        whole_video = whole_video_functions(model, sampling or resolve_sampling(model), class_names, top_k,
                                            max_frame_pixels)
        module.video_frames, module.video_jpeg = whole_video["video_frames"], whole_video["video_jpeg"]
        signatures.update(whole_video)

    def save(folder):
        try:
            tf.saved_model.save(module, folder, signatures=signatures)
        except Exception as error:  # noqa: BLE001  (TensorFlow raises many kinds; each is a failed export)
            raise ExportError(f"SavedModel export to {path} failed ({type(error).__name__}: {error}); "
                              "a previous SavedModel there is left as it was") from error

    if "://" in os.fspath(path):  # an object store has no folder rename: written in place
        save(path)
    else:
        _replace_folder(path, save)
    return path


def _replace_folder(path, write):
    """``write(temporary folder)`` beside ``path``, then the result swapped in for ``path``: the old
    folder renamed away, the new one renamed in, the old one removed. A failure before the swap
    leaves ``path`` as it was and removes the temporary folder."""
    final = os.path.abspath(os.fspath(path))
    if os.path.exists(final) and not os.path.isdir(final):
        raise ExportError(f"SavedModel export to {path}: it exists and is not a folder")
    folder, name = os.path.split(final)
    os.makedirs(folder, exist_ok=True)
    temporary = temporary_path(final)
    previous = os.path.join(folder, f"{TEMPORARY_PREFIX}{os.getpid()}-previous-{name}")
    for stale in (temporary, previous):  # left by a killed export of this process id
        shutil.rmtree(stale, ignore_errors=True)
    try:
        write(temporary)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    try:
        if os.path.isdir(final):
            os.rename(final, previous)
        try:
            os.rename(temporary, final)
        except BaseException:
            if os.path.isdir(previous):
                os.rename(previous, final)
            raise
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def _static_shape(model, num_units, frames_per_unit, spatial_size, what):
    shape = _input_shape(model, num_units, frames_per_unit, spatial_size)
    if None in shape:
        raise ValueError(f"{what} needs a static input shape; got (U, T, H, W, 3) = {shape}: give num_units, "
                         "frames_per_unit and spatial_size")
    return shape


def export_tflite(model, path, num_units, frames_per_unit, spatial_size, variant="float32",
                  representative_frames=None):
    """Writes a TFLite flatbuffer for one video's uint8 frames ``(U·T, S, S, 3)``; returns ``path``.

    The frames are unit-major (unit 0's T frames, then unit 1's, …): ``video.reshape(-1, S, S, 3)`` of a
    ``(1, U, T, S, S, 3)`` batch. The network is lowered (``keras_v4d.export.lowering``): no tensor of rank
    above 4 and no ``CONV_3D``, so LiteRT's XNNPACK delegate takes it. ``variant="int8"`` (full-integer)
    needs ``representative_frames``: videos as the file takes them, uint8 ``(U·T, S, S, 3)`` each (an
    iterable, or an array ``(N, U·T, S, S, 3)``; ``representative_videos`` reads them from a data source),
    from which the converter calibrates the activations' int8 ranges. The file appears at ``path`` only
    once converted and written whole; a failed conversion (``ExportError``) leaves a previous file at
    ``path`` as it was.
    """
    if variant not in TFLITE_VARIANTS:
        raise ValueError(f"`variant` must be one of {TFLITE_VARIANTS}, got {variant!r}")
    if variant == "int8" and representative_frames is None:
        raise ValueError("the int8 TFLite variant needs `representative_frames`: uint8 videos (U·T, S, S, 3) "
                         "like those it will see, for its calibration (see `representative_videos`)")
    if variant != "int8" and representative_frames is not None:
        raise ValueError(f"`representative_frames` calibrate the int8 variant only, not {variant!r}")
    shape = _static_shape(model, num_units, frames_per_unit, spatial_size, "TFLite")
    expected = (shape[0] * shape[1],) + shape[2:]
    concrete = lower(model, shape[0], shape[1], shape[2:4]).get_concrete_function()
    # The weights are constants of the lowered function; converting with the Keras object attached would
    # keep resource variables that the LiteRT interpreter leaves uninitialised (garbage outputs).
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        samples = [_as_frames(video, expected, "representative_frames") for video in representative_frames]
        if not samples:
            raise ValueError("`representative_frames` holds no video")
        # Full-integer: every op int8, or the conversion fails. The uint8 input stays the frames' pixel
        # values (its CAST to float and the int8 QUANTIZE are the file's first ops); the output is the int8
        # softmax dequantised, float32 probabilities in steps of 1/256.
        converter.representative_dataset = lambda: ([sample] for sample in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        with warnings.catch_warnings():
            # int8: the input is uint8 pixel values, not a quantised float input, so no input statistics apply
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
            flatbuffer = converter.convert()
    except Exception as error:  # noqa: BLE001  (the converter's ConverterError is not public API)
        raise ExportError(f"TFLite ({variant}) conversion for {path} failed ({type(error).__name__}: {error}); "
                          "a previous file there is left as it was") from error
    with open_atomically(path, "wb") as handle:
        handle.write(flatbuffer)
    return path


def _as_frames(video, expected, where):
    """One video as a file's input ``expected`` ``(U·T, S, S, 3)``: given so, or as sampled units
    ``(1, U, T, S, S, 3)`` / ``(U, T, S, S, 3)`` (unit-major); uint8 RGB."""
    video = np.asarray(video)
    units = tuple(video.shape[1:] if video.ndim == 6 and video.shape[0] == 1 else video.shape)
    if tuple(video.shape) != expected and not (len(units) == 5 and units[0] * units[1] == expected[0]
                                               and units[2:] == expected[1:]):
        raise ValueError(f"{where} takes video frames of shape {expected} (or units (1, U, T, H, W, 3) with "
                         f"U·T = {expected[0]}), got {tuple(video.shape)}")
    if video.dtype != np.uint8:
        raise ValueError(f"{where} takes uint8 RGB frames (pixel values 0..255), got {video.dtype}")
    return video.reshape(expected)


def representative_videos(source, sampling, count=32, crop_size=None, **source_options):
    """Calibration videos for the int8 file: uint8 ``(N, U·T, S, S, 3)``, N ≤ ``count``.

    Read by the package's pipeline (``video_dataset``, evaluation mode) from any source it reads (a
    video or rawframe list, a folder per class, TFRecords; ``source_options`` as ``resolve_source``'s),
    sampled as the TFLite file takes them: ``sampling``'s ``train_units`` centred units of
    ``frames_per_unit`` frames at its stride, the short side resized and a centre crop of ``crop_size``
    (default ``sampling.crop_size``), rounded back to uint8. From a list or class folders, ``count``
    videos spread evenly over it (so every class is met); from TFRecords, the first ``count`` records.
    Unreadable videos are skipped; a source with none readable is a ``ValueError`` naming it.
    """
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"`count` must be a positive int, got {count!r}")
    resolved = resolve_source(source, **source_options)
    if isinstance(resolved, (VideoFiles, RawFrames)) and len(resolved) > count:
        chosen = np.unique(np.linspace(0, len(resolved) - 1, count).round().astype(int))
        resolved = dataclasses.replace(resolved, **{
            field.name: [getattr(resolved, field.name)[i] for i in chosen]
            for field in dataclasses.fields(resolved) if isinstance(getattr(resolved, field.name), list)
            and field.name != "class_names"})
    crop = crop_size or sampling.crop_size
    videos = video_dataset(resolved, training=False, num_units=sampling.train_units,
                           frames_per_unit=sampling.frames_per_unit, stride=sampling.stride, crop_size=crop,
                           short_side=sampling.short_side, num_crops=1, batch_size=1, strict=False)
    mean, std = 255.0 * np.asarray(IMAGENET_MEAN), 255.0 * np.asarray(IMAGENET_STD)
    frames = []
    for views, _, _ in videos.dataset.take(count):
        normalised = views.numpy()[0, 0].reshape(-1, crop, crop, 3)  # the first (only) view: (U·T, S, S, 3)
        frames.append(np.clip(np.round(normalised * std + mean), 0, 255).astype(np.uint8))
    if not frames:
        raise ValueError(f"representative data {source!r}: no readable video "
                         f"({videos.skip_log.summary()})")
    return np.stack(frames)


def tflite_interpreter(path, xnnpack=True, num_threads=None):
    """An allocated ``ai-edge-litert`` ``Interpreter`` of a TFLite file: with the default delegate (XNNPACK
    on the CPU) or, ``xnnpack=False``, the built-in kernels only; ``num_threads`` as LiteRT takes it."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_path=os.fspath(path), experimental_op_resolver_type=resolver,
                              num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter


def run_tflite(path, video, xnnpack=True):
    """Runs a TFLite file with the ``ai-edge-litert`` interpreter (XNNPACK on the CPU unless ``xnnpack``
    is False): uint8 video → probabilities ``(1, classes)``.

    ``video``: the file's frames ``(U·T, S, S, 3)``, or the same video as sampled units
    ``(1, U, T, S, S, 3)`` / ``(U, T, S, S, 3)``, taken unit-major.
    """
    interpreter = tflite_interpreter(path, xnnpack)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.set_tensor(inp["index"], _as_frames(np.asarray(video, np.uint8), tuple(int(n) for n in inp["shape"]),
                                                    path))
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


def export_onnx(model, path, num_units, frames_per_unit, spatial_size):
    """Writes an ONNX file (opset ``ONNX_OPSET``) of the lowered network; returns ``path``.

    Converted by tf2onnx from the function the TFLite files hold (``keras_v4d.export.lowering.lower``): it takes
    the same input, one video's uint8 frames ``frames (U·T, S, S, 3)`` unit-major, and returns
    ``probabilities (1, classes)``. Written whole or not at all (``ExportError`` on failure).
    """
    shape = _static_shape(model, num_units, frames_per_unit, spatial_size, "ONNX")
    try:
        import tf2onnx
    except ImportError as error:
        raise ExportError(f"ONNX export to {path} needs tf2onnx and onnx ({error}): "
                          "pip install 'tf2onnx>=1.17' onnx onnxruntime") from None
    function = lower(model, shape[0], shape[1], shape[2:4])
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature,
                                                 opset=ONNX_OPSET)
        data = proto.SerializeToString()
    except Exception as error:  # noqa: BLE001  (tf2onnx raises many kinds; each is a failed export)
        raise ExportError(f"ONNX conversion for {path} failed ({type(error).__name__}: {error}); "
                          "a previous file there is left as it was") from error
    with open_atomically(path, "wb") as handle:
        handle.write(data)
    return path


def onnx_session(path):
    """An ``onnxruntime.InferenceSession`` of an ONNX file on the CPU."""
    import onnxruntime

    return onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])


def run_onnx(path, video):
    """Runs an ONNX file of ``export_onnx`` with ONNX Runtime (CPU): uint8 video → probabilities
    ``(1, classes)``; ``video`` as ``run_tflite`` takes it."""
    session = onnx_session(path)
    (inp,) = session.get_inputs()
    frames = _as_frames(np.asarray(video, np.uint8), tuple(int(n) for n in inp.shape), path)
    return session.run(None, {inp.name: frames})[0]


def tflite_ops(path):
    """What a TFLite file asks of LiteRT on this CPU: ``{"ops": Counter of op names, "not_delegated":
    Counter of the ops the default delegate (XNNPACK) left to the built-in kernels, "partitions":
    the number of delegate nodes}``, as the interpreter reports them after delegation."""
    interpreter = tflite_interpreter(path)
    nodes = _compat.tflite_nodes(interpreter)
    plain = {node["index"]: node for node in nodes if node["op_name"] != "DELEGATE"}
    producers = {t: node["index"] for node in plain.values() for t in node["outputs"]}
    # The interpreter still lists the nodes a delegate replaced: those a delegate's outputs are computed
    # from, back to its inputs (every tensor entering a partition is one of its inputs).
    taken = set()
    for delegate in (node for node in nodes if node["op_name"] == "DELEGATE"):
        inputs, pending = set(delegate["inputs"]), list(delegate["outputs"])
        while pending:
            tensor = pending.pop()
            if tensor in inputs or tensor not in producers or producers[tensor] in taken:
                continue
            taken.add(producers[tensor])
            pending.extend(plain[producers[tensor]]["inputs"])
    return {"ops": collections.Counter(node["op_name"] for node in plain.values()),
            "not_delegated": collections.Counter(node["op_name"] for i, node in plain.items() if i not in taken),
            "partitions": sum(node["op_name"] == "DELEGATE" for node in nodes)}


def _input_shape(model, num_units, frames_per_unit, spatial_size):
    fixed = tuple(model.inputs[0].shape[1:])  # (U, T, H, W, 3)
    wanted = (num_units, frames_per_unit, spatial_size, spatial_size)
    shape = []
    for axis, (have, want, name) in enumerate(zip(fixed[:4], wanted, ("num_units", "frames_per_unit", "H", "W"))):
        if have is not None and want is not None and have != want:
            raise ValueError(f"the model takes {name}={have}, cannot export it with {want}")
        shape.append(have if have is not None else want)
    return tuple(shape) + (3,)
