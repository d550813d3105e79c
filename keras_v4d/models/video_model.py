"""``VideoModel``: a functional model that keeps the parts video-level inference needs.

V4D's Algorithm 1 (V4D §3.4) runs the 3D part before the first 4D block once per unit and the
rest per combination of units. The builder knows where the parts meet, so it keeps them: the
model is an ordinary flat functional ``keras.Model`` (same layers, names and weight files) that
also answers ``parts()`` — the 3D part, each 4D block with the 3D layers after it, and the head —
as models that share its layers. A subclass per builder (``ResNet3DModel``) is saved as its
builder arguments, so a loaded ``.keras`` file has the same parts.
"""

import collections

import keras

from keras_v4d.layers import Block4D

VideoParts = collections.namedtuple("VideoParts", ["n3d", "blocks4d", "tails", "head"])
VideoParts.__doc__ = """The parts of a video model; every tensor between them is ``(B, U, T, h, w, C)``.

    n3d: model ``video (B, U, T, H, W, 3)`` → features entering the first 4D block (or the head).
    blocks4d: the 4D blocks (``Block4D``: ``Residual4D``, ``F4DBlock``), in order.
    tails: one model per 4D block: its output → the next 4D block's input (or the head's input).
    head: model ``(B, U, T, h, w, C)`` → ``(B, classes)`` (or pooled features); ``None`` without one.
"""


def _units_free(part):
    """``part`` (a functional model of 6-D tensors) re-applied to an input whose unit axis U is free: the
    same layers and weights, for any number of units (the 3D part and the tails mix no units)."""
    free = keras.Input(shape=(None,) + tuple(part.inputs[0].shape[2:]), name=part.inputs[0].name)
    return keras.models.clone_model(part, input_tensors=free, clone_function=lambda layer: layer)


class VideoModel(keras.Model):
    """A functional video model of this package (built by ``build_resnet3d``).

    Args:
        inputs: as for a functional ``keras.Model``.
        outputs: as for a functional ``keras.Model``.
        boundaries: ``[video, z_1, y_1, …, z_K, y_K, features]``: the input, each 4D block's input
            ``z_i`` and output ``y_i``, and the features entering the head, all 6-D.
        has_head: whether ``outputs`` come from a head after ``features``.
        builder_config: the ``build_resnet3d`` arguments, for ``get_config``.
        head: a head of the user's (``models.heads.with_head``), or None.
    """

    def __init__(self, inputs, outputs, boundaries, has_head, builder_config, name=None, head=None):
        super().__init__(inputs=inputs, outputs=outputs, name=name)
        # A plain holder: Keras does not track what it holds, so the weight layout stays the model's.
        self._structure = _Structure(boundaries, has_head, builder_config, head)

    def parts(self):
        """The model's ``VideoParts`` (built once; they share this model's layers and weights)."""
        structure = self._structure
        if structure.parts is None:
            video, *between, features = structure.boundaries
            block_inputs, block_outputs = between[0::2], between[1::2]
            n3d = keras.Model(video, block_inputs[0] if block_inputs else features, name=f"{self.name}_n3d")
            blocks = [layer for layer in self.layers if isinstance(layer, Block4D)]
            ends = list(block_inputs[1:]) + [features]
            tails = [keras.Model(y, end, name=f"{self.name}_tail{i}") for i, (y, end) in
                     enumerate(zip(block_outputs, ends))]
            head = keras.Model(features, self.outputs[0], name=f"{self.name}_head") if structure.has_head else None
            if video.shape[1] is not None:  # Algorithm 1 runs the parts on other unit counts than the model's U
                n3d, tails = _units_free(n3d), [_units_free(tail) for tail in tails]
            structure.parts = VideoParts(n3d, blocks, tails, head)
        return structure.parts

    @property
    def boundaries(self):
        """``(video, z_1, y_1, …, z_K, y_K, features)``: the tensors where the parts meet."""
        return self._structure.boundaries

    @property
    def has_head(self):
        """Whether the model's output comes from a head after the features (scores or pooled features)."""
        return self._structure.has_head

    @property
    def head(self):
        """The user's head layer (``with_head``), or None for the builders' own head."""
        return self._structure.head

    @property
    def builder_config(self):
        """A copy of the builder arguments this model was made with."""
        return dict(self._structure.builder_config)

    def get_config(self):
        return self.builder_config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        raise NotImplementedError(f"{cls.__name__} is built by a builder; subclasses rebuild from its arguments")


class _Structure:
    def __init__(self, boundaries, has_head, builder_config, head):
        self.boundaries = tuple(boundaries)
        self.has_head = bool(has_head)
        self.builder_config = dict(builder_config)
        self.head = head
        self.parts = None


def _last_layer(model):
    layer = model.layers[-1]
    while isinstance(layer, keras.Model) and layer.layers:
        layer = layer.layers[-1]
    return layer


def ends_in_softmax(model):
    """Whether ``model``'s output is class probabilities (otherwise logits or features)."""
    config = model.get_config() if isinstance(model, VideoModel) else {}
    if "include_top" in config:
        return bool(config.get("include_top")) and config.get("classifier_activation") == "softmax"
    activation = getattr(_last_layer(model), "activation", None)
    return getattr(activation, "__name__", "") == "softmax"
