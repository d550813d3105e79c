"""The sampling protocol (V4D §3.1, §4.2): ``VideoSampling``, the one place its defaults are written.

A model is only right on input sampled the way it was trained: U action units of T frames, τ
frames apart, resized to a short side and cropped. Test time adds U_infer units (Algorithm 1) and
the crops. The pipeline, training, evaluation, prediction, export, the command-line flags, a
training run's ``settings.json`` and the weights presets all read a ``VideoSampling``.
"""

import dataclasses


def check_positive_int(value, name, where):
    """``ValueError`` ``"{where}: `{name}` must be a positive int, got …"`` unless ``value`` is an int ≥ 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: `{name}` must be a positive int, got {value!r}")


@dataclasses.dataclass(frozen=True)
class VideoSampling:
    """How videos are sampled for one model. The defaults are V4D's Mini-Kinetics recipe (§4.2).

    Attributes:
        train_units: U, action units per training sample; also Algorithm 1's number of sections.
        frames_per_unit: T, frames per unit.
        stride: τ, frames between two sampled frames of a unit.
        crop_size: training crop (S×S).
        short_side: frames are resized to this short side before cropping.
        test_num_units: U_infer, centred units per video at test time (≥ ``train_units``).
        test_crop_size: test crop; ``None``: the short side (the papers' fully convolutional test).
        test_num_crops: test views per video: 1 (centre) or 3 (along the long side).
        area_range: training only: ``(lo, hi)``, the random crop's area as a fraction of the frame
            (``0 < lo <= hi <= 1``).
    """

    train_units: int = 4
    frames_per_unit: int = 4
    stride: int = 8
    crop_size: int = 224
    short_side: int = 256
    test_num_units: int = 10
    test_crop_size: int | None = None
    test_num_crops: int = 3
    area_range: tuple = (0.25, 1.0)

    def __post_init__(self):
        self._check_area_range()
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name != "area_range" and not (value is None and field.name == "test_crop_size"):
                check_positive_int(value, field.name, "VideoSampling")
        if self.test_num_crops not in (1, 3):
            raise ValueError(f"VideoSampling: `test_num_crops` must be 1 or 3, got {self.test_num_crops}")
        for name in ("crop_size", "test_crop_size"):
            if (getattr(self, name) or 0) > self.short_side:
                raise ValueError(f"VideoSampling: `{name}`={getattr(self, name)} is larger than "
                                 f"`short_side`={self.short_side}")
        if self.test_num_units < self.train_units:
            raise ValueError(f"VideoSampling: `test_num_units`={self.test_num_units} is below `train_units`="
                             f"{self.train_units}; video-level inference needs U_infer >= U_train")

    def _check_area_range(self):
        value = self.area_range
        if isinstance(value, list):  # as JSON stores it
            value = tuple(value)
            object.__setattr__(self, "area_range", value)
        numbers = isinstance(value, tuple) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if not numbers or not 0 < value[0] <= value[1] <= 1:
            raise ValueError(f"VideoSampling: `area_range` must be (lo, hi) with 0 < lo <= hi <= 1, got {value!r}")

    @property
    def test_crop(self):
        """The test crop size: ``test_crop_size``, else the short side."""
        return self.test_crop_size or self.short_side

    def to_dict(self):
        """The fields as a dict (what ``settings.json`` and a preset's ``input`` hold)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values, where="settings"):
        """A ``VideoSampling`` from a dict of its fields (missing ones take the defaults); an unknown
        key is an error naming ``where`` it came from."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{where}: unknown sampling settings {unknown}; known: {sorted(names)}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: {error}") from None


DEFAULT_SAMPLING = VideoSampling()
"""The papers' protocol, ``VideoSampling()``: 4 units × 4 frames at stride 8, 224² crops of short side
256; test: 10 units, 3 crops of 256²."""


def model_fixed_input(model):
    """``(U, T, H, W)`` fixed by ``model``'s input shape (``None`` where free)."""
    return tuple(model.inputs[0].shape[1:5])


def _fit_fixed_frame_size(model, height, width, values, saved, crop_size):
    """Sets the crops of ``values`` to the S×S frames ``model`` takes (and the short side to S when
    neither the caller nor the saved settings give one); ``ValueError`` naming the setting that
    conflicts with S."""
    if height != width:
        raise ValueError(f"the model '{model.name}' takes {height}×{width} frames (H×W; None is free), but "
                         "videos are sampled as square crops: build it with equal H and W, or both free")
    for name, given in (("test_crop_size", crop_size), ("crop_size", None)):
        value = given if given is not None else saved.get(name)
        if value is not None and value != height:
            source = "crop_size" if given is not None else f"the saved settings' {name}"
            raise ValueError(f"{source}={value}, but the model '{model.name}' takes {height}×{width} frames")
        values[name] = height
    values.setdefault("short_side", height)
    if values["short_side"] < height:
        raise ValueError(f"short_side={values['short_side']} is below the {height}×{width} frames the model "
                         f"'{model.name}' takes")


def resolve_sampling(model, saved=None, *, train_units=None, num_units=None, frames_per_unit=None, stride=None,
                     crop_size=None, short_side=None, num_crops=None, mode="combinations"):
    """The test-time ``VideoSampling`` of ``model``: explicit arguments, else the ``saved`` settings (a
    dict of ``VideoSampling`` fields, e.g. from ``read_settings`` or a preset), else what the model's
    input shape fixes (U, T, and square S×S frames: both crops S and, unless given or saved, the short
    side S), else the defaults.

    ``num_units``, ``crop_size`` and ``num_crops`` are the test ones (U_infer, the test crop, views).
    Raises ``ValueError`` naming both values when an argument or a saved setting contradicts the
    model's input.
    """
    saved = {k: v for k, v in dict(saved or {}).items() if v is not None}
    fixed_units, fixed_frames, fixed_height, fixed_width = model_fixed_input(model)
    values = {}
    for name, explicit, fixed in (("frames_per_unit", frames_per_unit, fixed_frames),
                                  ("train_units", train_units, fixed_units)):
        value = explicit if explicit is not None else saved.get(name, fixed)
        if fixed is not None and value is not None and value != fixed:
            source = name if explicit is not None else f"the saved settings' {name}"
            raise ValueError(f"{source}={value}, but the model '{model.name}' takes "
                             f"{'T' if name == 'frames_per_unit' else 'U'}={fixed}")
        if value is not None:
            values[name] = value
    for name, explicit in (("stride", stride), ("short_side", short_side), ("test_num_units", num_units),
                           ("test_num_crops", num_crops), ("test_crop_size", crop_size)):
        value = explicit if explicit is not None else saved.get(name)
        if value is not None:
            values[name] = value
    short = values.get("short_side", DEFAULT_SAMPLING.short_side)
    if saved.get("crop_size", short + 1) <= short:  # the training crop travels along (export reads it)
        values["crop_size"] = saved["crop_size"]
    elif short < DEFAULT_SAMPLING.crop_size:
        values["crop_size"] = short  # a test-time short side below the training crop: test crops are what count
    if fixed_height is not None or fixed_width is not None:
        _fit_fixed_frame_size(model, fixed_height, fixed_width, values, saved, crop_size)
        short = values["short_side"]
    units = values.get("train_units", DEFAULT_SAMPLING.train_units)
    infer_units = values.get("test_num_units", DEFAULT_SAMPLING.test_num_units)
    if infer_units < units:
        raise ValueError(f"num_units {infer_units} is below train_units {units}; video-level inference needs "
                         "U_infer >= U_train")
    if values.get("test_crop_size", 0) > short:
        raise ValueError(f"crop_size {values['test_crop_size']} is larger than short_side {short}")
    if values.get("test_num_crops", 1) not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {values['test_num_crops']}")
    sampling = VideoSampling.from_dict(values, "sampling")
    if fixed_units is not None and sampling.test_num_units != fixed_units and mode == "all_units":
        raise ValueError(f"the model takes exactly U={fixed_units}; use mode 'combinations' for U_infer > U_train")
    return sampling
