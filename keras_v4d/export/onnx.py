"""ONNX files of the lowered network (``export_onnx``), run with ONNX Runtime (``onnx_session``,
``run_onnx``): the TFLite files' input and network, one video's uint8 frames ``(U·T, S, S, 3)`` in,
``probabilities (1, classes)`` out."""

import os

import numpy as np

from keras_v4d.export.lowering import lower
from keras_v4d.export.outputs import ExportError, failure_named, write_file
from keras_v4d.export.shapes import as_frames, file_input_shape

ONNX_OPSET = 17
"""The ONNX opset ``export_onnx`` writes."""


def export_onnx(model, path, sampling):
    """Writes an ONNX file (opset ``ONNX_OPSET``) of the lowered network; returns ``path``.

    Converted by tf2onnx from the function the TFLite files hold (``keras_v4d.export.lowering.lower``): it takes
    the same input, one video's uint8 frames ``frames (U·T, S, S, 3)`` unit-major, U, T and S being
    ``sampling``'s ``train_units``, ``frames_per_unit`` and ``crop_size``, and returns
    ``probabilities (1, classes)``. Written whole or not at all (``ExportError`` on failure).
    """
    units, frames, height, width, _ = file_input_shape(model, sampling, "ONNX")
    try:
        import tf2onnx
    except ImportError as error:
        raise ExportError(f"ONNX export to {path} needs tf2onnx and onnx ({error}): "
                          "pip install 'tf2onnx>=1.17' onnx onnxruntime") from None
    function = lower(model, units, frames, (height, width))
    with failure_named(f"ONNX conversion for {path}", "a previous file there is left as it was"):
        proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature,
                                                 opset=ONNX_OPSET)
        data = proto.SerializeToString()
    return write_file(path, data)


def onnx_session(path):
    """An ``onnxruntime.InferenceSession`` of an ONNX file on the CPU."""
    import onnxruntime

    return onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])


def run_onnx(path, video):
    """Runs an ONNX file of ``export_onnx`` with ONNX Runtime (CPU): uint8 video → probabilities
    ``(1, classes)``; ``video`` as ``run_tflite`` takes it."""
    session = onnx_session(path)
    (inp,) = session.get_inputs()
    frames = as_frames(np.asarray(video, np.uint8), tuple(int(n) for n in inp.shape), path)
    return session.run(None, {inp.name: frames})[0]
