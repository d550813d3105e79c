r"""Train a model of the zoo on a video dataset with the paper's recipe.

    keras-v4d train --model V4DResNet18 --train train.txt --val val.txt \
        --num_classes 200 --output runs/v4d --epochs 100 --batch_size 8

One run per folder: --output records the run's settings (run.json) and its checkpoints. Run the
same command again after an interruption and training resumes from the newest readable checkpoint;
with a larger --epochs a finished run continues; a command with other settings is refused, naming
each difference (--overwrite deletes that run first). A NaN or infinite loss stops the run at once,
naming the epoch and step, with the last finite checkpoint as the resume point (exit code 3).
One process per run folder: while a run trains, another process given the same --output stops at
once naming it (pid, host, start time; exit code 2); a killed run leaves no lock behind.
--strategy mirrored|multiworker distributes it (workers may share one --output: the chief writes
there, the others under --output/workers/). The newest --keep_checkpoints epoch checkpoints are kept
(and, with --val, the best as best.weights.h5). A checkpoint or log that cannot be written (no space,
a file size limit, permission, a read-only file system) stops the run with one line naming it, why,
and the checkpoint the same command resumes from (exit code 4).
The paper's staged recipe (V4D §4.3) is one run per stage, each in its own --output:
    keras-v4d train --model I3DSlowResNet18 ... --output runs/stage1
    keras-v4d train --model V4DResNet18 ... --output runs/stage2 \
        --init_weights runs/stage1/epoch-100.weights.h5 --freeze blocks4d
    keras-v4d train --model V4DResNet18 ... --output runs/stage3 --init_weights runs/stage2/epoch-100.weights.h5
Shows a progress bar per epoch on a terminal (one line per epoch otherwise) and writes TensorBoard
logs under --output/tensorboard (--notensorboard to leave them out). Videos that cannot be read are
skipped and counted per epoch (the log, history.csv, skipped.csv, TensorBoard); --strict stops at
the first one instead. --data_service grpc://HOST:PORT reads the training videos decoded by a
tf.data service cluster (`keras-v4d data-service`), each once per epoch; the videos a stopped worker
held are counted as lost.
"""

import os

from absl import flags

from keras_v4d.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_DIVERGED,
    EXIT_NOT_WRITTEN,
    CommandError,
    define_sampling_flags,
    run,
)
from keras_v4d.models import PARTS
from keras_v4d.records.run_files import DEFAULT_KEEP_CHECKPOINTS
from keras_v4d.training.distribution import STRATEGIES
from keras_v4d.training.recipe import PAPER_DECAY_EPOCHS

FLAGS = flags.FlagValues()
flags.DEFINE_string("model", "V4DResNet18", "Builder name, e.g. V4DResNet18, TSNResNet50.", flag_values=FLAGS)
flags.DEFINE_string("train", None, "Training source: annotation list, rawframe list, class folders or TFRecords.",
                    flag_values=FLAGS)
flags.DEFINE_string("val", None, "Optional validation source (centre crop, first view).", flag_values=FLAGS)
flags.DEFINE_integer("num_classes", None, "Number of classes (default: from the dataset's class names).",
                     flag_values=FLAGS)
flags.DEFINE_string("output", None, "Folder for checkpoints, last.keras, history.csv and settings.json.",
                    flag_values=FLAGS)
flags.DEFINE_integer("epochs", 100, "Epochs in total, counting those the run in --output has completed: a larger "
                     "number continues a finished run; the same number does nothing; a smaller one is refused.",
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 8, "Global batch size in videos.", flag_values=FLAGS)
define_sampling_flags(FLAGS)
flags.DEFINE_float("lr", 0.01, "Base learning rate.", flag_values=FLAGS)
flags.DEFINE_float("weight_decay", 1e-5,
                   "L2 weight decay, added to the gradient as in PyTorch's SGD (not on BN or biases).",
                   flag_values=FLAGS)
flags.DEFINE_list("decay_epochs", [str(e) for e in PAPER_DECAY_EPOCHS],
                  "Epochs where the learning rate is divided by 10.", flag_values=FLAGS)
flags.DEFINE_enum("strategy", "default", list(STRATEGIES),
                  "default: one device; mirrored: all local GPUs (MirroredStrategy); multiworker: TF_CONFIG hosts.",
                  flag_values=FLAGS)
flags.DEFINE_bool("mixed_precision", False, "Train with mixed_float16 on a GPU (refused on CPU: slower there).",
                  flag_values=FLAGS)
flags.DEFINE_bool("low_memory", False, "CPU: TensorFlow's system allocator and a fixed 64 KiB glibc mmap threshold — "
                  "a lower peak of memory for a slower step (the figures: benchmarks/README.md).",
                  flag_values=FLAGS)
flags.DEFINE_string("init_weights", None, "Weights a new run starts from: a .weights.h5 file or a weights tag of the "
                    "family: other classes start a new classifier, a 3D backbone's weights start V4D/F4D with the 4D "
                    "blocks at the identity. A resumed run starts from its checkpoint.", flag_values=FLAGS)
