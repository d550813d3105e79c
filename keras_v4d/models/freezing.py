"""Freezing named parts of a model, for the paper's staged training (V4D §4.3: the 3D backbone first,
then V4D with the 4D blocks fixed, then everything) and for fine-tuning.

Parts: ``"blocks4d"`` (every ``Block4D``), ``"backbone"`` (every layer with weights before the head but
the 4D blocks), ``"head"`` (the classifier, or a head of the user's), ``"batch_norm"`` (every
BatchNormalization: a frozen one also keeps its statistics, Keras' inference mode) and
``"partial_batch_norm"`` (every BatchNormalization but the first, TSN's partial BN that the released
V4D code uses when fine-tuning). Keras reads ``trainable`` when a model is compiled: compile after
freezing.
"""

import keras

from keras_v4d.layers import Block4D

PARTS = ("blocks4d", "backbone", "head", "batch_norm", "partial_batch_norm")
"""What ``freeze`` and ``unfreeze`` take (``--freeze``): the 4D blocks, the backbone, the head, every
BatchNormalization, or every one but the first (as the released V4D code fine-tunes)."""


def _head_layers(model):
    parts = model.parts()
    return [] if parts.head is None else [layer for layer in parts.head.layers if layer.weights]


def part_layers(model, part):
    """The layers of ``model`` (a ``VideoModel``) that make up ``part`` (one of ``PARTS``)."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; parts: {', '.join(PARTS)}")
    with_weights = [layer for layer in model.layers if layer.weights]
    if part == "blocks4d":
        return [layer for layer in with_weights if isinstance(layer, Block4D)]
    if part == "head":
        return _head_layers(model)
    if part == "backbone":
        head = {id(layer) for layer in _head_layers(model)}
        return [layer for layer in with_weights if not isinstance(layer, Block4D) and id(layer) not in head]
    norms = [layer for layer in with_weights if isinstance(layer, keras.layers.BatchNormalization)]
    return norms if part == "batch_norm" else norms[1:]


def set_trainable(model, parts, trainable):
    """Sets ``trainable`` on the layers of each of ``parts`` (names from ``PARTS``); returns the
    names of the layers it set, in the model's order."""
    if isinstance(parts, str):
        parts = [parts]
    layers = {}
    for part in parts:
        for layer in part_layers(model, part):
            layers[id(layer)] = layer
    for layer in layers.values():
        layer.trainable = trainable
    return [layer.name for layer in model.layers if id(layer) in layers]


def freeze(model, *parts):
    """Freezes ``parts`` of ``model`` (see ``PARTS``); returns the names of the frozen layers."""
    return set_trainable(model, parts, False)


def unfreeze(model, *parts):
    """Makes ``parts`` of ``model`` trainable again; returns the names of those layers."""
    return set_trainable(model, parts, True)
