"""Training a model of the zoo on a video dataset with the paper's recipe (V4D §4.2).

``train("V4DResNet18", "train.txt", "runs/v4d", recipe=Recipe(epochs=100))`` checkpoints every epoch
under ``runs/v4d`` and resumes from the last completed epoch when called again; ``settings.json``
beside the checkpoints records the ``VideoSampling`` and the class names that ``predict``,
``evaluate`` and ``export`` then take as their defaults. The command-line tool is ``keras-v4d train``.

A run is built from records — the ``TrainingData``, the ``RunOutput``, the ``Recipe``, the
``Distribution`` — and runs in steps, each a function here: ``check_run``, ``Distribution.start``,
``set_precision_policy``, ``open_training_data``, ``open_run_folder`` (with ``run_record``),
``build_model`` (with ``start_from_weights``), ``resume_point`` and ``fit_run``.

The paper's staged recipe (V4D §4.3) is one run per stage: the 3D backbone (I3D-S), then V4D with
``Recipe(init_weights=<its weights>, freeze=("blocks4d",))`` (4D blocks at the identity, fixed),
then V4D with every part trainable from the second stage's weights.

Start-up does not depend on the dataset's size: the steps of an epoch come from the source's size
(annotation lines, records counted from the shards' index), never from decoding it. Damaged videos
do not stop a run: they are skipped (or, decoded only partly, repaired) by the input pipeline,
counted per epoch in the log, ``history.csv`` and TensorBoard and listed in ``skipped.csv``; an
epoch with skipped videos ends early (the log says so) rather than repeating data. With
``TrainingData(service=...)`` the training videos are decoded on other hosts
(``keras_v4d.data.service``); what a stopped worker lost is counted per epoch (``lost``).
"""

import dataclasses
import os
import sys
import warnings

import tensorflow as tf

from keras_v4d._compat import prepare_fit
from keras_v4d.data import BadVideoError, bad_video_message
from keras_v4d.data.service import DataServiceError
from keras_v4d.models import BUILDERS, freeze, load_pretrained_weights
from keras_v4d.records.atomic import NotWrittenError, write_atomically, write_failure
from keras_v4d.records.folder_lock import folder_lock
from keras_v4d.records.presets import resolve_weights
from keras_v4d.records.run_files import (
    DEFAULT_KEEP_CHECKPOINTS,
    LAST_MODEL_FILE,
    SKIPPED_FILE,
    WORKERS_FOLDER,
    write_settings,
)
from keras_v4d.records.sampling import DEFAULT_SAMPLING
from keras_v4d.training.callbacks import RunCheckpoints, TrainingDiverged, skip_counts, training_callbacks
from keras_v4d.training.data import TrainingData, open_training_data
from keras_v4d.training.distribution import Distribution, chief_and_task, describe_devices
from keras_v4d.training.recipe import Recipe, compile_for_training, set_precision_policy
from keras_v4d.training.run_folder import (
    check_epochs,
    checkpoints,
    open_run_folder,
    restore_newest_checkpoint,
    run_record,
    trim_logs,
)

VERBOSE = ("auto", 0, 1, 2)


