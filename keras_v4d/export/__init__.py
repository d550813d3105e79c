"""Export for deployment, one concept per module: a TF Serving SavedModel (``saved_model``, with the
whole-video signatures of ``serving``), TFLite files (``tflite``) and an ONNX file (``onnx``) of the
network lowered to rank-4 tensors (``lowering``, on the Conv2D views of ``frame_convolutions``); the
input shapes a ``VideoSampling`` gives them (``shapes``) and outputs written whole or not at all
(``outputs``). The command-line tool is ``keras-v4d export``."""

from keras_v4d.export.lowering import LOWERING_RULES, LoweredValue, lower, lower_layer, lowering_rule
from keras_v4d.export.onnx import ONNX_OPSET, export_onnx, onnx_session, run_onnx
from keras_v4d.export.outputs import ExportError
from keras_v4d.export.saved_model import export_saved_model
from keras_v4d.export.serving import WHOLE_VIDEO_SIGNATURES, whole_video_functions
from keras_v4d.export.shapes import STATIC_FIELDS
from keras_v4d.export.tflite import (
    TFLITE_VARIANTS,
    export_tflite,
    representative_videos,
    run_tflite,
    tflite_interpreter,
    tflite_ops,
)

__all__ = [
    "LOWERING_RULES", "ONNX_OPSET", "STATIC_FIELDS", "TFLITE_VARIANTS", "WHOLE_VIDEO_SIGNATURES", "ExportError",
    "LoweredValue", "export_onnx", "export_saved_model", "export_tflite", "lower", "lower_layer", "lowering_rule",
    "onnx_session", "representative_videos", "run_onnx", "run_tflite", "tflite_interpreter", "tflite_ops",
    "whole_video_functions",
]
