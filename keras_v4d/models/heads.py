"""A head of the user's on a backbone of the package, keeping video-level inference.

``with_head(V4DResNet18(include_top=False, weights=...), head)`` puts any Keras layer or model that
maps the feature map ``(B, U, T, h, w, C)`` to ``(B, classes)`` on top of a backbone: the result is a
``VideoModel`` whose parts (the 3D part, the 4D blocks, the head) Algorithm 1 runs, and that is saved
and reloaded through ``.keras`` as the backbone's builder arguments and the head's Keras config.
"""

import keras

from keras_v4d.models.resnet3d import build_resnet3d
from keras_v4d.models.video_model import VideoModel


def with_head(backbone, head, name=None):
    """``backbone`` (a ``VideoModel`` built with ``include_top=False, pooling=None``) with the user's
    ``head`` (a Keras layer or model: features ``(B, U, T, h, w, C)`` → ``(B, classes)``) on top.

    The result is a ``VideoModel``: video-level inference (Algorithm 1), evaluation, prediction and
    the timeline run its parts, and it is saved and reloaded through ``.keras`` (the head must be
    serialisable, as any Keras layer or model is).
    """
    if not isinstance(backbone, VideoModel) or backbone.has_head:
        raise ValueError(f"with_head: `backbone` must be a keras_v4d model built with include_top=False and "
                         f"pooling=None (its output the feature map (B, U, T, h, w, C)), got '{backbone.name}'")
    outputs = head(backbone.outputs[0])
    if len(outputs.shape) != 2:
        raise ValueError(f"with_head: the head must map features (B, U, T, h, w, C) to (B, classes); "
                         f"'{head.name}' gives {tuple(outputs.shape)}")
    return HeadedVideoModel(backbone.inputs[0], outputs, backbone.boundaries, backbone.builder_config,
                            head, name=name or f"{backbone.name}_{head.name}")


@keras.saving.register_keras_serializable(package="keras_v4d")
class HeadedVideoModel(VideoModel):
    """A backbone of the package with a head of the user's (made by ``with_head``); saved as the
    backbone's builder arguments and the head's Keras config."""

    def __init__(self, inputs, outputs, boundaries, builder_config, head, name=None):
        super().__init__(inputs, outputs, boundaries, True, builder_config, name=name, head=head)

    def get_config(self):
        return {"backbone": self.builder_config, "head": keras.saving.serialize_keras_object(self.head),
                "name": self.name}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        head = keras.saving.deserialize_keras_object(config["head"], custom_objects=custom_objects)
        return with_head(build_resnet3d(**config["backbone"]), head, name=config.get("name"))
