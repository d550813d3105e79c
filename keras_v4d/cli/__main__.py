"""``python -m keras_v4d.cli``: the same as the ``keras-v4d`` command."""

from keras_v4d.cli.main import console_main

console_main()
