"""TFLite (LiteRT) files of the lowered network: ``export_tflite``, their int8 calibration videos
(``representative_videos``), and running and inspecting them (``run_tflite``, ``tflite_interpreter``,
``tflite_ops``).

A file takes one video's uint8 frames ``(U·T, S, S, 3)`` (``keras_v4d.export.shapes``: U =
``train_units``, T = ``frames_per_unit``, S = ``crop_size`` of the ``VideoSampling``) and holds the
network lowered to rank-4 tensors and Conv2D (``keras_v4d.export.lowering``), so LiteRT's XNNPACK
delegate runs it. Variants: ``float32``, ``dynamic`` (dynamic-range int8 weights), ``fp16`` (float16
weights), ``int8`` (full-integer: int8 weights and activations, calibrated on representative frames;
uint8 frames in, float32 probabilities out).
"""

import collections
import dataclasses
import os
import warnings

import numpy as np
import tensorflow as tf

from keras_v4d import _compat
from keras_v4d.data.options import DataOptions
from keras_v4d.data.pipeline import video_dataset
from keras_v4d.data.sources import RawFrames, VideoFiles, resolve_source
from keras_v4d.export.lowering import lower
from keras_v4d.export.outputs import failure_named, write_file
from keras_v4d.export.shapes import as_frames, file_input_shape
from keras_v4d.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD

TFLITE_VARIANTS = ("float32", "dynamic", "fp16", "int8")
"""The TFLite files ``export_tflite`` writes: float32, dynamic-range (int8 weights), fp16 weights, and
full-integer int8 (calibrated on representative videos)."""


def export_tflite(model, path, sampling, variant="float32", representative_frames=None):
    """Writes a TFLite flatbuffer for one video's uint8 frames ``(U·T, S, S, 3)``; returns ``path``.

    ``sampling``: the ``VideoSampling`` whose ``train_units`` (U), ``frames_per_unit`` (T) and
    ``crop_size`` (S) make the file's static input. The frames are unit-major (unit 0's T frames, then
    unit 1's, …): ``video.reshape(-1, S, S, 3)`` of a ``(1, U, T, S, S, 3)`` batch. The network is lowered
    (``keras_v4d.export.lowering``): no tensor of rank above 4 and no ``CONV_3D``, so LiteRT's XNNPACK
    delegate takes it. ``variant="int8"`` (full-integer) needs ``representative_frames``: videos as the
    file takes them, uint8 ``(U·T, S, S, 3)`` each (an iterable, or an array ``(N, U·T, S, S, 3)``;
    ``representative_videos`` reads them from a data source), from which the converter calibrates the
    activations' int8 ranges. The file appears at ``path`` only once converted and written whole; a
    failed conversion (``ExportError``) leaves a previous file at ``path`` as it was.
    """
    if variant not in TFLITE_VARIANTS:
        raise ValueError(f"`variant` must be one of {TFLITE_VARIANTS}, got {variant!r}")
    if variant == "int8" and representative_frames is None:
        raise ValueError("the int8 TFLite variant needs `representative_frames`: uint8 videos (U·T, S, S, 3) "
                         "like those it will see, for its calibration (see `representative_videos`)")
    if variant != "int8" and representative_frames is not None:
        raise ValueError(f"`representative_frames` calibrate the int8 variant only, not {variant!r}")
    units, frames, height, width, _ = file_input_shape(model, sampling, "TFLite")
    expected = (units * frames, height, width, 3)
    concrete = lower(model, units, frames, (height, width)).get_concrete_function()
    # The weights are constants of the lowered function; converting with the Keras object attached would
    # keep resource variables that the LiteRT interpreter leaves uninitialised (garbage outputs).
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        samples = [as_frames(video, expected, "representative_frames") for video in representative_frames]
        if not samples:
            raise ValueError("`representative_frames` holds no video")
        # Full-integer: every op int8, or the conversion fails. The uint8 input stays the frames' pixel
        # values (its CAST to float and the int8 QUANTIZE are the file's first ops); the output is the int8
        # softmax dequantised, float32 probabilities in steps of 1/256.
        converter.representative_dataset = lambda: ([sample] for sample in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with failure_named(f"TFLite ({variant}) conversion for {path}", "a previous file there is left as it was"):
        with warnings.catch_warnings():
            # int8: the input is uint8 pixel values, not a quantised float input, so no input statistics apply
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
            flatbuffer = converter.convert()
    return write_file(path, flatbuffer)


def file_sampling(sampling):
    """The evaluation protocol that samples a file's input: ``train_units`` centred units and one centre
    crop of ``crop_size`` (``sampling`` with ``test_num_units``, ``test_crop_size``, ``test_num_crops`` so)."""
    return dataclasses.replace(sampling, test_num_units=sampling.train_units, test_crop_size=sampling.crop_size,
                               test_num_crops=1)


def _spread(resolved, count):
    """A video or rawframe list cut to ``count`` entries spread evenly over it (so every class is met)."""
    if not isinstance(resolved, (VideoFiles, RawFrames)) or len(resolved) <= count:
        return resolved
    chosen = np.unique(np.linspace(0, len(resolved) - 1, count).round().astype(int))
    return dataclasses.replace(resolved, **{
        field.name: [getattr(resolved, field.name)[i] for i in chosen]
        for field in dataclasses.fields(resolved) if isinstance(getattr(resolved, field.name), list)
        and field.name != "class_names"})


def representative_videos(source, sampling, count=32, **source_options):
    """Calibration videos for the int8 file: uint8 ``(N, U·T, S, S, 3)``, N ≤ ``count``.

    Read by the package's pipeline (``video_dataset``, evaluation mode) from any source it reads (a
    video or rawframe list, a folder per class, TFRecords; ``source_options`` as ``resolve_source``'s),
    sampled as the TFLite file of ``sampling`` takes them (``file_sampling``): ``train_units`` centred
    units of ``frames_per_unit`` frames at its stride, the short side resized and a centre crop of
    ``crop_size``, rounded back to uint8. From a list or class folders, ``count`` videos spread evenly
    over it; from TFRecords, the first ``count`` records. Unreadable videos are skipped; a source with
    none readable is a ``ValueError`` naming it.
    """
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"`count` must be a positive int, got {count!r}")
    resolved = _spread(resolve_source(source, **source_options), count)
    videos, info = video_dataset(resolved, file_sampling(sampling), training=False, batch_size=1,
                                 options=DataOptions(strict=False), with_info=True)
    mean, std = 255.0 * np.asarray(IMAGENET_MEAN), 255.0 * np.asarray(IMAGENET_STD)
    crop, frames = sampling.crop_size, []
    for views, _, _ in videos.take(count):
        normalised = views.numpy()[0, 0].reshape(-1, crop, crop, 3)  # the first (only) view: (U·T, S, S, 3)
        frames.append(np.clip(np.round(normalised * std + mean), 0, 255).astype(np.uint8))
    if not frames:
        raise ValueError(f"representative data {source!r}: no readable video ({info.skip_log.summary()})")
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
    interpreter.set_tensor(inp["index"], as_frames(np.asarray(video, np.uint8), tuple(int(n) for n in inp["shape"]),
                                                   path))
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


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