flags.DEFINE_list("freeze", [], "Parts kept fixed through the run, e.g. blocks4d (the paper's second stage); any of "
                  + ", ".join(PARTS) + ".", flag_values=FLAGS)
flags.DEFINE_integer("keep_checkpoints", DEFAULT_KEEP_CHECKPOINTS, "Epoch checkpoints kept: the newest N (older "
                     "ones are deleted once a newer one is complete; the resume point never is); 0 keeps every one. "
                     "With --val, the best epoch by --best_metric is kept too, as best.weights.h5.", lower_bound=0,
                     flag_values=FLAGS)
flags.DEFINE_string("best_metric", "val_top1", "With --val: the validation metric whose best epoch is kept as "
                    "best.weights.h5 (highest; lowest for val_loss).", flag_values=FLAGS)
flags.DEFINE_bool("tensorboard", True, "Write TensorBoard logs under --output/tensorboard.", flag_values=FLAGS)
flags.DEFINE_bool("overwrite", False, "Delete the run already in --output (its checkpoints, logs and settings; "
                  "nothing else) and start this one there. Without it, a folder holding a run with other settings "
                  "is refused.", flag_values=FLAGS)
flags.DEFINE_integer("max_frame_pixels", None, "A video whose frames have more pixels (width × height, read from its "
                     "header before decoding) is skipped like any bad video (default: "
                     "keras_v4d.data.MAX_FRAME_PIXELS, 4096×4096).", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_string("data_service", None, "grpc://HOST:PORT of a tf.data service dispatcher whose workers serve "
                    "--train (keras-v4d data-service): the training videos are decoded there, each once per epoch.",
                    flag_values=FLAGS)
flags.DEFINE_bool("strict", False, "Stop at the first video that cannot be read instead of skipping it.",
                  flag_values=FLAGS)


def _records():
    """The run's records from the flags: ``(TrainingData, RunOutput, VideoSampling, Recipe, Distribution)``."""
    from keras_v4d.data import MAX_FRAME_PIXELS, DataOptions
    from keras_v4d.records.sampling import DEFAULT_SAMPLING, VideoSampling
    from keras_v4d.training import Distribution, Recipe, RunOutput, TrainingData

    sampling = VideoSampling(train_units=FLAGS.num_units, frames_per_unit=FLAGS.frames_per_unit,
                             stride=FLAGS.stride, crop_size=FLAGS.crop_size, short_side=FLAGS.short_side,
                             test_num_units=max(FLAGS.num_units, DEFAULT_SAMPLING.test_num_units))
    options = DataOptions(strict=FLAGS.strict, max_frame_pixels=FLAGS.max_frame_pixels or MAX_FRAME_PIXELS)
    data = TrainingData(FLAGS.train, val=FLAGS.val, num_classes=FLAGS.num_classes, options=options,
                        service=FLAGS.data_service)
    output = RunOutput(FLAGS.output, overwrite=FLAGS.overwrite, tensorboard=FLAGS.tensorboard,
                       keep_checkpoints=FLAGS.keep_checkpoints or None, best_metric=FLAGS.best_metric)
    recipe = Recipe(epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, lr=FLAGS.lr, weight_decay=FLAGS.weight_decay,
                    decay_epochs=[int(e) for e in FLAGS.decay_epochs], mixed_precision=FLAGS.mixed_precision,
                    init_weights=FLAGS.init_weights, freeze=FLAGS.freeze)
    return data, output, sampling, recipe, Distribution(FLAGS.strategy, low_memory=FLAGS.low_memory)


def main(argv):
    from keras_v4d.data import BadVideoError
    from keras_v4d.models import BUILDERS
    from keras_v4d.records.atomic import NotWrittenError
    from keras_v4d.records.folder_lock import FolderBusyError
    from keras_v4d.records.run_files import LAST_MODEL_FILE
    from keras_v4d.training.callbacks import TrainingDiverged
    from keras_v4d.training.run import train

    if len(argv) > 1:
        raise CommandError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.train or not FLAGS.output:
        raise CommandError("--train and --output are required")
    if FLAGS.model not in BUILDERS:
        raise CommandError(f"--model must be one of {sorted(BUILDERS)}, got {FLAGS.model!r}")
    try:
        data, output, sampling, recipe, distribution = _records()
        history = train(FLAGS.model, data, output, sampling=sampling, recipe=recipe, distribution=distribution)
    except BadVideoError as error:  # --strict
        raise CommandError(f"--train/--val: {error}", code=EXIT_BAD_INPUT) from None
    except TrainingDiverged as error:
        raise CommandError(f"diverged: {error}", code=EXIT_DIVERGED) from None
    except FolderBusyError as error:
        raise CommandError(f"--output: {error}") from None
    except NotWrittenError as error:
        raise CommandError(f"not written: {error}", code=EXIT_NOT_WRITTEN) from None
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from None
    if history is None:  # the run had already completed --epochs; train() said so
        return 0
    print(f"done: {FLAGS.epochs} epochs; model at {os.path.join(FLAGS.output, LAST_MODEL_FILE)}")
    return 0


if __name__ == "__main__":
    run("train", main, FLAGS, __doc__)