@dataclasses.dataclass(frozen=True)
class RunOutput:
    """Where a run writes and what it shows.

    Attributes:
        folder: the run's folder: ``epoch-NNN.weights.h5``, ``last.keras``, ``history.csv``,
            ``skipped.csv``, ``run.json``, ``settings.json``.
        overwrite: delete the run already in ``folder`` (its files only) and start this one there.
        tensorboard: write TensorBoard logs under ``folder/tensorboard`` (loss, top-1, top-5,
            mean-class accuracy, learning rate, skipped/repaired videos per epoch).
        verbose: ``"auto"``: a progress bar per epoch when stdout is a terminal (1), one line per
            epoch otherwise (2), as in CI logs; or Keras' 0, 1, 2.
        keep_checkpoints: the newest epoch checkpoints kept (older ones are deleted once a newer
            one is complete; the resume point never is); None keeps every one. A command may change
            it for a run (``run.json`` records the latest).
        best_metric: with validation data, the epoch checkpoint with the best value of this metric
            (highest; lowest for a loss) is also kept as ``best.weights.h5`` (``best.json`` names it).
    """

    folder: str
    overwrite: bool = False
    tensorboard: bool = True
    verbose: int | str = "auto"
    keep_checkpoints: int | None = DEFAULT_KEEP_CHECKPOINTS
    best_metric: str = "val_top1"

    def __post_init__(self):
        if not self.folder:
            raise ValueError("RunOutput: `folder` (the run's output folder) is required")
        object.__setattr__(self, "folder", os.fspath(self.folder))
        if self.verbose not in VERBOSE or isinstance(self.verbose, bool):
            raise ValueError(f"RunOutput: `verbose` must be one of {VERBOSE}, got {self.verbose!r}")
        if self.keep_checkpoints is not None and (isinstance(self.keep_checkpoints, bool) or not isinstance(
                self.keep_checkpoints, int) or self.keep_checkpoints < 1):
            raise ValueError("RunOutput: `keep_checkpoints` must be a whole number ≥ 1 (the resume point is always "
                             f"kept) or None (keep every epoch's), got {self.keep_checkpoints!r}")
        if not isinstance(self.best_metric, str) or not self.best_metric.startswith("val_"):
            raise ValueError("RunOutput: `best_metric` must name a validation metric (val_top1, val_top5, "
                             f"val_mean_class_accuracy, val_loss), got {self.best_metric!r}")

    def fit_verbosity(self):
        """Keras' ``verbose`` for ``fit``: ``"auto"`` resolved against this process's stdout."""
        if self.verbose == "auto":
            return 1 if sys.stdout.isatty() else 2
        return self.verbose


def check_run(builder, data, distribution):
    """``ValueError`` for a run whose records do not go together, before anything runs."""
    if builder not in BUILDERS:
        raise ValueError(f"the builder must be one of {sorted(BUILDERS)}, got {builder!r}")
    if data.service and distribution.strategy == "multiworker":
        raise ValueError("data_service: each training process would read every video of an epoch; use it with "
                         "strategy 'default' or 'mirrored'")


def start_from_weights(model, init_weights, num_classes, report=print):
    """Loads ``init_weights`` (a ``.weights.h5`` file or a weights tag) into the new run's ``model``
    with ``load_pretrained_weights``: a classifier of other classes than the weights' starts new, 4D
    blocks the weights lack start at the identity. Reports the ``WeightsReport``'s lines and returns
    it; a ``ValueError`` ``"init_weights: …"`` (naming the layer at fault) for weights that do not fit."""
    try:
        path, classes, _ = resolve_weights(init_weights)
        weights_report = load_pretrained_weights(model, path, new_classifier=classes != num_classes)
    except (OSError, ValueError) as error:
        raise ValueError(f"init_weights: {error}") from None
    for line in weights_report.lines():
        report(f"init_weights: {line}", flush=True)
    return weights_report


def build_model(builder, inputs, sampling, recipe, folder, strategy):
    """The compiled model of the run under ``strategy``, ``recipe.freeze`` frozen, restored from the
    folder's newest readable checkpoint (or, new, started from ``recipe.init_weights``); returns
    ``(model, completed epochs, checkpoint restored or None)``."""
    with strategy.scope():
        model = BUILDERS[builder](classes=inputs.num_classes,
                                  input_shape=(None, sampling.frames_per_unit, None, None, 3))
        if recipe.init_weights and not checkpoints(folder.path):
            start_from_weights(model, recipe.init_weights, inputs.num_classes)
        if recipe.freeze:  # before compiling: Keras reads `trainable` there
            frozen = freeze(model, *recipe.freeze)
            print(f"freeze: {', '.join(recipe.freeze)} ({len(frozen)} layers kept fixed)", flush=True)
        compile_for_training(model, inputs.steps_per_epoch, jit_compile=recipe.jit_compile, base_lr=recipe.lr,
                             weight_decay=recipe.weight_decay, decay_epochs=list(recipe.decay_epochs))
        # A worker whose file system is not the chief's resumes from its own copies.
        completed, restored = restore_newest_checkpoint(model, folder.path if checkpoints(folder.path)
                                                        else folder.write_dir)
    return model, completed, restored


