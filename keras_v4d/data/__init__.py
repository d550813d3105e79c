"""Video data: action-unit sampling, video files and TFRecords, ``tf.data`` pipelines."""

from keras_v4d.data.pipeline import (
    BadVideoError, SkipLog, load_video_views, read_video_units, single_view, video_dataset)
from keras_v4d.data.sampling import segment_indices, unit_span
from keras_v4d.data.sources import (
    TFRecordFiles, VideoFiles, read_annotations, read_class_folders, resolve_source)
from keras_v4d.data.tfrecord import encode_example, parse_example
from keras_v4d.data.transforms import eval_transform, normalize_imagenet, train_transform
from keras_v4d.data.video_io import VideoReadError, count_frames, read_all_frames, read_frames, write_video

__all__ = [
    "BadVideoError", "SkipLog", "TFRecordFiles", "VideoFiles", "VideoReadError", "count_frames",
    "encode_example", "eval_transform", "load_video_views", "normalize_imagenet", "parse_example", "read_all_frames",
    "read_annotations", "read_class_folders", "read_frames", "read_video_units", "resolve_source", "segment_indices",
    "single_view", "train_transform", "unit_span", "video_dataset", "write_video",
]
