"""Training a model of the zoo on a video dataset with the paper's recipe (V4D §4.2).

``train(model_name="V4DResNet18", train_data="train.txt", output="runs/v4d", epochs=100)``
checkpoints every epoch under ``output`` and resumes from the last completed epoch when called
again; ``settings.json`` beside the checkpoints records the sampling (U, T, τ, crop, short side,
class names) that ``predict``, ``evaluate`` and ``export`` then take as their defaults. The
command-line tool is ``python -m keras_v4d.cli.train``.

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
from keras_v4d.data import BadVideoError, TFRecordFiles, count_tfrecords, resolve_source, single_view, video_dataset
from keras_v4d.evaluate import bad_video_message
from keras_v4d.models import BUILDERS
from keras_v4d.models.loading import load_model_weights
from keras_v4d.settings import save_settings
from keras_v4d.training import (
    PAPER_DECAY_EPOCHS,
    compile_for_training,
    make_strategy,
    skip_counts,
    training_callbacks,
    use_low_memory_allocator,
)

STRATEGIES = ("default", "mirrored", "multiworker")


def source_size(dataset, source):
    """Number of videos of a training ``source`` without decoding any: the dataset's ``num_videos``
    (list entries, or TFRecord records counted from the shards' framing); when that is unknown
    because a shard cannot be read, the other shards' records (the unreadable one counts 0)."""
    num_videos = getattr(dataset, "num_videos", None)
    if num_videos is not None:
        return int(num_videos)

    resolved = resolve_source(source)
    if isinstance(resolved, TFRecordFiles):
        return sum(count_tfrecords([path]) or 0 for path in resolved.files)
    return len(resolved)


def train(model_name="V4DResNet18", train_data=None, output=None, *, val_data=None, num_classes=None, epochs=100,
          batch_size=8, num_units=4, frames_per_unit=4, stride=8, crop_size=224, short_side=256, lr=0.01,
          weight_decay=1e-5, decay_epochs=PAPER_DECAY_EPOCHS, strategy="default", mixed_precision=False,
          low_memory=False, init_weights=None, verbose="auto", tensorboard=True, strict=False, callbacks=None):
    """Trains ``model_name`` on ``train_data`` and returns the Keras ``History``.

    Args:
        model_name: a builder name (``keras_v4d.models.BUILDERS``).
        train_data, val_data: sources for ``video_dataset`` (annotation list, rawframe list, class
            folders, TFRecords); validation uses the centre crop.
        output: folder for ``epoch-NNN.weights.h5``, ``last.keras``, ``history.csv``, ``settings.json``.
        num_classes: default: the number of the training source's class names.
        num_units, frames_per_unit, stride, crop_size, short_side: the sampler (U, T, τ) and augmentation.
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
    if model_name not in BUILDERS:
        raise ValueError(f"model must be one of {sorted(BUILDERS)}, got {model_name!r}")
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
            # about 1.5× slower in mixed_bfloat16 than in float32 on this 2-core CPU, AVX512-BF16 or not.
            raise ValueError("mixed_precision: no GPU; on CPU mixed_bfloat16 makes a training step about 1.5× "
                             "slower than float32 (see benchmarks/README.md), so it is refused — "
                             "train in float32 on CPU, or use mixed precision (mixed_float16) on a GPU")
        keras.mixed_precision.set_global_policy("mixed_float16")
    sampling = dict(num_units=num_units, frames_per_unit=frames_per_unit, stride=stride, crop_size=crop_size,
                    short_side=short_side, batch_size=batch_size)
    train_set = video_dataset(train_data, training=True, num_classes=num_classes, strict=strict, **sampling)
    num_classes = num_classes or len(train_set.class_names or [])
    if not num_classes:
        raise ValueError("num_classes is required when the dataset has no class names")
    if train_set.class_names and len(train_set.class_names) != num_classes:
        raise ValueError(f"{train_data} has {len(train_set.class_names)} classes but num_classes is {num_classes}")
    val_set = val_skip_log = None
    if val_data:  # validation goes on past unreadable videos too (counted as val_skipped)
        val_videos = video_dataset(val_data, training=False, num_classes=num_classes, strict=strict, **sampling)
        val_skip_log, val_set = val_videos.skip_log, single_view(val_videos)
    num_videos = source_size(train_set, train_data)
    steps_per_epoch = num_videos // batch_size  # from the source's size: nothing is decoded to count
    if steps_per_epoch == 0:
        raise ValueError(f"{train_data}: {num_videos} video(s), fewer than one batch of {batch_size}")
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    os.makedirs(output, exist_ok=True)
    settings = dict(train_units=num_units, frames_per_unit=frames_per_unit, stride=stride, crop_size=crop_size,
                    short_side=short_side, class_names=list(train_set.class_names or []) or None)
    save_settings(output, settings)
    if train_set.class_names:  # also as plain text, one name per line
        with open(os.path.join(output, "class_names.txt"), "w", encoding="utf-8") as handle:
            handle.write("\n".join(train_set.class_names) + "\n")
    with distribution.scope():
        model = BUILDERS[model_name](classes=num_classes, input_shape=(None, frames_per_unit, None, None, 3))
        if init_weights:
            try:
                load_model_weights(model, init_weights)
            except (OSError, ValueError) as error:
                raise ValueError(f"init_weights: {error}") from None
        compile_for_training(model, steps_per_epoch, base_lr=lr, weight_decay=weight_decay,
                             decay_epochs=[int(e) for e in decay_epochs])
    prepare_fit(model, train_set, distribution)
    print(f"{num_videos} training videos, {steps_per_epoch} steps per epoch of {batch_size}", flush=True)
    callbacks = training_callbacks(output, steps_per_epoch=steps_per_epoch, skip_log=train_set.skip_log,
                                   val_skip_log=val_skip_log, tensorboard=tensorboard) + list(callbacks or [])
    # The epoch is the dataset's end (no steps_per_epoch): videos skipped on the way shorten it.
    try:
        with warnings.catch_warnings():
            # Keras says this at the end of every first epoch of a dataset of unknown length, which is
            # how the epoch ends here; DataReport says when an epoch really ended early.
            warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
            history = model.fit(train_set, validation_data=val_set, epochs=epochs, callbacks=callbacks,
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
