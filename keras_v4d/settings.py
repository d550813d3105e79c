"""Sampling settings that travel with the weights (V4D §3.1, §4.2).

A model is only right on input sampled the way it was trained: U (``train_units``), T, τ, the crop
and the short side. The training CLI writes them to ``settings.json`` beside its checkpoints, a
registry entry carries them in its ``input`` block, and ``predict``, ``evaluate`` and ``export``
take them as their defaults. Explicit arguments still win; one that contradicts what the model
itself fixes (its input's U or T) is an error naming both values.
"""

import json
import os

SETTINGS_FILE = "settings.json"
# The paper's Mini-Kinetics recipe: U=4 units of T=4 frames at τ=8, 224² crops of short side 256;
# test: U_infer=10 centred units, 3 crops of 256² (fully convolutional).
DEFAULTS = {"train_units": 4, "frames_per_unit": 4, "stride": 8, "crop_size": 224, "short_side": 256,
            "test_num_units": 10, "test_crop_size": None, "test_num_crops": 3}
KEYS = tuple(DEFAULTS) + ("class_names",)


def save_settings(folder, settings):
    """Writes ``settings`` (keys of ``KEYS``) to ``folder/settings.json``; returns its path."""
    unknown = sorted(set(settings) - set(KEYS))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; known: {list(KEYS)}")
    path = os.path.join(folder, SETTINGS_FILE)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(settings, handle, indent=2)
    return path


def load_settings(checkpoint):
    """The settings saved beside ``checkpoint`` (``settings.json`` in its folder), else ``{}``."""
    path = os.path.join(os.path.dirname(os.path.abspath(os.fspath(checkpoint))), SETTINGS_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            settings = json.load(handle)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable settings file ({error})") from None
    if not isinstance(settings, dict):
        raise ValueError(f"{path}: expected a JSON object of settings, got {type(settings).__name__}")
    return {k: v for k, v in settings.items() if k in KEYS}


def model_fixed_units_and_frames(model):
    """``(U, T)`` fixed by ``model``'s input shape (``None`` where free)."""
    shape = model.inputs[0].shape
    return shape[1], shape[2]


def _pick(name, explicit, saved, default):
    if explicit is not None:
        return explicit
    if saved.get(name) is not None:
        return saved[name]
    return default


def inference_settings(model, saved=None, *, train_units=None, num_units=None, frames_per_unit=None,
                       stride=None, crop_size=None, short_side=None, num_crops=None, mode="combinations"):
    """Test-time sampling for ``model``: explicit arguments, else ``saved`` settings, else the
    model's fixed U/T, else the paper's (``DEFAULTS``).

    Returns ``(train_units, sampling)`` with ``sampling`` the keyword arguments of
    ``video_dataset``/``load_video_views`` (``num_units``, ``frames_per_unit``, ``stride``,
    ``crop_size``, ``short_side``, ``num_crops``). Raises ``ValueError`` naming both values when an
    argument or a saved setting contradicts the model's input.
    """
    saved = dict(saved or {})
    fixed_units, fixed_frames = model_fixed_units_and_frames(model)
    frames = _pick("frames_per_unit", frames_per_unit, saved, fixed_frames or DEFAULTS["frames_per_unit"])
    if fixed_frames is not None and frames != fixed_frames:
        source = "frames_per_unit" if frames_per_unit is not None else "the saved settings' frames_per_unit"
        raise ValueError(f"{source}={frames}, but the model '{model.name}' takes T={fixed_frames}")
    units = _pick("train_units", train_units, saved, fixed_units or DEFAULTS["train_units"])
    if fixed_units is not None and units != fixed_units:
        source = "train_units" if train_units is not None else "the saved settings' train_units"
        raise ValueError(f"{source}={units}, but the model '{model.name}' takes U={fixed_units}")
    short = _pick("short_side", short_side, saved, DEFAULTS["short_side"])
    crop = crop_size if crop_size is not None else (saved.get("test_crop_size") or short)
    infer_units = _pick("test_num_units", num_units, saved, DEFAULTS["test_num_units"])
    crops = _pick("test_num_crops", num_crops, saved, DEFAULTS["test_num_crops"])
    step = _pick("stride", stride, saved, DEFAULTS["stride"])
    if crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {crops}")
    if crop > short:
        raise ValueError(f"crop_size {crop} is larger than short_side {short}")
    if infer_units < units:
        raise ValueError(f"num_units {infer_units} is below train_units {units}; video-level inference needs "
                         "U_infer >= U_train")
    if fixed_units is not None and infer_units != fixed_units and mode == "all_units":
        raise ValueError(f"the model takes exactly U={fixed_units}; use mode 'combinations' for U_infer > U_train")
    return units, dict(num_units=infer_units, frames_per_unit=frames, stride=step, crop_size=crop,
                       short_side=short, num_crops=crops)
