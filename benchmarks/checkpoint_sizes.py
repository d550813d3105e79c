"""The disk a training run's checkpoints take, per model of the zoo.

Per builder (400 classes, the paper's training recipe compiled, the optimizer's state built): the
size of one ``epoch-NNN.weights.h5`` (weights and SGD momentum: the resume point), of ``last.keras``
(the whole model) and what a run of the papers' 100 epochs keeps on disk with every epoch's
checkpoint against ``--keep_checkpoints N`` (N epoch checkpoints, ``best.weights.h5`` when there is
validation — a hard link to one of them where the file system has links — and ``last.keras``).

Run: ``python benchmarks/checkpoint_sizes.py [--keep 3] [--epochs 100] [--builders V4DResNet18 ...]``.
"""

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import print_machine  # noqa: E402  (sets the Keras backend before keras_v4d is imported)

import keras_v4d  # noqa: E402, F401  (before TensorFlow: oneDNN on where TensorFlow leaves it off)

# isort: split
from keras_v4d.models import BUILDERS  # noqa: E402
from keras_v4d.records.run_files import DEFAULT_KEEP_CHECKPOINTS  # noqa: E402
from keras_v4d.training import compile_for_training  # noqa: E402

GB = 1e9


def sizes(builder, classes=400):
    """Bytes of one epoch checkpoint and of ``last.keras`` for ``builder``."""
    model = BUILDERS[builder](classes=classes)
    compile_for_training(model, steps_per_epoch=100)
    model.optimizer.build(model.trainable_variables)  # the momentum a checkpoint holds from the first step on
    with tempfile.TemporaryDirectory() as folder:
        checkpoint, whole = os.path.join(folder, "epoch-001.weights.h5"), os.path.join(folder, "last.keras")
        model.save_weights(checkpoint)
        model.save(whole)
        return os.path.getsize(checkpoint), os.path.getsize(whole), model.count_params()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=int, default=DEFAULT_KEEP_CHECKPOINTS, help="--keep_checkpoints N")
    parser.add_argument("--epochs", type=int, default=100, help="the run's length (the papers': 100)")
    parser.add_argument("--builders", nargs="+", default=sorted(BUILDERS))
    args = parser.parse_args(argv)
    print_machine()
    print(f"{'model':<16} {'params':>8} {'epoch ckpt':>10} {'last.keras':>10} "
          f"{'all ' + str(args.epochs) + ' epochs':>14} {'keep ' + str(args.keep):>8}")
    for builder in args.builders:
        checkpoint, whole, params = sizes(builder)
        every = args.epochs * checkpoint + whole
        kept = args.keep * checkpoint + whole  # best.weights.h5: a link to a kept epoch, or one copy more
        print(f"{builder:<16} {params / 1e6:>7.1f}M {checkpoint / GB:>8.2f}GB {whole / GB:>8.2f}GB "
              f"{every / GB:>12.1f}GB {kept / GB:>6.2f}GB", flush=True)
    print("sizes in GB (1e9 bytes); with validation and no links, best.weights.h5 adds one epoch checkpoint")


if __name__ == "__main__":
    main()
