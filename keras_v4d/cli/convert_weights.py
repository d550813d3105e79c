"""Convert an official V4D PyTorch checkpoint (``.pth.tar``) to a Keras ``.weights.h5`` file.

    keras-v4d convert-weights CHECKPOINT.pth.tar OUT.weights.h5 --arch V4DResNet50

The checkpoint's module structure is read and checked against ``--arch`` (residual blocks per
stage, the 4D module after each residual block, every tensor's shape, no unused key); on a
mismatch the tool prints the key or block at fault, writes nothing and exits with code 2.
Needs the ``torch`` extra (``pip install -e ".[torch]"``).
"""

import os

from absl import flags

from keras_v4d.cli.common import CommandError, run

FLAGS = flags.FlagValues()
flags.DEFINE_string("arch", "V4DResNet50", "Architecture: a builder name (V4DResNet50, V4DResNet18, "
                    "I3DSlowResNet50, TSNResNet18, ...).", flag_values=FLAGS)
flags.DEFINE_integer("classes", None, "Number of classes (default: from the checkpoint's classifier).",
                     flag_values=FLAGS)


def main(argv):
    from keras_v4d.records.atomic import write_atomically
    from keras_v4d.records.presets import sha256_of
    from keras_v4d.weights.convert_official import convert_official

    if len(argv) != 3:
        raise CommandError("usage: keras-v4d convert-weights CHECKPOINT OUT.weights.h5 --arch BUILDER")
    checkpoint, output = argv[1], argv[2]
    if not output.endswith(".weights.h5"):
        raise CommandError(f"the output must end in .weights.h5, got {output}")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise CommandError(f"the output's folder {folder} does not exist")
    try:
        model = convert_official(checkpoint, FLAGS.arch, FLAGS.classes)
    except (OSError, ValueError, ImportError) as error:
        raise CommandError(str(error)) from None
    write_atomically(output, model.save_weights)  # a failed or killed save leaves no torn file
    print(f"{checkpoint} → {output} ({model.name}, {model.count_params():,} parameters, "
          f"{model.outputs[0].shape[-1]} classes); sha256 {sha256_of(output)}")
    return 0


if __name__ == "__main__":
    run("convert-weights", main, FLAGS, __doc__)
