"""The command-line tools, apart from the library: every absl flag and ``main`` lives here.

    keras-v4d train            train a model of the zoo (per-epoch checkpoints, resume)
    keras-v4d evaluate         video-level evaluation (Algorithm 1, multi-crop)
    keras-v4d predict          top-k classes of video files
    keras-v4d export           SavedModel / TFLite
    keras-v4d convert-weights  official PyTorch checkpoint → .weights.h5
    keras-v4d convert-data     videos or rawframes → TFRecord shards
    keras-v4d summary          params and GMACs of every builder

``python -m keras_v4d.cli SUBCOMMAND`` and ``python -m keras_v4d.cli.<tool>`` run the same. Each tool
imports the library; no library module imports this package.
"""