def resume_point(model, folder, epochs, completed, restored):
    """Trims the logs to the ``completed`` epochs and says where the run starts; returns ``False``
    when the run has done its ``epochs`` already (``last.keras`` brought up to date), ``True`` when
    there is training to do."""
    check_epochs(folder.path, epochs, completed, restored)
    trim_logs(folder.write_dir, completed)
    if completed == epochs:
        last = os.path.join(folder.path, LAST_MODEL_FILE)
        if folder.is_chief and (not os.path.isfile(last) or os.path.getmtime(last) < os.path.getmtime(restored)):
            write_atomically(last, model.save)  # a kill between the two saves of the last epoch
        print(f"{folder.path}: the run has completed its {epochs} epochs ({restored}); nothing to do — a larger "
              "epochs continues it", flush=True)
        return False
    if restored:
        print(f"{folder.path}: resuming the run after epoch {completed} ({restored}), up to epoch {epochs}",
              flush=True)
    else:
        why = "no epoch of the run recorded there had finished" if folder.state == "resumed" else "a new run"
        print(f"{folder.path}: starting at epoch 1 of {epochs} ({why})", flush=True)
    return True


def _fit_error(error, reader):
    """The error a failed ``fit`` is reported as: ``BadVideoError`` (strict data), ``DataServiceError``,
    or ``error`` itself."""
    message = bad_video_message(error)
    if message is not None:  # strict mode: the pipeline's BadVideoError, wrapped by TensorFlow
        return BadVideoError(message)
    if reader is not None and "DataServiceError: " in str(error):
        return DataServiceError(str(error).split("DataServiceError: ")[-1].split("\n")[0].strip())
    return error


def _not_written(error, folder, resume_point):
    """A ``NotWrittenError`` for a write that failed during ``fit``: what, why, and what the run resumes from."""
    if not isinstance(error, NotWrittenError):
        error = NotWrittenError(getattr(error, "filename", None) or f"a file in {folder}", write_failure(error))
    resume = (f"the run can resume from {resume_point} (the same command, once the cause is fixed)"
              if resume_point else "no epoch had finished, so the run starts again from its first epoch")
    return NotWrittenError(error.path, f"{error.reason}; {resume}")


def _check_finite(checkpoints_callback, restored):
    if checkpoints_callback.diverged:
        kept = checkpoints_callback.last_saved or restored
        resume = (f"the last finite checkpoint, {kept}, is kept as the resume point (the same command resumes "
                  "from it)" if kept else "no epoch had finished, so there is no checkpoint to resume from")
        raise TrainingDiverged(f"{checkpoints_callback.diverged}: training stopped; {resume}. If it diverges "
                               "again, lower the learning rate (in a new output folder, or with overwrite)")


def fit_run(model, inputs, folder, output, epochs, start, *, callbacks=(), restored=None):
    """Runs ``fit`` from epoch ``start`` up to ``epochs`` with the run's callbacks and returns the
    ``History`` (the caller closes ``inputs.reader``). Raises ``BadVideoError``, ``DataServiceError``
    or ``TrainingDiverged`` (see ``train``)."""
    steps = inputs.steps_per_epoch
    print(f"{inputs.num_videos} training videos, {steps} steps per epoch of {inputs.batch_size}", flush=True)
    reader = inputs.reader
    run_callbacks = training_callbacks(folder.write_dir, steps_per_epoch=steps, skip_log=inputs.info.skip_log,
                                       val_skip_log=inputs.val_info.skip_log if inputs.val_info else None,
                                       tensorboard=output.tensorboard,
                                       lost_videos=(lambda: reader.lost) if reader else None,
                                       keep_checkpoints=output.keep_checkpoints, best_metric=output.best_metric)
    checkpoints_callback = next(c for c in run_callbacks if isinstance(c, RunCheckpoints))
    # The epoch is the dataset's end (no steps_per_epoch): videos skipped on the way shorten it.
    try:
        with warnings.catch_warnings():
            # Keras says this at the end of every first epoch of a dataset of unknown length, which is
            # how the epoch ends here; DataReport says when an epoch really ended early.
            warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
            history = model.fit(inputs.train, validation_data=inputs.val, epochs=epochs, initial_epoch=start,
                                callbacks=run_callbacks + list(callbacks), verbose=output.fit_verbosity(),
                                shuffle=False)  # the pipeline shuffles
    except tf.errors.OpError as error:
        translated = _fit_error(error, reader)
        if translated is error:
            raise
        raise translated from None
    except OSError as error:  # a checkpoint, a log or TensorBoard's events could not be written
        raise _not_written(error, folder.write_dir, checkpoints_callback.last_saved or restored) from None
    _check_finite(checkpoints_callback, restored)
    _print_skip_summary(inputs, folder.path)
    return history


