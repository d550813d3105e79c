"""Training a model of the zoo on a video dataset with the paper's recipe (V4D §4.2).

``train(model_name="V4DResNet18", train_data="train.txt", output="runs/v4d", epochs=100)``
checkpoints every epoch under ``output`` and resumes from the last completed epoch when called
again; ``settings.json`` beside the checkpoints records the sampling (U, T, τ, crop, short side,
class names) that ``predict``, ``evaluate`` and ``export`` then take as their defaults. The
command-line tool is ``python -m keras_v4d.cli.train``.
"""

import os

from keras_v4d.settings import save_settings
from keras_v4d.training import PAPER_DECAY_EPOCHS

STRATEGIES = ("default", "mirrored", "multiworker")


def train(model_name="V4DResNet18", train_data=None, output=None, *, val_data=None, num_classes=None, epochs=100,
          batch_size=8, num_units=4, frames_per_unit=4, stride=8, crop_size=224, short_side=256, lr=0.01,
          weight_decay=1e-5, decay_epochs=PAPER_DECAY_EPOCHS, strategy="default", mixed_precision=False,
          init_weights=None, verbose=2):
    """Trains ``model_name`` on ``train_data`` and returns the Keras ``History``.

    Args:
        model_name: a builder name (``keras_v4d.models.BUILDERS``).
        train_data, val_data: sources for ``video_dataset`` (annotation list, rawframe list, class
            folders, TFRecords); validation uses the centre crop.
        output: folder for ``epoch-NNN.weights.h5``, ``last.keras``, ``history.csv``, ``settings.json``.
        num_classes: default: the number of the training source's class names.
        num_units, frames_per_unit, stride, crop_size, short_side: the sampler (U, T, τ) and augmentation.
        lr, weight_decay, decay_epochs: the optimizer (SGD with momentum 0.9, lr ÷ 10 at ``decay_epochs``).
        strategy: ``"default"``, ``"mirrored"`` (all local GPUs) or ``"multiworker"`` (TF_CONFIG hosts).
        mixed_precision: ``mixed_float16`` on a GPU, ``mixed_bfloat16`` otherwise.
        init_weights: optional ``.weights.h5`` to start from (e.g. a 3D backbone).
    Raises:
        ValueError naming the argument or file at fault.
    """
    import keras
    import tensorflow as tf

    from keras_v4d.data import single_view, video_dataset
    from keras_v4d.models import BUILDERS
    from keras_v4d.training import compile_for_training, make_strategy, prepare_fit, training_callbacks
    from keras_v4d.weights import load_model_weights

    if not train_data or not output:
        raise ValueError("`train_data` and `output` are required")
    if model_name not in BUILDERS:
        raise ValueError(f"model must be one of {sorted(BUILDERS)}, got {model_name!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    # MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs.
    distribution = make_strategy(strategy)
    if mixed_precision:
        keras.mixed_precision.set_global_policy(
            "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16")
    sampling = dict(num_units=num_units, frames_per_unit=frames_per_unit, stride=stride, crop_size=crop_size,
                    short_side=short_side, batch_size=batch_size)
    train_set = video_dataset(train_data, training=True, num_classes=num_classes, **sampling)
    num_classes = num_classes or len(train_set.class_names or [])
    if not num_classes:
        raise ValueError("num_classes is required when the dataset has no class names")
    if train_set.class_names and len(train_set.class_names) != num_classes:
        raise ValueError(f"{train_data} has {len(train_set.class_names)} classes but num_classes is {num_classes}")
    val_set = None
    if val_data:
        val_set = single_view(video_dataset(val_data, training=False, num_classes=num_classes, **sampling))
    steps_per_epoch = sum(1 for _ in train_set.take(100_000))
    if steps_per_epoch == 0:
        raise ValueError(f"{train_data}: fewer usable videos than one batch of {batch_size}")
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
    history = model.fit(train_set, validation_data=val_set, epochs=epochs, callbacks=training_callbacks(output),
                        verbose=verbose)
    if train_set.skip_log.count:
        print(train_set.skip_log.summary())
    return history
