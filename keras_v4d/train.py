"""Train a model of the zoo on a video dataset with the paper's recipe.

    python -m keras_v4d.train --model V4DResNet18 --train train.txt --val val.txt \
        --num_classes 200 --output runs/v4d --epochs 100 --batch_size 8

Checkpoints every epoch under --output; run the same command again after an interruption and
training resumes from the last completed epoch. --strategy mirrored|multiworker distributes it.
"""

import os

from absl import flags

from keras_v4d.cli import CommandError, run

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "V4DResNet18", "Builder name, e.g. V4DResNet18, TSNResNet50.")
flags.DEFINE_string("train", None, "Training source: annotation list, class folders or TFRecords.")
flags.DEFINE_string("val", None, "Optional validation source (centre crop, first view).")
flags.DEFINE_integer("num_classes", None, "Number of classes (default: from the dataset's class names).")
flags.DEFINE_string("output", None, "Folder for checkpoints, last.keras and history.csv.")
flags.DEFINE_integer("epochs", 100, "Epochs in total (counting epochs already completed).")
flags.DEFINE_integer("batch_size", 8, "Global batch size in videos.")
flags.DEFINE_integer("num_units", 4, "Action units U per video.")
flags.DEFINE_integer("frames_per_unit", 4, "Frames T per unit.")
flags.DEFINE_integer("stride", 8, "Frame stride τ inside a unit.")
flags.DEFINE_integer("crop_size", 224, "Training crop size.")
flags.DEFINE_integer("short_side", 256, "Short side before cropping.")
flags.DEFINE_float("lr", 0.01, "Base learning rate.")
flags.DEFINE_float("weight_decay", 1e-5, "Weight decay (not on BN or biases).")
flags.DEFINE_list("decay_epochs", ["35", "60", "80"], "Epochs where the learning rate is divided by 10.")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multiworker"],
                  "default: one device; mirrored: all local GPUs (MirroredStrategy); multiworker: TF_CONFIG hosts.")
flags.DEFINE_bool("mixed_precision", False, "Train with mixed_bfloat16 (CPU) / mixed_float16 (GPU).")
flags.DEFINE_string("init_weights", None, "Optional .weights.h5 to start from (e.g. a 3D backbone).")


def main(argv):
    import keras
    import tensorflow as tf

    from keras_v4d.data import single_view, video_dataset
    from keras_v4d.models import BUILDERS
    from keras_v4d.training import compile_for_training, make_strategy, prepare_fit, training_callbacks
    from keras_v4d.weights import load_model_weights

    if len(argv) > 1:
        raise CommandError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.train or not FLAGS.output:
        raise CommandError("--train and --output are required")
    if FLAGS.model not in BUILDERS:
        raise CommandError(f"--model must be one of {sorted(BUILDERS)}, got {FLAGS.model!r}")
    # MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs.
    strategy = make_strategy(FLAGS.strategy)
    if FLAGS.mixed_precision:
        keras.mixed_precision.set_global_policy(
            "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16")
    sampling = dict(num_units=FLAGS.num_units, frames_per_unit=FLAGS.frames_per_unit, stride=FLAGS.stride,
                    crop_size=FLAGS.crop_size, short_side=FLAGS.short_side, batch_size=FLAGS.batch_size)
    try:
        train_data = video_dataset(FLAGS.train, training=True, num_classes=FLAGS.num_classes, **sampling)
        num_classes = FLAGS.num_classes or len(train_data.class_names or [])
        if not num_classes:
            raise ValueError("--num_classes is required when the dataset has no class names")
        if train_data.class_names and len(train_data.class_names) != num_classes:
            raise ValueError(f"--train {FLAGS.train} has {len(train_data.class_names)} classes but "
                             f"--num_classes is {num_classes}")
        val_data = None
        if FLAGS.val:
            val_data = single_view(video_dataset(FLAGS.val, training=False, num_classes=num_classes,
                                                 **{**sampling, "crop_size": FLAGS.crop_size}))
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from None
    steps_per_epoch = sum(1 for _ in train_data.take(100_000))
    if steps_per_epoch == 0:
        raise CommandError(f"{FLAGS.train}: fewer usable videos than one batch of {FLAGS.batch_size}")
    os.makedirs(FLAGS.output, exist_ok=True)
    if train_data.class_names:  # read by evaluate / predict to name the classes
        with open(os.path.join(FLAGS.output, "class_names.txt"), "w", encoding="utf-8") as handle:
            handle.write("\n".join(train_data.class_names) + "\n")
    with strategy.scope():
        model = BUILDERS[FLAGS.model](classes=num_classes,
                                      input_shape=(None, FLAGS.frames_per_unit, None, None, 3))
        if FLAGS.init_weights:
            try:
                load_model_weights(model, FLAGS.init_weights)
            except (OSError, ValueError) as error:
                raise CommandError(f"--init_weights: {error}") from None
        compile_for_training(model, steps_per_epoch, base_lr=FLAGS.lr, weight_decay=FLAGS.weight_decay,
                             decay_epochs=[int(e) for e in FLAGS.decay_epochs])
    prepare_fit(model, train_data, strategy)
    model.fit(train_data, validation_data=val_data, epochs=FLAGS.epochs,
              callbacks=training_callbacks(FLAGS.output), verbose=2)
    if train_data.skip_log.count:
        print(train_data.skip_log.summary())
    print(f"done: {FLAGS.epochs} epochs; model at {os.path.join(FLAGS.output, 'last.keras')}")
    return 0


if __name__ == "__main__":
    run(main)
