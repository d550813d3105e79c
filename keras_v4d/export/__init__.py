"""Export for deployment: a TF Serving SavedModel (``saved_model``, with the whole-video signatures of
``serving``), TFLite files and an ONNX file of the network lowered to rank-4 tensors (``lowering``).
The command-line tool is ``keras-v4d export``."""

from keras_v4d.export.saved_model import (
    ONNX_OPSET,
    TFLITE_VARIANTS,
    ExportError,
    export_onnx,
    export_saved_model,
    export_tflite,
    onnx_session,
    representative_videos,
    run_onnx,
    run_tflite,
    tflite_interpreter,
    tflite_ops,
)
from keras_v4d.export.serving import WHOLE_VIDEO_SIGNATURES, whole_video_functions

__all__ = [
    "ONNX_OPSET", "TFLITE_VARIANTS", "WHOLE_VIDEO_SIGNATURES", "ExportError", "export_onnx", "export_saved_model",
    "export_tflite", "onnx_session", "representative_videos", "run_onnx", "run_tflite", "tflite_interpreter",
    "tflite_ops", "whole_video_functions",
]
