"""``python -m keras_v4d.cli.summary``: params and GMACs of every builder at the papers' settings."""

import sys

from keras_v4d.summary import print_summary


def main(argv):
    if len(argv) != 1:
        print("usage: python -m keras_v4d.cli.summary", file=sys.stderr)
        return 2
    print_summary()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
