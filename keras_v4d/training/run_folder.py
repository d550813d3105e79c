"""A training run's folder: one run per folder, its checkpoints, and where a run resumes.

``run.json`` records what defines the run (builder, data sources and their sizes, sampling, batch,
classes, recipe) when it starts; a later ``train`` into the folder with other settings is refused
before anything is written, naming each difference (``overwrite=True`` deletes the old run's files
first). ``epoch-NNN.weights.h5`` (the model's and the optimizer's state after epoch NNN) are the
resume points: a run resumes from the newest one that can be read, and says which files it passed
over and why. Every file is written under a temporary name and renamed (``keras_v4d.records.atomic``), so a
kill while saving leaves the previous checkpoint whole.
"""

import csv
import dataclasses
import json
import os
import shutil

from keras_v4d.records.atomic import open_atomically, remove_temporaries
from keras_v4d.records.presets import list_weights
from keras_v4d.records.run_files import (
    CHECKPOINT_PATTERN,
    DEFAULT_KEEP_CHECKPOINTS,
    HISTORY_FILE,
    LAST_MODEL_FILE,
    RUN_FILE,
    RUN_FILES,
    RUN_FOLDERS,
    SKIPPED_FILE,
    WORKERS_FOLDER,
)
from keras_v4d.records.sampling import DEFAULT_SAMPLING

# Settings recorded since a later version: an earlier run.json without them held these values.
RECORD_DEFAULTS = {"freeze": []}
# Recorded, but a command may change them: a resumed run records the new value.
CHANGEABLE_SETTINGS = ("keep_checkpoints",)


class RunFolderError(ValueError):
    """The output folder holds another run, or none of its checkpoints can be read."""


def describe_source(source):
    """A data source as recorded: absolute paths for paths (so ``runs/../train.txt`` is the same)."""
    if source is None:
        return None
    if isinstance(source, (str, os.PathLike)):
        return os.path.abspath(os.fspath(source))
    if isinstance(source, (list, tuple)):
        return [describe_source(item) for item in source]
    return repr(source)


def describe_weights(weights):
    """Initial weights as recorded: a registered tag as it is, a file's absolute path."""
    if weights is None:
        return None
    weights = os.fspath(weights)
    return weights if weights in list_weights() else describe_source(weights)


def run_record(builder, data, inputs, sampling, recipe, *, keep_checkpoints=DEFAULT_KEEP_CHECKPOINTS):
    """What defines a run (JSON-able): two commands with equal records train the same run.

    ``data``: the ``TrainingData`` (its sources); ``inputs``: what opening it found (``num_videos``,
    ``num_classes``, ``class_names``); ``recipe``: the ``Recipe`` (all but ``epochs`` and
    ``jit_compile``; ``init_weights`` a tag or an absolute path, ``freeze`` the frozen parts). The
    number of epochs, the strategy, the data options, logging and TensorBoard may change from one
    command to the next, and so may ``keep_checkpoints`` (recorded; ``CHANGEABLE_SETTINGS``).
    """
    record = {
        "builder": builder,
        "train_data": describe_source(data.train),
        "train_videos": int(inputs.num_videos),
        "val_data": describe_source(data.val),
        "sampling": sampling.to_dict(),
        "batch_size": int(recipe.batch_size),
        "num_classes": int(inputs.num_classes),
        "class_names": list(inputs.class_names) if inputs.class_names else None,
        "lr": float(recipe.lr),
        "weight_decay": float(recipe.weight_decay),
        "decay_epochs": [int(epoch) for epoch in recipe.decay_epochs],
        "mixed_precision": bool(recipe.mixed_precision),
        "init_weights": describe_weights(recipe.init_weights),
        "freeze": list(recipe.freeze),
        "keep_checkpoints": keep_checkpoints,
    }
    return json.loads(json.dumps(record))  # as run.json reads back (tuples become lists), so records compare


