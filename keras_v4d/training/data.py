"""The data of a training run: ``TrainingData`` (what to read) and ``open_training_data`` (the
pipelines, the classes and the steps of an epoch, known without decoding a video)."""

import dataclasses

from keras_v4d.data import (
    DataOptions,
    TFRecordFiles,
    count_tfrecords,
    resolve_source,
    single_view,
    video_dataset,
)
from keras_v4d.data.service import service_video_dataset


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """What a run reads.

    Attributes:
        train, val: sources for ``video_dataset`` (annotation list, rawframe list, class folders,
            TFRecords, or a ``resolve_source`` object); validation is optional and reads the first
            view of ``train_units`` centred units, centre-cropped to the training crop, labelled with
            the training classes' names where the source names its classes.
        num_classes: default: the number of the training source's class names.
        options: ``DataOptions`` of both pipelines; ``strict`` ``None`` or ``False``: a video that
            cannot be read is skipped and counted (training and validation), ``True``: the first one
            stops the run with ``BadVideoError``.
        service: ``"grpc://HOST:PORT"`` of a tf.data service dispatcher whose workers serve ``train``
            (``keras-v4d data-service``): the training videos are decoded there, each once per epoch;
            the videos a stopped worker held are lost to that epoch and counted (``lost``).
            Validation is read here.
    """

    train: object
    val: object = None
    num_classes: int | None = None
    options: DataOptions = dataclasses.field(default_factory=DataOptions)
    service: str | None = None

    def __post_init__(self):
        if self.train is None or (isinstance(self.train, (str, list, tuple)) and not self.train):
            raise ValueError("TrainingData: `train` (the training source) is required")
        if self.num_classes is not None and (isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int)
                                             or self.num_classes < 1):
            raise ValueError(f"TrainingData: `num_classes` must be a positive int or None, got {self.num_classes!r}")
        if not isinstance(self.options, DataOptions):
            raise ValueError(f"TrainingData: `options` must be a DataOptions, got {type(self.options).__name__}")


@dataclasses.dataclass(frozen=True)
class TrainingInput:
    """The opened data of a run.

    Attributes:
        train: ``(videos (B, U, T, S, S, 3) float32, labels (B,) int32)`` batches.
        info: the training pipeline's ``VideoDatasetInfo`` (``skip_log``, ``class_names``).
        val, val_info: ``(first view (B, U, T, S, S, 3), labels (B,))`` batches and their info; ``None``
            without validation.
        num_classes: the classifier's size.
        num_videos: training videos, counted from the source (nothing decoded).
        batch_size: videos per batch.
        reader: the tf.data service's ``ServiceReader`` (``None`` when read here); close it after ``fit``.
    """

    train: object
    info: object
    val: object
    val_info: object
    num_classes: int
    num_videos: int
    batch_size: int
    reader: object = None

    @property
    def class_names(self):
        """The training source's class names (``None`` when it has none)."""
        return self.info.class_names

    @property
    def steps_per_epoch(self):
        """``num_videos // batch_size``: from the source's size, nothing is decoded to count."""
        return self.num_videos // self.batch_size


def source_size(info, source):
    """Number of videos of a training ``source`` without decoding any: the pipeline info's
    ``num_videos`` (list entries, or TFRecord records counted from the shards' framing); when that is
    unknown because a shard cannot be read, the other shards' records (the unreadable one counts 0)."""
    if info.num_videos is not None:
        return int(info.num_videos)

    resolved = resolve_source(source)
    if isinstance(resolved, TFRecordFiles):
        return sum(count_tfrecords([path]) or 0 for path in resolved.files)
    return len(resolved)


def validation_sampling(sampling):
    """The ``VideoSampling`` validation reads: one centre view of ``train_units`` units, cropped to
    the training crop (what the model sees in training, without augmentation)."""
    return dataclasses.replace(sampling, test_num_units=sampling.train_units, test_crop_size=sampling.crop_size,
                               test_num_crops=1)


def _num_classes(data, class_names):
    num_classes = data.num_classes or len(class_names or [])
    if not num_classes:
        raise ValueError("num_classes is required when the dataset has no class names")
    if class_names and len(class_names) != num_classes:
        raise ValueError(f"{data.train} has {len(class_names)} classes but num_classes is {num_classes}")
    return num_classes


def open_training_data(data, sampling, batch_size):
    """``TrainingInput`` of ``data`` (a ``TrainingData``) sampled with ``sampling`` in batches of
    ``batch_size``; ``ValueError`` naming the source for too few videos or mismatching classes."""
    options = dataclasses.replace(data.options, strict=bool(data.options.strict))
    reader = None
    if data.service:
        train, info, reader = service_video_dataset(data.service, data.train, sampling, batch_size=batch_size,
                                                    num_classes=data.num_classes, options=options)
    else:
        train, info = video_dataset(data.train, sampling, training=True, batch_size=batch_size,
                                    num_classes=data.num_classes, options=options, with_info=True)
    try:
        num_classes = _num_classes(data, info.class_names)
        val = val_info = None
        if data.val:  # validation labels are the training classes' (by name, where the source names its classes)
            views, val_info = video_dataset(resolve_source(data.val, class_names=info.class_names),
                                            validation_sampling(sampling), training=False, batch_size=batch_size,
                                            num_classes=num_classes, options=options, with_info=True)
            val = single_view(views)
        num_videos = source_size(info, data.train)
        if num_videos // batch_size == 0:
            raise ValueError(f"{data.train}: {num_videos} video(s), fewer than one batch of {batch_size}")
    except BaseException:
        if reader is not None:
            reader.close()
        raise
    return TrainingInput(train, info, val, val_info, num_classes, num_videos, batch_size, reader)
