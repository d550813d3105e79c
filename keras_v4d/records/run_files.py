"""The files of a training run's folder, named once.

A run folder holds ``run.json`` (what defines the run), ``settings.json`` (the sampling the model
was trained with and its class names: what inference, evaluation and export read beside a
checkpoint), ``epoch-NNN.weights.h5`` (resume points), ``best.weights.h5`` with ``best.json``
(the epoch of the best validation score), ``last.keras``, ``history.csv``, ``skipped.csv``,
``tensorboard/`` and ``.lock`` (held while a process trains there). A run's class names are
stored in ``settings.json`` only; an older run's ``class_names.txt`` is still read.
"""

import json
import os
import re

from keras_v4d.records.atomic import open_atomically
from keras_v4d.records.class_names import read_class_names
from keras_v4d.records.sampling import VideoSampling

RUN_FILE = "run.json"
SETTINGS_FILE = "settings.json"
LAST_MODEL_FILE = "last.keras"
HISTORY_FILE = "history.csv"
SKIPPED_FILE = "skipped.csv"
CHECKPOINT_NAME = "epoch-{epoch:03d}.weights.h5"
CHECKPOINT_PATTERN = re.compile(r"^epoch-(\d{3,})\.weights\.h5$")
BEST_CHECKPOINT_FILE = "best.weights.h5"  # the epoch checkpoint with the best validation score, kept by name
DEFAULT_KEEP_CHECKPOINTS = 3  # epoch checkpoints a run keeps (sizes per model: benchmarks/checkpoint_sizes.py)
BEST_RECORD_FILE = "best.json"  # which epoch best.weights.h5 is, by which metric, and its value
TENSORBOARD_FOLDER = "tensorboard"
WORKERS_FOLDER = "workers"
OLD_CLASS_NAMES_FILE = "class_names.txt"  # written beside settings.json by earlier versions; read, never written
# What train() writes into a folder (and an older run's class names); --overwrite removes these and nothing else.
RUN_FILES = (RUN_FILE, SETTINGS_FILE, OLD_CLASS_NAMES_FILE, LAST_MODEL_FILE, HISTORY_FILE, SKIPPED_FILE,
             BEST_CHECKPOINT_FILE, BEST_RECORD_FILE)
RUN_FOLDERS = (TENSORBOARD_FOLDER, WORKERS_FOLDER, "backup")  # backup/: the BackupAndRestore state of earlier versions


def write_settings(folder, sampling, class_names=None):
    """Writes ``sampling`` and ``class_names`` to ``folder/settings.json``; returns its path."""
    path = os.path.join(folder, SETTINGS_FILE)
    with open_atomically(path, "w", encoding="utf-8") as handle:
        json.dump({**sampling.to_dict(), "class_names": list(class_names) if class_names else None}, handle,
                  indent=2)
    return path


def _beside(checkpoint, name):
    return os.path.join(os.path.dirname(os.path.abspath(os.fspath(checkpoint))), name)


def read_settings(checkpoint):
    """The settings saved beside ``checkpoint`` (``settings.json`` in its folder): ``(sampling fields
    as saved (a dict, possibly partial), class names or None)``; ``({}, None)`` when there is none."""
    path = _beside(checkpoint, SETTINGS_FILE)
    if not os.path.isfile(path):
        return {}, None
    try:
        with open(path, encoding="utf-8") as handle:
            settings = json.load(handle)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable settings file ({error})") from None
    if not isinstance(settings, dict):
        raise ValueError(f"{path}: expected a JSON object of settings, got {type(settings).__name__}")
    class_names = settings.pop("class_names", None)
    VideoSampling.from_dict(settings, path)  # an unknown key or a bad value is an error here, naming the file
    return settings, class_names


def read_run_class_names(checkpoint):
    """The class names of the run that wrote ``checkpoint``: its ``settings.json``'s, else an older
    run's ``class_names.txt`` beside it; ``None`` when neither names them."""
    _, class_names = read_settings(checkpoint)
    if class_names is not None:
        return list(class_names)
    path = _beside(checkpoint, OLD_CLASS_NAMES_FILE)
    return read_class_names(path) if os.path.isfile(path) else None
