"""The model-zoo table: trainable parameters and GMACs of each builder at the papers' settings."""

import math

from keras_v4d.models import BUILDERS
from keras_v4d.models.flops import count_flops

# builder -> (input U×T×H×W×3, classes, paper GMACs, paper params in M, source of the paper figures)
PAPER_SETTINGS = {
    "I3DSlowResNet18": ((4, 4, 224, 224, 3), 1000, 55.1, 32.3, "V4D Table 2a/2b"),
    "TSNResNet18": ((4, 4, 224, 224, 3), 1000, 55.1, 32.3, "V4D Table 2a/2b"),
    "V4DResNet18": ((4, 4, 224, 224, 3), 1000, 58.8, 33.1, "V4D Table 2a/2b"),
    "F4DResNet18": ((4, 4, 224, 224, 3), 1000, None, None, "-"),
    "I3DSlowResNet50": ((1, 8, 224, 224, 3), 400, None, None, "-"),
    "TSNResNet50": ((4, 8, 224, 224, 3), 400, None, None, "-"),
    "V4DResNet50": ((4, 8, 224, 224, 3), 400, None, None, "-"),
    "F4DResNet50": ((1, 8, 224, 224, 3), 174, 72.0, 36.8, "F4D Table 1"),
}


def summary_rows():
    """Yields (builder, input, classes, params, GMACs, paper GMACs, paper params, source)."""
    for name, (shape, classes, paper_gmacs, paper_params, source) in PAPER_SETTINGS.items():
        model = BUILDERS[name](classes=classes)
        params = sum(math.prod(w.shape) for w in model.trainable_weights)
        gmacs = count_flops(model, shape) / 1e9
        yield name, shape, classes, params, gmacs, paper_gmacs, paper_params, source


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def print_summary():
    """Prints each builder's parameters and GMACs beside the papers' figures (``keras-v4d summary``)."""
    header = (f"{'model':<16} {'input U×T×H×W':<16} {'classes':>7} {'params (M)':>10} {'GMACs':>7} "
              f"{'paper GMACs':>11} {'paper params':>12}  source")
    print(header)
    print("-" * len(header))
    for name, shape, classes, params, gmacs, paper_gmacs, paper_params, source in summary_rows():
        size = "×".join(str(d) for d in shape[:3]) + f"×{shape[3]}"
        print(f"{name:<16} {size:<16} {classes:>7} {params / 1e6:>10.2f} {gmacs:>7.1f} "
              f"{_fmt(paper_gmacs, '.1f'):>11} {_fmt(paper_params, '.1f'):>12}  {source}")
