"""Training a model of the zoo on a video dataset with the paper's recipe (V4D §4.2).

``train("V4DResNet18", "train.txt", "runs/v4d", epochs=100)`` checkpoints every epoch under
``output`` and resumes from the last completed epoch when called again; ``settings.json`` beside
the checkpoints records the ``VideoSampling`` and the class names that ``predict``, ``evaluate``
and ``export`` then take as their defaults. The command-line tool is ``keras-v4d train``.

Start-up does not depend on the dataset's size: the steps of an epoch come from the source's size
(annotation lines, records counted from the shards' index), never from decoding it. Damaged videos
do not stop a run: they are skipped (or, decoded only partly, repaired) by the input pipeline,
counted per epoch in the log, ``history.csv`` and TensorBoard and listed in ``skipped.csv``; an
epoch with skipped videos ends early (the log says so) rather than repeating data.
"""

import os
import sys
import warnings

import keras
import tensorflow as tf

from keras_v4d._compat import prepare_fit
from keras_v4d.data import (
    BadVideoError,
    TFRecordFiles,
    bad_video_message,
    count_tfrecords,
    resolve_source,
    single_view,
    video_dataset,
)
from keras_v4d.models import BUILDERS
from keras_v4d.sampling import DEFAULT_SAMPLING, write_settings
from keras_v4d.training.callbacks import skip_counts, training_callbacks
from keras_v4d.training.distribution import STRATEGIES, make_strategy, use_low_memory_allocator
from keras_v4d.training.recipe import PAPER_DECAY_EPOCHS, compile_for_training
from keras_v4d.weights.files import load_model_weights


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


def train(builder="V4DResNet18", train_data=None, output=None, *, sampling=None, val_data=None, num_classes=None,
          epochs=100, batch_size=8, lr=0.01, weight_decay=1e-5, decay_epochs=PAPER_DECAY_EPOCHS, strategy="default",
          mixed_precision=False, low_memory=False, init_weights=None, verbose="auto", tensorboard=True, strict=False,
          callbacks=None):
    """Trains a model of ``builder`` on ``train_data`` and returns the Keras ``History``.

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
        callbacks: more Keras callbacks for ``fit``.
    Raises:
        ValueError naming the argument or file at fault; with ``strict``, ``BadVideoError`` naming the
        first video that cannot be read.
    """
    if not train_data or not output:
        raise ValueError("`train_data` and `output` are required")
    if builder not in BUILDERS:
        raise ValueError(f"the builder must be one of {sorted(BUILDERS)}, got {builder!r}")
    sampling = sampling or DEFAULT_SAMPLING
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
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
    train_set = video_dataset(train_data, training=True, num_classes=num_classes, strict=strict, batch_size=batch_size,
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
                                   **sampling.training_arguments())
        val_skip_log, val_set = val_videos.skip_log, single_view(val_videos.dataset)
    num_videos = source_size(train_set, train_data)
    steps_per_epoch = num_videos // batch_size  # from the source's size: nothing is decoded to count
    if steps_per_epoch == 0:
        raise ValueError(f"{train_data}: {num_videos} video(s), fewer than one batch of {batch_size}")
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    os.makedirs(output, exist_ok=True)
    write_settings(output, sampling, train_set.class_names)
    if train_set.class_names:  # also as plain text, one name per line
        with open(os.path.join(output, "class_names.txt"), "w", encoding="utf-8") as handle:
            handle.write("\n".join(train_set.class_names) + "\n")
    with distribution.scope():
        model = BUILDERS[builder](classes=num_classes, input_shape=(None, sampling.frames_per_unit, None, None, 3))
        if init_weights:
            try:
                load_model_weights(model, init_weights)
            except (OSError, ValueError) as error:
                raise ValueError(f"init_weights: {error}") from None
        compile_for_training(model, steps_per_epoch, base_lr=lr, weight_decay=weight_decay,
                             decay_epochs=[int(e) for e in decay_epochs])
    prepare_fit(model, train_set.dataset, distribution)
    print(f"{num_videos} training videos, {steps_per_epoch} steps per epoch of {batch_size}", flush=True)
    callbacks = training_callbacks(output, steps_per_epoch=steps_per_epoch, skip_log=train_set.skip_log,
                                   val_skip_log=val_skip_log, tensorboard=tensorboard) + list(callbacks or [])
    # The epoch is the dataset's end (no steps_per_epoch): videos skipped on the way shorten it.
    try:
        with warnings.catch_warnings():
            # Keras says this at the end of every first epoch of a dataset of unknown length, which is
            # how the epoch ends here; DataReport says when an epoch really ended early.
            warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
            history = model.fit(train_set.dataset, validation_data=val_set, epochs=epochs, callbacks=callbacks,
                                verbose=verbose, shuffle=False)  # the pipeline shuffles
    except tf.errors.OpError as error:  # strict mode: the pipeline's BadVideoError, wrapped by TensorFlow

        message = bad_video_message(error)
        if message is None:
            raise
        raise BadVideoError(message) from None
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
