"""Records: the facts every other sub-package reads, and nothing above them.

``sampling`` (``VideoSampling``: how videos are sampled for a model), ``presets`` (one ``Preset`` per
weights tag), ``class_names``, ``run_files`` (a training run's file names, its ``settings.json``),
``weights_file`` (reading and checking a ``.weights.h5`` file) and ``atomic`` (files written whole
or not at all). They import no other sub-package of keras_v4d but ``_compat``.
"""

from keras_v4d.records.class_names import decode_predictions, kinetics400_class_names, read_class_names
from keras_v4d.records.presets import Preset, fetch_weights, get_preset, list_weights, register, resolve_weights
from keras_v4d.records.run_files import read_settings, write_settings
from keras_v4d.records.sampling import DEFAULT_SAMPLING, VideoSampling, resolve_sampling
from keras_v4d.records.weights_file import WeightsMismatchError, check_weights_file, load_model_weights

__all__ = [
    "DEFAULT_SAMPLING", "Preset", "VideoSampling", "WeightsMismatchError", "check_weights_file",
    "decode_predictions", "fetch_weights", "get_preset", "kinetics400_class_names", "list_weights",
    "load_model_weights", "read_class_names", "read_settings", "register", "resolve_sampling", "resolve_weights",
    "write_settings",
]
