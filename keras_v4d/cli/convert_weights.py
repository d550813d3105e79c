"""Convert an official V4D PyTorch checkpoint (``.pth.tar``) to a Keras ``.weights.h5`` file.

    python -m keras_v4d.cli.convert_weights CHECKPOINT.pth.tar OUT.weights.h5 --arch v4d_resnet50

The checkpoint's module structure is read and checked against ``--arch`` (residual blocks per
stage, the 4D module after each residual block, every tensor's shape, no unused key); on a
mismatch the tool prints the key or block at fault, writes nothing and exits with code 2.
Needs the ``torch`` extra (``pip install -e ".[torch]"``).
"""

from absl import flags

from keras_v4d.cli.common import CommandError, run

FLAGS = flags.FLAGS
flags.DEFINE_string("arch", "v4d_resnet50", "Architecture: v4d_resnet50, v4d_resnet18, i3d_slow_resnet50, "
                    "tsn_resnet18, ... (the builders' default model names).")
flags.DEFINE_integer("classes", None, "Number of classes (default: from the checkpoint's classifier).")


def main(argv):
    from keras_v4d.weights.convert_official import convert_official
    from keras_v4d.weights.registry import sha256_of

    if len(argv) != 3:
        raise CommandError("usage: python -m keras_v4d.cli.convert_weights CHECKPOINT OUT.weights.h5 --arch A")
    checkpoint, output = argv[1], argv[2]
    if not output.endswith(".weights.h5"):
        raise CommandError(f"the output must end in .weights.h5, got {output}")
    try:
        model = convert_official(checkpoint, FLAGS.arch, FLAGS.classes)
    except (OSError, ValueError, ImportError) as error:
        raise CommandError(str(error)) from None
    model.save_weights(output)
    print(f"{checkpoint} → {output} ({model.name}, {model.count_params():,} parameters, "
          f"{model.outputs[0].shape[-1]} classes); sha256 {sha256_of(output)}")
    return 0


if __name__ == "__main__":
    run(main)
