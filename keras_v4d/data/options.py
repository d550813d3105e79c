"""The records that travel with a pipeline besides its ``VideoSampling``: how it reads (``DataOptions``)
and what is known about it without decoding (``VideoDatasetInfo``)."""

import dataclasses

from keras_v4d.data.frame_size import MAX_FRAME_PIXELS, check_max_frame_pixels
from keras_v4d.records.sampling import check_positive_int


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """How a pipeline reads its source, apart from the sampling protocol.

    Attributes:
        shuffle_buffer: training from TFRecords: records in the shuffle buffer (lists are shuffled whole).
        seed: makes shuffling, the training units' offsets and the random crops and flips reproducible.
        drop_remainder: drop the last partial batch; None: in training only (every replica's batch
            holds whole videos).
        strict: raise ``BadVideoError`` naming the video at the first bad sample instead of skipping
            it; None: in evaluation only.
        max_frame_pixels: a video whose frames have more pixels (width × height, read from a header
            before anything is decoded) is a bad sample; None: no limit.
    """

    shuffle_buffer: int = 256
    seed: int | None = None
    drop_remainder: bool | None = None
    strict: bool | None = None
    max_frame_pixels: int | None = MAX_FRAME_PIXELS

    def __post_init__(self):
        check_positive_int(self.shuffle_buffer, "shuffle_buffer", "DataOptions")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"DataOptions: `seed` must be an int or None, got {self.seed!r}")
        for name in ("drop_remainder", "strict"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise ValueError(f"DataOptions: `{name}` must be True, False or None, got {getattr(self, name)!r}")
        check_max_frame_pixels(self.max_frame_pixels, "DataOptions: `max_frame_pixels`")

    def is_strict(self, training):
        """``strict``, else ``not training``."""
        return not training if self.strict is None else self.strict

    def drops_remainder(self, training):
        """``drop_remainder``, else ``training``."""
        return training if self.drop_remainder is None else self.drop_remainder


DEFAULT_OPTIONS = DataOptions()


def record_argument(value, default, where, name):
    """``value``, or ``default`` for None; a ``TypeError`` naming ``where`` and ``name`` unless ``value`` is a
    record of ``default``'s type (a ``VideoSampling``, a ``DataOptions``), made and checked by its caller."""
    if value is None:
        return default
    if not isinstance(value, type(default)):
        raise TypeError(f"{where}: `{name}` must be a {type(default).__name__}, got {type(value).__name__}")
    return value


@dataclasses.dataclass(frozen=True)
class VideoDatasetInfo:
    """What is known about a pipeline besides its elements (``video_dataset(..., with_info=True)``).

    Attributes:
        skip_log: the ``SkipLog`` of what was skipped or repaired and why, filled as the dataset is read.
        class_names: the source's class names (``None`` when it names none).
        num_videos: the videos the source holds (list entries whose label is in range, or TFRecord
            records counted from the shards' framing; ``None`` if a shard cannot be read).
    """

    skip_log: object
    class_names: list | None
    num_videos: int | None
