"""Training a model of the zoo on a video dataset with the paper's recipe (V4D §4.2).

``train("V4DResNet18", "train.txt", "runs/v4d", epochs=100)`` checkpoints every epoch under
``output`` and resumes from the last completed epoch when called again; ``settings.json`` beside
the checkpoints records the ``VideoSampling`` and the class names that ``predict``, ``evaluate``
and ``export`` then take as their defaults. The command-line tool is ``keras-v4d train``.

Start-up does not depend on the dataset's size: the steps of an epoch come from the source's size
(annotation lines, records counted from the shards' index), never from decoding it. Damaged videos
do not stop a run: they are skipped (or, decoded only partly, repaired) by the input pipeline,
counted per epoch in the log, ``history.csv`` and TensorBoard and listed in ``skipped.csv``; an
epoch with skipped videos ends early (the log says so) rather than repeating data. With
``data_service`` the training videos are decoded on other hosts (``keras_v4d.data.service``); what
a stopped worker lost is counted per epoch (``lost``).
"""

import os
import sys
import warnings

import keras
import tensorflow as tf

from keras_v4d._compat import prepare_fit
from keras_v4d.data import (
    MAX_FRAME_PIXELS,
    BadVideoError,
    TFRecordFiles,
    bad_video_message,
    count_tfrecords,
    resolve_source,
    single_view,
    video_dataset,
)
from keras_v4d.data.service import DataServiceError, service_video_dataset
from keras_v4d.models import BUILDERS
from keras_v4d.records.atomic import open_atomically, write_atomically
from keras_v4d.records.run_files import write_settings
from keras_v4d.records.sampling import DEFAULT_SAMPLING
from keras_v4d.records.weights_file import load_model_weights
from keras_v4d.training.callbacks import RunCheckpoints, TrainingDiverged, skip_counts, training_callbacks
from keras_v4d.training.distribution import STRATEGIES, make_strategy, use_low_memory_allocator
from keras_v4d.training.recipe import PAPER_DECAY_EPOCHS, compile_for_training
from keras_v4d.training.run_folder import (
    RunFolderError,
    checkpoints,
    claim_run_folder,
    restore_newest_checkpoint,
    run_record,
    trim_logs,
)


def source_size(videos, source):
    """Number of videos of a training ``source`` without decoding any: the ``VideoDataset``'s
    ``num_videos`` (list entries, or TFRecord records counted from the shards' framing); when that is
    unknown because a shard cannot be read, the other shards' records (the unreadable one counts 0)."""
    if videos.num_videos is not None:
        return int(videos.num_videos)

    resolved = resolve_source(source)
    if isinstance(resolved, TFRecordFiles):
        return sum(count_tfrecords([path]) or 0 for path in resolved.files)
    return len(resolved)