def _show(value, limit=80):
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def record_differences(recorded, wanted):
    """``["batch_size: 8 recorded, 4 now", …]``, one per differing setting (sampling per field); a
    setting missing from either compares as its ``RECORD_DEFAULTS`` value."""
    differences = []
    for key in sorted((set(recorded) | set(wanted)) - set(CHANGEABLE_SETTINGS)):
        old, new = recorded.get(key, RECORD_DEFAULTS.get(key)), wanted.get(key, RECORD_DEFAULTS.get(key))
        if key == "sampling" and isinstance(old, dict) and isinstance(new, dict):
            # a field added to VideoSampling after the run was recorded held its default there
            defaults = json.loads(json.dumps(DEFAULT_SAMPLING.to_dict()))
            old, new = {**defaults, **old}, {**defaults, **new}
            differences += [f"sampling.{line}" for line in record_differences(old, new)]
        elif old != new:
            differences.append(f"{key}: {_show(old)} recorded, {_show(new)} now")
    return differences


def checkpoints(folder):
    """``[(epoch, path)]`` of the folder's ``epoch-NNN.weights.h5``, newest first."""
    if not os.path.isdir(folder):
        return []
    found = [(int(match.group(1)), os.path.join(folder, name))
             for name in os.listdir(folder) if (match := CHECKPOINT_PATTERN.match(name))]
    return sorted(found, reverse=True)


def prune_checkpoints(folder, keep):
    """Deletes all but the newest ``keep`` (≥ 1) ``epoch-NNN.weights.h5`` of ``folder``, oldest first,
    so the newest (the resume point) is never among them and a kill part-way leaves more, never fewer.
    Returns the deleted paths."""
    deleted = []
    for _, path in reversed(checkpoints(folder)[keep:]):
        try:
            os.remove(path)
        except FileNotFoundError:
            continue
        deleted.append(path)
    return deleted


def _read_record(path):
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError) as error:
        raise RunFolderError(f"{path} cannot be read ({error}); use another --output, or --overwrite to delete "
                             "the run in that folder") from None
    if not isinstance(record, dict):
        raise RunFolderError(f"{path}: expected a JSON object, got {type(record).__name__}")
    return record


def clear_run(folder):
    """Deletes what a run wrote into ``folder`` (``RUN_FILES``, checkpoints, ``RUN_FOLDERS``,
    temporary files); other files stay. Returns the number of paths removed."""
    paths = [os.path.join(folder, name) for name in RUN_FILES] + [path for _, path in checkpoints(folder)]
    removed = 0
    for path in paths:
        if os.path.isfile(path):
            os.remove(path)
            removed += 1
    for name in RUN_FOLDERS:
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
            removed += 1
    return removed + len(remove_temporaries(folder))


def claim_run_folder(folder, record, *, overwrite=False, write=True):
    """Makes ``folder`` the folder of the run ``record`` before anything else is written to it.

    A folder with no run becomes this run's (``run.json`` is written when ``write``; non-chief
    workers only check). A folder whose ``run.json`` equals ``record`` is this run: resumed. One with
    another run, or with checkpoints but no ``run.json`` (an earlier keras_v4d), raises
    ``RunFolderError`` naming every difference, unless ``overwrite``, which deletes that run's files
    first. Returns ``"new"``, ``"resumed"`` or ``"overwritten"``.
    """
    path = os.path.join(folder, RUN_FILE)
    state, changed = "new", False
    if os.path.isfile(path):
        recorded = None if overwrite else _read_record(path)
        differences = [] if recorded is None else record_differences(recorded, record)
        if differences:
            raise RunFolderError(f"{folder} holds another run ({RUN_FILE}); its settings differ from this command's: "
                                 + "; ".join(differences) + ". Use another --output, or --overwrite to delete "
                                 "that run and start this one there")
        state = "resumed" if recorded is not None else "overwritten"
        changed = state == "resumed" and any(recorded.get(key) != record.get(key) for key in CHANGEABLE_SETTINGS)
    elif checkpoints(folder) or os.path.exists(os.path.join(folder, LAST_MODEL_FILE)):
        if not overwrite:
            raise RunFolderError(f"{folder} holds checkpoints of a run without {RUN_FILE} (written by an earlier "
                                 "keras_v4d), so this command cannot tell whether it is the same run. Use another "
                                 "--output, or --overwrite to delete that run and start this one there")
        state = "overwritten"
    if state == "overwritten":
        removed = clear_run(folder)
        print(f"--overwrite: deleted the earlier run in {folder} ({removed} files and folders)", flush=True)
    if write:
        os.makedirs(folder, exist_ok=True)
        if state != "resumed" or changed:
            with open_atomically(path, "w", encoding="utf-8") as handle:
                json.dump(record, handle, indent=2)
        remove_temporaries(folder)  # left by a writer killed mid-save
    return state


