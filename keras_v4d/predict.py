"""Top-k classes of video files with video-level inference (Algorithm 1, multi-crop).

``predict_videos(model, paths, train_units=4, sampling=...)`` yields one result per file; the
command-line tool is ``python -m keras_v4d.cli.predict``.
"""

import numpy as np
from keras import ops

from keras_v4d.data import VideoReadError, load_video_views
from keras_v4d.inference import VideoLevelPredictor, video_level_predict


def top_classes(probabilities, class_names, k):
    """``[(class name, probability), ...]`` of the ``k`` highest of ``probabilities`` (classes,)."""
    probabilities = np.asarray(probabilities)
    order = np.argsort(-probabilities)[:k]
    return [(class_names[i] if class_names else f"class {i}", float(probabilities[i])) for i in order]


def predict_videos(model, paths, *, train_units, sampling, mode="combinations", class_names=None, top_k=5):
    """Yields ``(path, [(class name, probability), ...], None)`` per video file, or
    ``(path, None, error message)`` for a file that cannot be read (the others still run)."""
    predictor = VideoLevelPredictor(model)
    for path in paths:
        try:
            views = load_video_views(path, **sampling)
        except (VideoReadError, OSError) as error:
            yield path, None, str(error)
            continue
        scores = video_level_predict(model, views[None], train_units, mode, predictor)
        yield path, top_classes(ops.convert_to_numpy(scores)[0], class_names, top_k), None