def _print_skip_summary(inputs, output):
    parts = []
    for name, info in (("training", inputs.info), ("validation", inputs.val_info)):
        if info is not None and info.skip_log is not None:
            skipped, repaired = skip_counts(info.skip_log)
            if skipped or repaired:
                parts.append(f"{name}: {skipped} skipped, {repaired} repaired")
    if parts:
        print(f"data over this run ({'; '.join(parts)}; a video counts once per epoch it was read): "
              f"{os.path.join(output, SKIPPED_FILE)}", flush=True)


def train(builder, data, output, *, sampling=None, recipe=None, distribution=None, callbacks=None):
    """Trains a model of ``builder`` on ``data`` into ``output`` and returns the Keras ``History``
    (``None`` when the run in ``output`` has already completed ``recipe.epochs``).

    One run per folder: the run's settings are recorded in ``run.json``; called again with the
    same settings, ``train`` continues the run from its newest readable checkpoint (optimizer state,
    schedule, epoch counter, one ``history.csv`` row per epoch) up to ``recipe.epochs`` in total;
    with as many epochs as are done it does nothing and says so; below it, it is an error. Other
    settings are refused before anything is written, naming each difference.

    Args:
        builder: a builder name (``keras_v4d.models.BUILDERS``), e.g. ``"V4DResNet18"``.
        data: a ``TrainingData``, or a training source alone (``TrainingData(source)``).
        output: a ``RunOutput``, or the run's folder alone (``RunOutput(folder)``).
        sampling: the ``VideoSampling`` (U, T, τ, crop, short side, crop area range; its test
            protocol is saved for ``evaluate``/``predict``); default ``VideoSampling()``, the paper's.
        recipe: the ``Recipe`` (epochs, batch, optimizer, precision, initial weights, frozen parts);
            default the paper's.
        distribution: the ``Distribution`` (strategy, low-memory allocator); default one device.
        callbacks: more Keras callbacks for ``fit``.
    Raises:
        ValueError naming the argument or file at fault (``RunFolderError`` for a folder holding another
        run or only unreadable checkpoints); with ``options.strict``, ``BadVideoError`` naming the first
        video that cannot be read; ``TrainingDiverged`` when the loss or a weight became NaN or infinite
        (naming the epoch and step; the last finite checkpoint is kept as the resume point);
        ``DataServiceError`` when the tf.data service cannot deliver (naming its address);
        ``FolderBusyError`` (at once, before anything is written) while another process trains into
        ``output``; ``NotWrittenError`` naming a checkpoint or log that could not be written, why, and
        the checkpoint the run resumes from.
    """
    data = data if isinstance(data, TrainingData) else TrainingData(data)
    output = output if isinstance(output, RunOutput) else RunOutput(output)
    sampling, recipe = sampling or DEFAULT_SAMPLING, recipe or Recipe()
    distribution = distribution or Distribution()
    check_run(builder, data, distribution)
    strategy = distribution.start()  # before any other TensorFlow op runs
    is_chief, task = chief_and_task(strategy)
    print(f"device: {describe_devices(strategy)}", flush=True)
    set_precision_policy(recipe.mixed_precision)
    inputs = open_training_data(data, sampling, recipe.batch_size)  # reads the sources' lists, writes nothing
    try:
        # One process per folder: a worker that is not the chief writes (and locks) its own.
        with folder_lock(output.folder if is_chief else os.path.join(output.folder, WORKERS_FOLDER, task), "train"):
            record = run_record(builder, data, inputs, sampling, recipe, keep_checkpoints=output.keep_checkpoints)
            folder = open_run_folder(output.folder, record, recipe.epochs, overwrite=output.overwrite,
                                     chief=is_chief, task=task)
            if is_chief:
                write_settings(folder.path, sampling, inputs.class_names)
            model, completed, restored = build_model(builder, inputs, sampling, recipe, folder, strategy)
            if not resume_point(model, folder, recipe.epochs, completed, restored):
                return None
            prepare_fit(model, inputs.train, strategy)
            return fit_run(model, inputs, folder, output, recipe.epochs, completed, callbacks=callbacks or (),
                           restored=restored)
    finally:
        if inputs.reader is not None:  # an epoch the run left unfinished lets go of its tf.data service client
            inputs.reader.close()