def check_epochs(folder, epochs, completed, checkpoint):
    """``RunFolderError`` when ``epochs`` is below the ``completed`` epochs of the run in ``folder``
    (its newest checkpoint ``checkpoint``)."""
    if completed > epochs:
        raise RunFolderError(f"epochs={epochs} is below the {completed} epochs the run in {folder} has completed "
                             f"({checkpoint}); give epochs >= {completed} to continue it")


@dataclasses.dataclass(frozen=True)
class RunFolder:
    """The folder of a run as one process of it sees it.

    Attributes:
        path: the run's folder (the chief writes there).
        write_dir: where this process writes: ``path``, or ``path/workers/<task>`` for another worker.
        is_chief: whether this process writes the run's files.
        state: ``"new"``, ``"resumed"`` or ``"overwritten"`` (``claim_run_folder``).
    """

    path: str
    write_dir: str
    is_chief: bool
    state: str


def open_run_folder(folder, record, epochs, *, overwrite=False, chief=True, task=None):
    """Checks and claims ``folder`` for the run ``record`` (``claim_run_folder``) before anything is
    written, refusing ``epochs`` below what its checkpoints have done; returns its ``RunFolder``.
    Every worker checks the folder; only the chief (``chief``) writes there, a worker named ``task``
    under ``workers/<task>``."""
    newest = checkpoints(folder)
    if newest and not overwrite:
        check_epochs(folder, epochs, *newest[0])
    state = claim_run_folder(folder, record, overwrite=overwrite and chief, write=chief)
    write_dir = folder if chief else os.path.join(folder, WORKERS_FOLDER, task)
    os.makedirs(write_dir, exist_ok=True)
    return RunFolder(folder, write_dir, chief, state)


def restore_newest_checkpoint(model, folder, report=print):
    """Loads the newest readable ``epoch-NNN.weights.h5`` of ``folder`` into ``model`` (weights and
    optimizer state; ``model`` compiled). A checkpoint that cannot be read (torn, truncated, another
    architecture) is reported by name and the one before it is tried.

    Returns ``(epoch, path)``, ``(0, None)`` when the folder has no checkpoint. Raises
    ``RunFolderError`` when there are checkpoints but none can be read: a run never starts again
    from scratch on its own.
    """
    found = checkpoints(folder)
    if not found:
        return 0, None
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)  # the optimizer's variables must exist to be restored
    failures = []
    for epoch, path in found:
        try:
            model.load_weights(path)
        except (OSError, ValueError, KeyError) as error:
            reason = " ".join(str(error).split())[:300]
            failures.append(f"{path} ({type(error).__name__}: {reason})")
            report(f"checkpoint {path} cannot be read ({type(error).__name__}: {reason}); trying the one before it",
                   flush=True)
            continue
        return epoch, path
    raise RunFolderError(f"none of the {len(found)} checkpoint(s) in {folder} can be read: " + "; ".join(failures)
                         + ". Use --overwrite (or another --output) to start the run again")


def _rewrite_csv(path, keep):
    if not os.path.isfile(path):
        return
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        rows = [row for row in reader if len(row) == len(header or ()) and keep(dict(zip(header, row)))]
    if header is None:
        return
    with open_atomically(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _epoch_at_most(value, limit):
    try:
        return int(value) <= limit
    except ValueError:
        return False


def trim_logs(folder, completed):
    """Keeps the rows of ``history.csv`` (Keras' 0-based ``epoch``) and ``skipped.csv`` (1-based) of
    the ``completed`` epochs only: an epoch that ran past its checkpoint, or a torn last row, is
    dropped, so a resumed run has one row per epoch."""
    _rewrite_csv(os.path.join(folder, HISTORY_FILE), lambda row: _epoch_at_most(row.get("epoch"), completed - 1))
    _rewrite_csv(os.path.join(folder, SKIPPED_FILE), lambda row: _epoch_at_most(row.get("epoch"), completed))
