"""Top-k classes of video files with video-level inference (Algorithm 1, multi-crop).

``predict_videos(model, paths, sampling)`` yields one result per file; the command-line tool is
``keras-v4d predict``.
"""

from keras import ops

from keras_v4d.data import MAX_FRAME_PIXELS, VideoReadError, load_video_views
from keras_v4d.inference.algorithm1 import check_unit_combinations
from keras_v4d.inference.video_level import VideoLevelPredictor, video_level_predict
from keras_v4d.records.class_names import top_classes
from keras_v4d.records.sampling import resolve_sampling


def predict_videos(model, paths, sampling=None, *, mode="combinations", class_names=None, top_k=5,
                   max_frame_pixels=MAX_FRAME_PIXELS):
    """Yields ``(path, [(class name, probability), ...], None)`` per video file, or
    ``(path, None, error message)`` for a file that cannot be read (the others still run).

    ``sampling``: the model's ``VideoSampling`` (default: the model's fixed U/T and the defaults).
    ``max_frame_pixels``: a file whose frames have more pixels (width × height, from its header) is
    not decoded and yields an error message instead; None: no limit.
    """
    sampling = sampling or resolve_sampling(model)
    if mode == "combinations":  # before any video is read
        check_unit_combinations(sampling.test_num_units, sampling.train_units)
    predictor = VideoLevelPredictor(model)
    for path in paths:
        try:
            views = load_video_views(path, sampling, max_frame_pixels=max_frame_pixels)
        except (VideoReadError, OSError) as error:
            yield path, None, str(error)
            continue
        scores = video_level_predict(model, views[None], sampling.train_units, mode, predictor)
        yield path, top_classes(ops.convert_to_numpy(scores)[0], class_names, top_k), None
