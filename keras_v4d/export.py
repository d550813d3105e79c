"""Export for deployment: a TF Serving SavedModel and TFLite files that take uint8 video.

``export_saved_model(model, "exported/v4d")``, ``export_tflite(model, "v4d.tflite", U, T, S)``,
``run_tflite(path, frames)``, ``tflite_ops(path)``; the command-line tool is ``keras-v4d export``.

The SavedModel's ``serving_default`` takes ``video`` uint8 ``(batch, U, T, H, W, 3)`` RGB and
returns ``probabilities`` ``(batch, classes)``; ImageNet normalisation runs inside the graph. U, H
and W stay free where the model allows them (U is fixed by the TFLite files, which need static
shapes). Beside it, ``video_frames`` and ``video_jpeg`` take one whole video and run the test
protocol in the graph (``keras_v4d.serving``). The TFLite files take one video's uint8 frames
``(U·T, S, S, 3)`` and hold the network lowered to rank-4 tensors and Conv2D (``keras_v4d.lowering``),
so LiteRT's XNNPACK delegate runs it. TFLite variants: ``float32``, ``dynamic`` (dynamic-range int8
weights), ``fp16``.

An empty input (any of batch, U, T, H, W equal to 0) is an ``InvalidArgumentError`` naming the
dimension. Exports replace their output whole or not at all: a failed export (``ExportError``)
leaves the previous SavedModel folder or TFLite file as it was.
"""

import collections
import os
import shutil

import numpy as np
import tensorflow as tf

from keras_v4d import _compat
from keras_v4d.atomic import TEMPORARY_PREFIX, open_atomically, temporary_path
from keras_v4d.data.frame_size import MAX_FRAME_PIXELS
from keras_v4d.lowering import lower
from keras_v4d.models.preprocessing import preprocess_input
from keras_v4d.models.video_model import VideoModel, ends_in_softmax
from keras_v4d.sampling import resolve_sampling
from keras_v4d.serving import whole_video_functions

TFLITE_VARIANTS = ("float32", "dynamic", "fp16")
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
    ``video_frames`` and ``video_jpeg`` (``keras_v4d.serving``: one video's frames in, the test
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


def export_tflite(model, path, num_units, frames_per_unit, spatial_size, variant="float32"):
    """Writes a TFLite flatbuffer for one video's uint8 frames ``(U·T, S, S, 3)``; returns ``path``.

    The frames are unit-major (unit 0's T frames, then unit 1's, …): ``video.reshape(-1, S, S, 3)`` of a
    ``(1, U, T, S, S, 3)`` batch. The network is lowered (``keras_v4d.lowering``): no tensor of rank
    above 4 and no ``CONV_3D``, so LiteRT's XNNPACK delegate takes it. The file appears at ``path``
    only once converted and written whole; a failed conversion (``ExportError``) leaves a previous
    file at ``path`` as it was.
    """
    if variant not in TFLITE_VARIANTS:
        raise ValueError(f"`variant` must be one of {TFLITE_VARIANTS}, got {variant!r}")
    shape = _input_shape(model, num_units, frames_per_unit, spatial_size)
    if None in shape:
        raise ValueError(f"TFLite needs a static input shape; got (U, T, H, W, 3) = {shape}: give num_units, "
                         "frames_per_unit and spatial_size")
    concrete = lower(model, shape[0], shape[1], shape[2:4]).get_concrete_function()
    # The weights are constants of the lowered function; converting with the Keras object attached would
    # keep resource variables that the LiteRT interpreter leaves uninitialised (garbage outputs).
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    if variant in ("dynamic", "fp16"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    try:
        flatbuffer = converter.convert()
    except Exception as error:  # noqa: BLE001  (the converter's ConverterError is not public API)
        raise ExportError(f"TFLite ({variant}) conversion for {path} failed ({type(error).__name__}: {error}); "
                          "a previous file there is left as it was") from error
    with open_atomically(path, "wb") as handle:
        handle.write(flatbuffer)
    return path


def _interpreter(path, delegates=True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_path=os.fspath(path), experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    return interpreter


def run_tflite(path, video):
    """Runs a TFLite file with the ``ai-edge-litert`` interpreter (XNNPACK on the CPU): uint8 video →
    probabilities ``(1, classes)``.

    ``video``: the file's frames ``(U·T, S, S, 3)``, or the same video as sampled units
    ``(1, U, T, S, S, 3)`` / ``(U, T, S, S, 3)``, taken unit-major.
    """
    interpreter = _interpreter(path)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    video = np.asarray(video, np.uint8)
    expected = tuple(int(n) for n in inp["shape"])
    units = tuple(video.shape[1:] if video.ndim == 6 and video.shape[0] == 1 else video.shape)
    if tuple(video.shape) != expected and not (len(units) == 5 and units[0] * units[1] == expected[0]
                                               and units[2:] == expected[1:]):
        raise ValueError(f"{path} takes video frames of shape {expected} (or units (1, U, T, H, W, 3) with "
                         f"U·T = {expected[0]}), got {tuple(video.shape)}")
    interpreter.set_tensor(inp["index"], video.reshape(expected))
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


def tflite_ops(path):
    """What a TFLite file asks of LiteRT on this CPU: ``{"ops": Counter of op names, "not_delegated":
    Counter of the ops the default delegate (XNNPACK) left to the built-in kernels, "partitions":
    the number of delegate nodes}``, as the interpreter reports them after delegation."""
    interpreter = _interpreter(path)
    nodes = {node["index"]: node for node in _compat.tflite_nodes(interpreter)}
    delegates = [node for node in nodes.values() if node["op_name"] == "DELEGATE"]
    plain = [node for node in nodes.values() if node["op_name"] != "DELEGATE"]
    delegate_inputs = {t for node in delegates for t in node["inputs"]}
    delegate_outputs = {t for node in delegates for t in node["outputs"]}
    producers = {t: node["index"] for node in plain for t in node["outputs"]}
    consumers = collections.defaultdict(set)
    for node in plain:
        for t in node["inputs"]:
            consumers[t].add(node["index"])
    graph_outputs = {int(d["index"]) for d in interpreter.get_output_details()}
    # A node the delegate left runs on its own: it feeds a delegate node or the outputs from outside it, or
    # reads a delegate node's output; what such a node reads and what reads it (not via a delegate) run too.
    left = {producers[t] for t in (delegate_inputs | graph_outputs) - delegate_outputs if t in producers}
    left |= {i for t in delegate_outputs for i in consumers[t]}
    if not delegates:
        left = {node["index"] for node in plain}
    pending = list(left)
    while pending:
        node = nodes[pending.pop()]
        linked = {producers[t] for t in node["inputs"] if t in producers and t not in delegate_outputs}
        linked |= {i for t in node["outputs"] if t not in delegate_inputs for i in consumers[t]}
        for index in linked - left:
            left.add(index)
            pending.append(index)
    return {"ops": collections.Counter(node["op_name"] for node in plain),
            "not_delegated": collections.Counter(nodes[i]["op_name"] for i in left),
            "partitions": len(delegates)}


def _input_shape(model, num_units, frames_per_unit, spatial_size):
    fixed = tuple(model.inputs[0].shape[1:])  # (U, T, H, W, 3)
    wanted = (num_units, frames_per_unit, spatial_size, spatial_size)
    shape = []
    for axis, (have, want, name) in enumerate(zip(fixed[:4], wanted, ("num_units", "frames_per_unit", "H", "W"))):
        if have is not None and want is not None and have != want:
            raise ValueError(f"the model takes {name}={have}, cannot export it with {want}")
        shape.append(have if have is not None else want)
    return tuple(shape) + (3,)
