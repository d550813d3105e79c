"""Video data: action-unit sampling, video files, rawframe folders and TFRecords, ``tf.data`` pipelines."""

from keras_v4d.data.frame_indices import segment_indices, unit_span
from keras_v4d.data.frame_size import MAX_FRAME_PIXELS
from keras_v4d.data.options import DataOptions, VideoDatasetInfo
from keras_v4d.data.pipeline import count_tfrecords, load_video_views, read_video_units, single_view, video_dataset
from keras_v4d.data.service import (
    DataServiceError,
    ServiceReader,
    serve_videos,
    service_video_dataset,
    start_dispatcher,
    start_worker,
)
from keras_v4d.data.skip_log import BadVideoError, SkipLog, bad_video_message
from keras_v4d.data.sources import (
    RawFrames,
    TFRecordFiles,
    VideoFiles,
    read_annotations,
    read_class_folders,
    read_rawframe_annotations,
    resolve_source,
)
from keras_v4d.data.tfrecord import encode_example, parse_example, scan_shard
from keras_v4d.data.transforms import eval_transform, normalize_imagenet, train_transform
from keras_v4d.data.video_io import (
    VideoReadError,
    count_frames,
    read_all_frames,
    read_frames,
    sample_video,
    write_video,
)

__all__ = [
    "MAX_FRAME_PIXELS", "BadVideoError", "DataOptions", "DataServiceError", "RawFrames", "ServiceReader",
    "SkipLog", "TFRecordFiles", "VideoDatasetInfo", "VideoFiles",
    "VideoReadError",
    "bad_video_message", "count_frames", "count_tfrecords", "encode_example", "eval_transform", "load_video_views",
    "normalize_imagenet", "parse_example", "read_all_frames", "read_annotations", "read_class_folders",
    "read_frames", "read_rawframe_annotations", "read_video_units", "resolve_source", "sample_video", "scan_shard",
    "segment_indices", "serve_videos", "service_video_dataset", "single_view", "start_dispatcher",
    "start_worker", "train_transform", "unit_span", "video_dataset", "write_video",
]
