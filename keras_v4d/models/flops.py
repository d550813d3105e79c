"""Counting multiply-accumulates (what the V4D and F4D papers call FLOPs)."""

import math

import keras

from keras_v4d.layers import Block4D, Conv4D, Factorized4D
from keras_v4d.models.video_model import VideoModel


def layer_macs(layer, input_shape):
    """Multiply-accumulates of one call of ``layer`` on a fully known ``input_shape``.

    Convolutions (1D/2D/3D and this package's 4D layers) and dense layers are counted, every
    kernel tap included even where it meets 'same' padding (the papers' convention);
    normalisation, activations, pooling and element-wise ops are not.
    """
    if isinstance(layer, (Block4D, Conv4D, Factorized4D)):  # the 4D layers count their own
        return int(layer.count_macs(tuple(input_shape)))
    if isinstance(layer, keras.layers.Dense):
        return math.prod(input_shape[:-1]) * input_shape[-1] * layer.units
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)):
        output_shape = layer.compute_output_shape(tuple(input_shape))
        per_output = math.prod(layer.kernel_size) * input_shape[-1] // layer.groups
        return math.prod(output_shape) * per_output
    return 0


def _concrete_copy(model, input_shape, batch_size):
    """A fresh copy of ``model`` (same architecture) whose input is ``(batch_size, *input_shape)``."""
    old_shape = tuple(model.inputs[0].shape)
    if len(model.inputs) != 1:
        raise ValueError(f"count_flops: expected a model with one input, got {len(model.inputs)} inputs in "
                         f"model '{model.name}'.")
    input_shape = tuple(old_shape[1:] if input_shape is None else input_shape)
    if len(input_shape) != len(old_shape) - 1:
        raise ValueError(
            f"count_flops: `input_shape` must have {len(old_shape) - 1} entries (no batch axis) "
            f"for model '{model.name}' with input {old_shape}, got {input_shape}.")
    if any(d is None for d in input_shape):
        raise ValueError(
            f"count_flops: model '{model.name}' has input shape {old_shape} with unknown axes; "
            f"pass a concrete `input_shape`, got {input_shape}.")
    config = model.get_config()
    if isinstance(model, VideoModel):
        return type(model).from_config({**config, "input_shape": input_shape, "batch_size": batch_size,
                                       "num_units": None, "frames_per_unit": None})
    input_layers = [layer for layer in config.get("layers", []) if layer["class_name"] == "InputLayer"]
    if len(input_layers) != 1:
        raise ValueError(f"count_flops: model '{model.name}' is not a functional model with one input layer.")
    input_layers[0]["config"]["batch_shape"] = (batch_size,) + input_shape
    for layer in config["layers"]:
        layer.pop("build_config", None)  # rebuilt on the concrete shapes when the graph is connected
    return keras.Model.from_config(config)


def _layers(model):
    """Every layer of ``model``, inside nested models too."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def count_flops(model, input_shape=None, batch_size=1):
    """Multiply-accumulates of one forward pass of ``model``.

    Args:
        model: a functional Keras model (every model of this package, and their ``parts()``).
        input_shape: the input shape without the batch axis, e.g. ``(4, 4, 224, 224, 3)``;
            defaults to the model's own input shape, which must then be fully known.
        batch_size: number of videos in the pass.
    Returns:
        An int: multiply-accumulates of all conv, 4D and dense layers.
    """
    concrete = _concrete_copy(model, input_shape, batch_size)
    total = 0
    for layer in _layers(concrete):
        build = layer.get_build_config() or {}
        shape = build.get("input_shape")  # a fresh copy builds each layer once, on its concrete input
        if shape is None or not all(isinstance(d, int) for d in shape):
            continue  # multi-input layers (add, unfold) do no multiply-accumulates
        total += layer_macs(layer, shape)
    return total
