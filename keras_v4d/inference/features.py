"""Features: the pooled features before the classifier, per video and per window of a long video,
averaged over Algorithm 1's combinations and the test crops as ``evaluate`` averages scores (no softmax).

``extract_features(model, paths, sampling)`` yields per video file its features ``(C,)``;
``window_features(model, path, sampling, window=10.0, hop=1.0)`` gives them per window (the
timeline's windows); ``write_features`` / ``write_window_features`` save them as ``.npz`` with the
video ids and the sampling. The command-line tool is ``keras-v4d features``.

What the features are (``feature_model``):

- a builder's model with its classifier: the output of its ``pool_units`` layer, the classifier's input;
- a builder's model with ``include_top=False`` and ``pooling="avg"``/``"max"``: its output;
- a backbone without pooling, or a model with a head of the user's (``models.with_head``): the feature
  map entering the head ``(B, U, T, h, w, C)`` averaged over U, T, h and w — what a builder's
  ``pooling="avg"`` gives.

Per combination of K units the pooling runs over those K units, as the head does.
"""

import dataclasses
import json
import os

import keras
import numpy as np
from keras import ops

from keras_v4d.data import MAX_FRAME_PIXELS, VideoReadError, load_video_views
from keras_v4d.inference.algorithm1 import (
    MAX_ELEMENTS,
    MAX_UNIT_COMBINATIONS,
    Algorithm1,
    check_mode,
    check_unit_combinations,
    unit_combinations,
)
from keras_v4d.inference.timeline import DEFAULT_HOP_SECONDS, DEFAULT_WINDOW_SECONDS, video_timeline
from keras_v4d.layers import FoldUnits, UnfoldUnits
from keras_v4d.models.resnet3d import ResNet3DModel
from keras_v4d.models.video_model import VideoModel
from keras_v4d.records.atomic import open_atomically
from keras_v4d.records.sampling import resolve_sampling


def _average_pooled(features):
    """``(B, U, T, h, w, C)`` → ``(B, C)`` with the layers (and names) of a builder's ``pooling="avg"`` head."""
    x = FoldUnits(name="head_fold")(features)
    x = keras.layers.GlobalAveragePooling3D(name="pool_thw")(x)
    x = UnfoldUnits(name="unfold_units")([x, features])
    return keras.layers.GlobalAveragePooling1D(name="pool_units")(x)


def feature_model(model):
    """``model``'s video → pooled features ``(B, C)``: a ``VideoModel`` sharing its layers and weights
    (``model`` itself when its output already is pooled features), as a builder makes it with
    ``include_top=False, pooling="avg"``. A ``ValueError`` for a model that is not a ``VideoModel``."""
    if not isinstance(model, VideoModel):
        raise ValueError(f"features: model '{model.name}' is a {type(model).__name__}, not a keras_v4d VideoModel; "
                         "build it with a keras_v4d builder (with_head for a head of your own) or load it with "
                         "keras.models.load_model")
    config = model.builder_config
    if model.head is None and model.has_head and not config.get("include_top"):
        return model
    if model.head is None and config.get("include_top"):
        pooled = model.get_layer("pool_units").output
    else:
        pooled = _average_pooled(model.boundaries[-1])
    return ResNet3DModel(model.inputs[0], pooled, boundaries=model.boundaries, has_head=True,
                         builder_config={**config, "include_top": False, "pooling": "avg"},
                         name=f"{model.name}_features")


def video_features(model, videos, train_units, mode="combinations", max_elements=MAX_ELEMENTS,
                   max_combinations=MAX_UNIT_COMBINATIONS):
    """Video-level features ``(B, C)`` float32 of ``videos`` ``(B, U_infer, T, H, W, 3)`` or
    ``(B, V, U_infer, T, H, W, 3)``: the features of each of Algorithm 1's combinations (``mode``
    ``"combinations"``; ``"all_units"``: all units at once), averaged over combinations and views.
    Pass ``feature_model(model)`` to reuse it across calls."""
    check_mode(mode)
    model = feature_model(model)
    videos = ops.convert_to_tensor(videos, dtype="float32")
    if len(videos.shape) not in (6, 7):
        raise ValueError(f"`videos` must be (B, U, T, H, W, 3) or (B, V, U, T, H, W, 3), got {tuple(videos.shape)}.")
    if len(videos.shape) == 6:
        videos = videos[:, None]
    batch, views, num_units = videos.shape[:3]
    if mode == "all_units":
        features = model(ops.reshape(videos, (batch * views,) + tuple(videos.shape[2:])), training=False)
        return ops.convert_to_numpy(features).reshape(batch, views, -1).mean(axis=1).astype(np.float32)
    combinations = unit_combinations(num_units, train_units, max_combinations)  # (n, K)
    engine = Algorithm1(model, max_elements, probabilities=False)
    # one key per (video, unit), its V views stored together
    engine.add_units(np.arange(batch * num_units),
                     ops.reshape(ops.moveaxis(videos, 1, 2), (batch * num_units, views) + tuple(videos.shape[3:])))
    keys = (np.arange(batch)[:, None, None] * num_units + combinations[None]).reshape(-1, train_units)
    features = ops.convert_to_numpy(engine.scores(keys))  # (B·n, V, C)
    return features.reshape(batch, -1, features.shape[-1]).mean(axis=1).astype(np.float32)


