"""Training: the paper's recipe (optimizer, schedule, loss, metrics), the callbacks of a run, where it
runs (strategies, a lower-memory allocator on CPU), and ``train``, the run itself."""

from keras_v4d.training.callbacks import DataReport, EpochProgress, training_callbacks
from keras_v4d.training.distribution import STRATEGIES, make_strategy, use_low_memory_allocator
from keras_v4d.training.recipe import (
    PAPER_DECAY_EPOCHS,
    SGDWithL2,
    compile_for_training,
    default_jit_compile,
    paper_learning_rate,
    paper_optimizer,
)
from keras_v4d.training.run import train

__all__ = ["PAPER_DECAY_EPOCHS", "STRATEGIES", "DataReport", "EpochProgress", "SGDWithL2", "compile_for_training",
           "default_jit_compile", "make_strategy", "paper_learning_rate", "paper_optimizer", "train",
           "training_callbacks", "use_low_memory_allocator"]
