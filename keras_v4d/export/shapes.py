"""The exported inputs' shapes, read from a ``VideoSampling`` and checked against the model's input.

Which sampling field gives which dimension: U = ``train_units``, T = ``frames_per_unit``, H = W =
``crop_size`` (a training sample's shape). The TFLite and ONNX files take one such sample's frames,
uint8 ``(U·T, S, S, 3)`` unit-major, static; the SavedModel's ``serving_default`` takes
``(batch, U, T, H, W, 3)`` with a dimension fixed only where the model fixes it or ``static`` names it.
"""

import numpy as np

from keras_v4d.records.sampling import VideoSampling

STATIC_FIELDS = ("train_units", "frames_per_unit", "crop_size")
"""The ``VideoSampling`` fields an exported input fixes by default: U, T and the crop size."""


def input_shape(model, sampling, static=STATIC_FIELDS):
    """``(U, T, H, W, 3)``: the model's fixed dimensions, else the ``sampling`` fields named in ``static``,
    else ``None`` (free). A field that contradicts the model is a ``ValueError`` naming both values."""
    unknown = sorted(set(static) - set(STATIC_FIELDS))
    if unknown:
        raise ValueError(f"`static` takes fields among {STATIC_FIELDS}, got {unknown}")
    fixed = tuple(model.inputs[0].shape[1:5])
    fields = ("train_units", "frames_per_unit", "crop_size", "crop_size")
    shape = []
    for have, field, axis in zip(fixed, fields, "UTHW"):
        want = getattr(sampling, field) if field in static else None
        if have is not None and want is not None and have != want:
            name = field if field != "crop_size" else f"crop_size ({axis})"
            raise ValueError(f"the model takes {name}={have}, cannot export it with {want}")
        shape.append(have if have is not None else want)
    return tuple(shape) + (3,)


def file_input_shape(model, sampling, what):
    """``(U, T, S, S, 3)`` of a TFLite or ONNX file (``what``): static, from ``sampling``'s
    ``train_units``, ``frames_per_unit`` and ``crop_size``."""
    if not isinstance(sampling, VideoSampling):
        raise ValueError(f"{what} needs a static input shape (U, T, S): `sampling` must be a VideoSampling "
                         f"(its train_units, frames_per_unit and crop_size), got {sampling!r}")
    return input_shape(model, sampling)


def as_frames(video, expected, where):
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