def _chief_and_task(distribution):
    """``(is_chief, "worker-1")`` of this process in a multi-worker cluster; ``(True, None)`` otherwise."""
    resolver = getattr(distribution, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if resolver is None or task_type is None:
        return True, None
    jobs = resolver.cluster_spec().as_dict()
    chief = task_type == "chief" or (task_type == "worker" and resolver.task_id == 0 and "chief" not in jobs)
    return chief, f"{task_type}-{resolver.task_id}"


def train(builder="V4DResNet18", train_data=None, output=None, *, sampling=None, val_data=None, num_classes=None,
          epochs=100, batch_size=8, lr=0.01, weight_decay=1e-5, decay_epochs=PAPER_DECAY_EPOCHS, strategy="default",
          mixed_precision=False, low_memory=False, init_weights=None, verbose="auto", tensorboard=True, strict=False,
          overwrite=False, max_frame_pixels=MAX_FRAME_PIXELS, data_service=None, callbacks=None):
    """Trains a model of ``builder`` on ``train_data`` and returns the Keras ``History`` (``None`` when
    the run in ``output`` has already completed ``epochs``).

    One run per folder: the run's settings are recorded in ``output/run.json``; called again with the
    same settings, ``train`` continues the run from its newest readable checkpoint (optimizer state,
    schedule, epoch counter, one ``history.csv`` row per epoch) up to ``epochs`` in total; with
    ``epochs`` equal to what is done it does nothing and says so; below it, it is an error. Other
    settings are refused before anything is written, naming each difference.

    Args:
        builder: a builder name (``keras_v4d.models.BUILDERS``), e.g. ``"V4DResNet18"``.
        train_data, val_data: sources for ``video_dataset`` (annotation list, rawframe list, class
            folders, TFRecords); validation uses the centre crop.
        output: folder for ``epoch-NNN.weights.h5``, ``last.keras``, ``history.csv``, ``settings.json``.
        num_classes: default: the number of the training source's class names.
        sampling: the ``VideoSampling`` (U, T, τ, crop, short side; its test protocol is saved for
            ``evaluate``/``predict``); default ``VideoSampling()``, the paper's.
        lr, weight_decay, decay_epochs: the optimizer (SGD with momentum 0.9 and L2 weight decay, as
            PyTorch's ``SGD(weight_decay=...)``; lr ÷ 10 at ``decay_epochs``).
        strategy: ``"default"``, ``"mirrored"`` (all local GPUs) or ``"multiworker"`` (TF_CONFIG hosts).
        mixed_precision: ``mixed_float16`` on a GPU; refused on CPU, where it is slower (benchmarks/README.md).
        low_memory: ``use_low_memory_allocator()`` (CPU, glibc): a lower peak of resident memory for a
            slower step; call ``train`` before anything else in the process has run TensorFlow.
        init_weights: optional ``.weights.h5`` to start from (e.g. a 3D backbone).
        verbose: ``"auto"``: a progress bar per epoch when stdout is a terminal (1), one line per
            epoch otherwise (2), as in CI logs; or Keras' 0, 1, 2.
        tensorboard: write TensorBoard logs under ``output/tensorboard`` (loss, top-1, top-5,
            mean-class accuracy, learning rate, skipped/repaired videos per epoch).
        strict: stop at the first bad training sample with an error naming it, instead of skipping it.
        overwrite: delete the run already in ``output`` (its files only) and start this one there.
        max_frame_pixels: a video whose frames have more pixels (from its header) is skipped undecoded
            like any bad video; None: no limit.
        data_service: ``"grpc://HOST:PORT"`` of a tf.data service dispatcher whose workers serve
            ``train_data`` (``keras-v4d data-service``): the training videos are decoded there, each once
            per epoch; the videos a stopped worker held are lost to that epoch and counted (``lost``).
            Validation is read here.
        callbacks: more Keras callbacks for ``fit``.
    Raises:
        ValueError naming the argument or file at fault (``RunFolderError`` for a folder holding another
        run or only unreadable checkpoints); with ``strict``, ``BadVideoError`` naming the first video
        that cannot be read; ``TrainingDiverged`` when the loss or a weight became NaN or infinite
        (naming the epoch and step; the last finite checkpoint is kept as the resume point);
        ``DataServiceError`` when the tf.data service cannot deliver (naming its address).
    """
    if not train_data or not output:
        raise ValueError("`train_data` and `output` are required")
    if int(epochs) < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if builder not in BUILDERS:
        raise ValueError(f"the builder must be one of {sorted(BUILDERS)}, got {builder!r}")
    sampling = sampling or DEFAULT_SAMPLING
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if data_service and strategy == "multiworker":
        raise ValueError("data_service: each training process would read every video of an epoch; use it with "
                         "strategy 'default' or 'mirrored'")
    # MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs.
    distribution = make_strategy(strategy)
    if low_memory:
        try:
            use_low_memory_allocator()
        except RuntimeError as error:
            raise ValueError(f"low_memory: {error}") from None
    if mixed_precision:
        if not tf.config.list_physical_devices("GPU"):
            # Measured (benchmarks/training.py --mixed_precision mixed_bfloat16): a V4D-R18 step is
            # slower in mixed_bfloat16 than in float32 on CPU, AVX512-BF16 or not (benchmarks/README.md).
            raise ValueError("mixed_precision: no GPU; on CPU mixed_bfloat16 makes a training step about 1.5× "
                             "slower than float32 (see benchmarks/README.md), so it is refused — "
                             "train in float32 on CPU, or use mixed precision (mixed_float16) on a GPU")
        keras.mixed_precision.set_global_policy("mixed_float16")
    reader = None
    if data_service:
        train_set, reader = service_video_dataset(data_service, train_data, num_classes=num_classes, strict=strict,
                                                  batch_size=batch_size, max_frame_pixels=max_frame_pixels,
                                                  **sampling.training_arguments())
    else:
        train_set = video_dataset(train_data, training=True, num_classes=num_classes, strict=strict,
                                  batch_size=batch_size, max_frame_pixels=max_frame_pixels,
                                  **sampling.training_arguments())
    num_classes = num_classes or len(train_set.class_names or [])
    if not num_classes:
        raise ValueError("num_classes is required when the dataset has no class names")
    if train_set.class_names and len(train_set.class_names) != num_classes:
        raise ValueError(f"{train_data} has {len(train_set.class_names)} classes but num_classes is {num_classes}")
    val_set = val_skip_log = None
    if val_data:  # validation goes on past unreadable videos too (counted as val_skipped)
        # Validation labels are the training classes' (by name, where the source names its classes).
        val_videos = video_dataset(val_data, training=False, num_classes=num_classes, strict=strict,
                                   batch_size=batch_size, num_crops=1, class_names=train_set.class_names,
                                   max_frame_pixels=max_frame_pixels, **sampling.training_arguments())
        val_skip_log, val_set = val_videos.skip_log, single_view(val_videos.dataset)
    num_videos = source_size(train_set, train_data)
    steps_per_epoch = num_videos // batch_size  # from the source's size: nothing is decoded to count
    if steps_per_epoch == 0:
        raise ValueError(f"{train_data}: {num_videos} video(s), fewer than one batch of {batch_size}")
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    is_chief, task = _chief_and_task(distribution)
    record = run_record(builder=builder, train_data=train_data, train_videos=num_videos, val_data=val_data,
                        sampling=sampling, batch_size=batch_size, num_classes=num_classes,
                        class_names=train_set.class_names, lr=lr, weight_decay=weight_decay,
                        decay_epochs=decay_epochs, mixed_precision=mixed_precision, init_weights=init_weights)
    newest = checkpoints(output)
    if newest and epochs < newest[0][0] and not overwrite:
        raise RunFolderError(f"epochs={epochs} is below the {newest[0][0]} epochs the run in {output} has completed "
                             f"({newest[0][1]}); give epochs >= {newest[0][0]} to continue it")
    # Every worker checks the folder; only the chief writes there (the others' copies go to workers/).
    state = claim_run_folder(output, record, overwrite=overwrite and is_chief, write=is_chief)
    write_dir = output if is_chief else os.path.join(output, "workers", task)
    os.makedirs(write_dir, exist_ok=True)
    if is_chief:
        write_settings(output, sampling, train_set.class_names)
        if train_set.class_names:  # also as plain text, one name per line
            with open_atomically(os.path.join(output, "class_names.txt"), "w", encoding="utf-8") as handle:
                handle.write("\n".join(train_set.class_names) + "\n")
    with distribution.scope():
        model = BUILDERS[builder](classes=num_classes, input_shape=(None, sampling.frames_per_unit, None, None, 3))
        if init_weights and not checkpoints(output):
            try:
                load_model_weights(model, init_weights)
            except (OSError, ValueError) as error:
                raise ValueError(f"init_weights: {error}") from None
        compile_for_training(model, steps_per_epoch, base_lr=lr, weight_decay=weight_decay,
                             decay_epochs=[int(e) for e in decay_epochs])
        # A worker whose file system is not the chief's resumes from its own copies.
        completed, restored = restore_newest_checkpoint(model, output if checkpoints(output) else write_dir)
    if completed > epochs:
        raise RunFolderError(f"epochs={epochs} is below the {completed} epochs the run in {output} has completed "
                             f"({restored}); give epochs >= {completed} to continue it")
    trim_logs(write_dir, completed)
    if completed == epochs:
        last = os.path.join(output, "last.keras")
        if is_chief and (not os.path.isfile(last) or os.path.getmtime(last) < os.path.getmtime(restored)):
            write_atomically(last, model.save)  # a kill between the two saves of the last epoch
        print(f"{output}: the run has completed its {epochs} epochs ({restored}); nothing to do — a larger "
              "epochs continues it", flush=True)
        return None
    if restored:
        print(f"{output}: resuming the run after epoch {completed} ({restored}), up to epoch {epochs}", flush=True)
    else:
        why = "no epoch of the run recorded there had finished" if state == "resumed" else "a new run"
        print(f"{output}: starting at epoch 1 of {epochs} ({why})", flush=True)
    prepare_fit(model, train_set.dataset, distribution)
    print(f"{num_videos} training videos, {steps_per_epoch} steps per epoch of {batch_size}", flush=True)
    run_callbacks = training_callbacks(write_dir, steps_per_epoch=steps_per_epoch, skip_log=train_set.skip_log,
                                       val_skip_log=val_skip_log, tensorboard=tensorboard,
                                       lost_videos=(lambda: reader.lost) if reader else None)
    checkpoints_callback = next(c for c in run_callbacks if isinstance(c, RunCheckpoints))
    # The epoch is the dataset's end (no steps_per_epoch): videos skipped on the way shorten it.
    try:
        with warnings.catch_warnings():
            # Keras says this at the end of every first epoch of a dataset of unknown length, which is
            # how the epoch ends here; DataReport says when an epoch really ended early.
            warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
            history = model.fit(train_set.dataset, validation_data=val_set, epochs=epochs, initial_epoch=completed,
                                callbacks=run_callbacks + list(callbacks or []), verbose=verbose,
                                shuffle=False)  # the pipeline shuffles
    except tf.errors.OpError as error:  # strict mode: the pipeline's BadVideoError, wrapped by TensorFlow
        message = bad_video_message(error)
        if message is not None:
            raise BadVideoError(message) from None
        if reader is not None and "DataServiceError: " in str(error):
            raise DataServiceError(str(error).split("DataServiceError: ")[-1].split("\n")[0].strip()) from None
        raise
    finally:
        if reader is not None:  # an epoch the run left unfinished lets go of its tf.data service client
            reader.close()
    if checkpoints_callback.diverged:
        kept = checkpoints_callback.last_saved or restored
        resume = (f"the last finite checkpoint, {kept}, is kept as the resume point (the same command resumes "
                  "from it)" if kept else "no epoch had finished, so there is no checkpoint to resume from")
        raise TrainingDiverged(f"{checkpoints_callback.diverged}: training stopped; {resume}. If it diverges "
                               "again, lower the learning rate (in a new output folder, or with overwrite)")
    _print_skip_summary(train_set.skip_log, val_skip_log, output)
    return history


def _print_skip_summary(skip_log, val_skip_log, output):
    parts = []
    for name, log in (("training", skip_log), ("validation", val_skip_log)):
        if log is not None:
            skipped, repaired = skip_counts(log)
            if skipped or repaired:
                parts.append(f"{name}: {skipped} skipped, {repaired} repaired")
    if parts:
        print(f"data over this run ({'; '.join(parts)}; a video counts once per epoch it was read): "
              f"{os.path.join(output, 'skipped.csv')}", flush=True)