def extract_features(model, paths, sampling=None, *, mode="combinations", max_frame_pixels=MAX_FRAME_PIXELS):
    """Yields ``(path, features (C,) float32, None)`` per video file, or ``(path, None, error message)``
    for a file that cannot be read (the others still run).

    ``sampling``: the model's ``VideoSampling`` (its test protocol; default: the model's fixed U/T and
    the defaults). ``max_frame_pixels``: as for ``predict_videos``. The model and the number of
    combinations are checked before any video is read (``ValueError``).
    """
    features_model = feature_model(model)
    sampling = sampling or resolve_sampling(model)
    check_mode(mode)
    if mode == "combinations":
        check_unit_combinations(sampling.test_num_units, sampling.train_units)
    return _extracted(features_model, paths, sampling, mode, max_frame_pixels)


def _extracted(model, paths, sampling, mode, max_frame_pixels):
    for path in paths:
        try:
            views = load_video_views(path, sampling, max_frame_pixels=max_frame_pixels)
        except (VideoReadError, OSError) as error:
            yield path, None, str(error)
            continue
        yield path, video_features(model, views[None], sampling.train_units, mode)[0], None


@dataclasses.dataclass
class WindowFeatures:
    """Features over a video's time: per window of the timeline (``inference.timeline``).

    Attributes:
        path: the video file.
        starts, ends: ``(W,)`` seconds, each window's first frame's time and its last frame's end.
        features: ``(W, C)`` float32.
        first_frames: ``(W,)`` each window's first frame.
        fps: the stream's frame rate.
    """

    path: str
    starts: np.ndarray
    ends: np.ndarray
    features: np.ndarray
    first_frames: np.ndarray
    fps: float


def window_features(model, path, sampling=None, *, window=DEFAULT_WINDOW_SECONDS, hop=DEFAULT_HOP_SECONDS,
                    mode="combinations", windows_per_call=8, max_elements=MAX_ELEMENTS,
                    max_frame_pixels=MAX_FRAME_PIXELS):
    """The ``WindowFeatures`` of the video file ``path``: windows of about ``window`` seconds every
    ``hop`` seconds, as ``video_timeline`` makes them, each with the features ``extract_features`` gives
    a clip of exactly the window's frames. Raises ``VideoReadError`` naming the file."""
    timeline = video_timeline(feature_model(model), path, sampling or resolve_sampling(model), window=window,
                              hop=hop, mode=mode, windows_per_call=windows_per_call, max_elements=max_elements,
                              max_frame_pixels=max_frame_pixels, probabilities=False)
    return WindowFeatures(path, timeline.starts, timeline.ends, timeline.probabilities.astype(np.float32),
                          timeline.first_frames, timeline.fps)


def _write_npz(path, arrays):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open_atomically(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def write_features(path, features, video_ids, sampling, mode="combinations"):
    """Writes ``path`` (``.npz``) whole or not at all: ``features`` ``(N, C)`` float32, ``video_ids``
    ``(N,)`` str, ``sampling`` (the ``VideoSampling`` as JSON) and ``mode``; returns ``path``."""
    features = np.asarray(features, np.float32)
    if len(features) != len(video_ids):
        raise ValueError(f"write_features: {len(features)} feature rows for {len(video_ids)} video ids")
    return _write_npz(path, dict(features=features, video_ids=np.array(list(video_ids), dtype=str),
                                 sampling=np.array(json.dumps(sampling.to_dict())), mode=np.array(mode)))


def write_window_features(path, windows, sampling, mode="combinations"):
    """Writes the ``WindowFeatures`` ``windows`` to ``path`` (``.npz``) whole or not at all: ``features``
    ``(W, C)`` float32, ``starts``/``ends`` ``(W,)`` seconds, ``first_frames``, ``video_id``, ``fps``,
    ``sampling`` (JSON) and ``mode``; returns ``path``."""
    return _write_npz(path, dict(features=windows.features, starts=windows.starts, ends=windows.ends,
                                 first_frames=windows.first_frames, video_id=np.array(str(windows.path)),
                                 fps=np.array(windows.fps), sampling=np.array(json.dumps(sampling.to_dict())),
                                 mode=np.array(mode)))
