"""Training: the paper's recipe (optimizer, schedule, loss, metrics), the callbacks of a run, where it
runs (strategies, a lower-memory allocator on CPU), and ``train``, the run itself, built from records:
``TrainingData``, ``RunOutput``, ``Recipe`` and ``Distribution``."""

from keras_v4d.training.callbacks import DataReport, EpochProgress, training_callbacks
from keras_v4d.training.data import TrainingData
from keras_v4d.training.distribution import STRATEGIES, Distribution, make_strategy, use_low_memory_allocator
from keras_v4d.training.recipe import (
    PAPER_DECAY_EPOCHS,
    Recipe,
    SGDWithL2,
    compile_for_training,
    default_jit_compile,
    paper_learning_rate,
    paper_optimizer,
)
from keras_v4d.training.run import RunOutput, train

__all__ = ["PAPER_DECAY_EPOCHS", "STRATEGIES", "DataReport", "Distribution", "EpochProgress", "Recipe", "RunOutput",
           "SGDWithL2", "TrainingData", "compile_for_training", "default_jit_compile", "make_strategy",
           "paper_learning_rate", "paper_optimizer", "train", "training_callbacks", "use_low_memory_allocator"]
