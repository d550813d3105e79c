"""The V4D training recipe (V4D §4.2 and the released code): SGD with momentum, the piecewise
learning rate, L2 weight decay without BN and biases, global gradient-norm clipping, cross-entropy
and the video metrics; ``Recipe``, the record of a run's recipe."""

import dataclasses
import os

import keras
import tensorflow as tf
from keras import ops

from keras_v4d.inference.metrics import video_metrics
from keras_v4d.models import PARTS
from keras_v4d.models.video_model import ends_in_softmax

PAPER_DECAY_EPOCHS = (35, 60, 80)
"""The epochs of 100 at which the papers' learning rate is divided by 10 (V4D §4.2)."""
NO_DECAY = ["gamma", "beta", "bias"]  # BN scales/offsets and biases are not decayed (released code)


def paper_learning_rate(steps_per_epoch, base_lr=0.01, decay_epochs=PAPER_DECAY_EPOCHS, factor=0.1):
    """Piecewise-constant schedule: ``base_lr``, divided by 10 at each of ``decay_epochs``."""
    # PiecewiseConstantDecay switches *after* a boundary step: the new rate starts at epoch e's first step.
    boundaries = [int(e * steps_per_epoch) - 1 for e in decay_epochs]
    values = [base_lr * factor**i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def read_after(variable, dependency):
    """``variable``'s value, read only once ``dependency`` has been computed.

    TensorFlow's graph executor runs an op as soon as its inputs exist, so a product of a weight
    that depends on nothing else (``λ·w``) would be computed for every weight at the start of the
    training step and held through forward and backward: a copy of all the model's
    weights on top of the activations. Other backends keep program order.
    """
    if keras.backend.backend() == "tensorflow":
        with tf.control_dependencies([dependency]):
            return tf.identity(variable)
    return ops.convert_to_tensor(variable)


@keras.saving.register_keras_serializable(package="keras_v4d")
class SGDWithL2(keras.optimizers.SGD):
    """SGD with L2 weight decay added to the gradient, as ``torch.optim.SGD(weight_decay=λ)`` in the
    released code: ``d = g + λ·w`` (``g`` after global-norm clipping), then Keras' momentum step
    ``m ← μ·m − lr·d``, ``w ← w + m``.

    That equals PyTorch's ``b ← μ·b + d``, ``w ← w − lr·b`` while the rate is constant (``m = −lr·b``);
    across a drop of the rate, the momentum carried over keeps the old rate and fades at ``μ`` per
    step. Variables whose name contains one of ``no_decay`` (BN scales and offsets, biases) are not
    decayed. Keras' own ``weight_decay`` is decoupled (``w ← w − lr·λ·w``), about ``1 / (1 − μ)``
    = 10× weaker than the coupled form at the same λ, so it is not the recipe's.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, l2=0.0, no_decay=(), name="sgd_with_l2", **kwargs):
        super().__init__(learning_rate=learning_rate, momentum=momentum, name=name, **kwargs)
        self.l2 = float(l2)
        self.no_decay = tuple(no_decay)

    def decays(self, variable):
        """Whether ``variable`` gets the L2 term."""
        return bool(self.l2) and not any(part in variable.name for part in self.no_decay)

    def update_step(self, gradient, variable, learning_rate):
        if self.decays(variable):
            gradient = ops.cast(gradient, variable.dtype)
            gradient = ops.add(gradient, ops.multiply(read_after(variable, gradient),
                                                      ops.cast(self.l2, variable.dtype)))
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2, "no_decay": list(self.no_decay)}


def paper_optimizer(steps_per_epoch, base_lr=0.01, momentum=0.9, weight_decay=1e-5,
                    clip_norm=20.0, decay_epochs=PAPER_DECAY_EPOCHS):
    """The released code's optimizer: SGD with momentum, the paper's schedule, L2 weight decay on
    conv/dense kernels only (``SGDWithL2``) and clipping of the global gradient norm (20)."""
    return SGDWithL2(learning_rate=paper_learning_rate(steps_per_epoch, base_lr, decay_epochs),
                     momentum=momentum, l2=weight_decay or 0.0, no_decay=NO_DECAY, global_clipnorm=clip_norm)


def default_jit_compile():
    """``False`` for TensorFlow on CPU, where XLA's Conv3D makes a V4D training step several times
    slower (benchmarks/README.md); Keras' ``"auto"`` on a GPU and on the JAX and torch backends."""
    if keras.backend.backend() != "tensorflow":
        return "auto"
    return "auto" if tf.config.list_physical_devices("GPU") else False


def compile_for_training(model, steps_per_epoch, optimizer=None, jit_compile=None, **optimizer_args):
    """Compiles ``model`` with the paper's optimizer (unless given), cross-entropy and the metrics.

    ``jit_compile``: default ``default_jit_compile()`` (never XLA on CPU).
    """
    num_classes = model.outputs[0].shape[-1]
    from_logits = not ends_in_softmax(model)
    model.compile(
        optimizer=optimizer or paper_optimizer(steps_per_epoch, **optimizer_args),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=video_metrics(num_classes),
        jit_compile=default_jit_compile() if jit_compile is None else jit_compile,
    )
    return model


def _positive(value, name, kind=int):
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or value <= 0:
        raise ValueError(f"Recipe: `{name}` must be a positive {kind.__name__}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a run trains; the defaults are the paper's (V4D §4.2).

    Attributes:
        epochs: epochs in total, counting those the run's folder has completed.
        batch_size: the global batch, in videos.
        lr, weight_decay, decay_epochs: the optimizer (``paper_optimizer``: SGD with momentum 0.9 and
            L2 weight decay as PyTorch's ``SGD(weight_decay=...)``; lr ÷ 10 at each of ``decay_epochs``).
        mixed_precision: ``mixed_float16`` on a GPU; refused on CPU, where it is slower (``set_precision_policy``).
        jit_compile: XLA for the training step; ``None``: ``default_jit_compile()`` (never on CPU).
        init_weights: optional ``.weights.h5`` to start a new run from (e.g. a 3D backbone).
    """

    epochs: int = 100
    batch_size: int = 8
    lr: float = 0.01
    weight_decay: float = 1e-5
    decay_epochs: tuple = PAPER_DECAY_EPOCHS
    mixed_precision: bool = False
    jit_compile: bool | str | None = None
    init_weights: str | None = None
    freeze: tuple = ()

    def __post_init__(self):
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"Recipe: `epochs` must be at least 1, got {self.epochs!r}")
        _positive(self.batch_size, "batch_size")
        _positive(self.lr, "lr", float)
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) \
                or self.weight_decay < 0:
            raise ValueError(f"Recipe: `weight_decay` must be a number >= 0, got {self.weight_decay!r}")
        for epoch in self.decay_epochs:
            _positive(epoch, "decay_epochs")
        object.__setattr__(self, "decay_epochs", tuple(self.decay_epochs))  # JSON and flags give lists
        if self.jit_compile not in (None, True, False, "auto"):
            raise ValueError(f"Recipe: `jit_compile` must be None, True, False or 'auto', got {self.jit_compile!r}")
        if self.init_weights is not None and (not isinstance(self.init_weights, (str, os.PathLike))
                                              or not os.fspath(self.init_weights)):
            raise ValueError("Recipe: `init_weights` must be a .weights.h5 path or a weights tag, got "
                             f"{self.init_weights!r}")
        object.__setattr__(self, "freeze", _parts(self.freeze))


def _parts(freeze):
    """``freeze`` as a tuple of part names, each one of ``PARTS``, in the given order without repeats."""
    names = (freeze,) if isinstance(freeze, str) else tuple(freeze or ())
    for name in names:
        if name not in PARTS:
            raise ValueError(f"Recipe: `freeze` has the unknown part {name!r}; parts: {', '.join(PARTS)}")
    return tuple(dict.fromkeys(names))


def set_precision_policy(mixed_precision):
    """Sets Keras' global policy to ``mixed_float16`` when ``mixed_precision``; a ``ValueError``
    without a GPU."""
    if not mixed_precision:
        return
    if not tf.config.list_physical_devices("GPU"):
        # Measured (benchmarks/training.py --mixed_precision mixed_bfloat16): a V4D-R18 step is
        # slower in mixed_bfloat16 than in float32 on CPU, AVX512-BF16 or not (benchmarks/README.md).
        raise ValueError("mixed_precision: no GPU; on CPU mixed_bfloat16 makes a training step about 1.5× "
                         "slower than float32 (see benchmarks/README.md), so it is refused — "
                         "train in float32 on CPU, or use mixed precision (mixed_float16) on a GPU")
    keras.mixed_precision.set_global_policy("mixed_float16")
