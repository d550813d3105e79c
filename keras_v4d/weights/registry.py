"""The weight registry: tags → file, URL, sha256, architecture, classes, input settings, accuracy.

The registry's data and lookups live with the builders (``keras_v4d.models.presets``) so that
``V4DResNet50(weights=<tag>)`` resolves tags; this module adds building a registered model.
"""

from keras_v4d.models import BUILDERS
from keras_v4d.models.presets import (  # noqa: F401  (re-exported)
    CACHE_SUBDIR, REQUIRED_FIELDS, fetch_weights, list_weights, register, resolve_weights, sha256_of, weights_info)


def load_pretrained(tag, cache_dir=None, **overrides):
    """Builds the registered architecture of ``tag`` and loads its weights."""
    entry = weights_info(tag)
    return BUILDERS[entry["builder"]](**{**entry["arguments"], **overrides}, weights=fetch_weights(tag, cache_dir))
