"""The command-line tools, apart from the library: every absl flag and ``main`` lives here.

    python -m keras_v4d.cli.train            train a model of the zoo (per-epoch checkpoints, resume)
    python -m keras_v4d.cli.evaluate         video-level evaluation (Algorithm 1, multi-crop)
    python -m keras_v4d.cli.predict          top-k classes of video files
    python -m keras_v4d.cli.export           SavedModel / TFLite
    python -m keras_v4d.cli.convert_weights  official PyTorch checkpoint → .weights.h5
    python -m keras_v4d.cli.convert_data     videos or rawframes → TFRecord shards
    python -m keras_v4d.cli.summary          params and GMACs of every builder

Each tool imports the library; no library module imports this package.
"""
