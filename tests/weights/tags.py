"""A weights tag registered for a test against a file in a test cache folder, as a release would be."""

from keras_v4d.records.presets import sha256_of
from keras_v4d.weights import register


def register_cached_tag(tag, model, tmp_path, monkeypatch, builder, **entry):
    """Saves ``model``'s weights into ``tmp_path/cache`` (made ``$KERAS_V4D_CACHE``) and registers them
    as ``tag`` of ``builder`` with ``model``'s classes and the other ``entry`` fields; returns the file."""
    (tmp_path / "cache" / "keras_v4d").mkdir(parents=True)
    path = tmp_path / "cache" / "keras_v4d" / f"{tag}.weights.h5"
    model.save_weights(path)
    monkeypatch.setenv("KERAS_V4D_CACHE", str(tmp_path / "cache"))
    register(tag, {"builder": builder, "arguments": {"classes": model.outputs[0].shape[-1]},
                   "file_name": path.name, "url": None, "sha256": sha256_of(path), **entry})
    return path
