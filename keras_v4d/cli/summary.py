"""Trainable parameters and GMACs of every builder at the papers' settings, beside the papers' figures.

    keras-v4d summary
"""

from absl import flags

from keras_v4d.cli.common import CommandError, run

FLAGS = flags.FlagValues()


def main(argv):
    from keras_v4d.models.model_table import print_summary

    if len(argv) != 1:
        raise CommandError(f"unexpected arguments {argv[1:]}; usage: keras-v4d summary")
    print_summary()
    return 0


if __name__ == "__main__":
    run("summary", main, FLAGS, __doc__)
