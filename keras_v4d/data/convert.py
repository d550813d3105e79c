"""Videos or rawframe folders + annotation list → sharded TFRecords in the Model Garden video format.

    convert(read_annotations("train.txt"), "records/train", num_shards=8, workers=2)
    convert(read_rawframe_annotations("train_rawframes.txt"), "records/train")

(command line: ``keras-v4d convert-data``).

Each video is decoded once, optionally resized so its short side is ``--short_side``, and every
frame is stored as a JPEG. Rawframe folders keep their JPEG files as they are (no second JPEG loss)
unless they are resized; every frame is decoded once to check it. Shards are written in parallel
with a progress bar; at the end a summary lists every video that was skipped and why, and every
video that decoded only partly (stored with the frames that decode); ``convert`` returns them.
"""

import multiprocessing
import os
import sys


def shard_paths(prefix, num_shards):
    return [f"{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]


def _resize(frames, short_side):
    import tensorflow as tf

    height, width = frames.shape[1:3]
    scale = short_side / min(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return tf.cast(tf.round(tf.image.resize(frames, size)), tf.uint8).numpy()


def _write_item(writer, item, short_side, quality, repaired):
    import tensorflow as tf

    from keras_v4d.data.tfrecord import encode_example, encode_jpeg_example
    from keras_v4d.data.video_io import read_all_frames, read_rawframe_folder

    kind, source, label, video_id, num_frames, template, start_index = item
    if kind == "rawframes":
        jpegs, _ = read_rawframe_folder(source, num_frames, template, start_index)
        if not short_side:
            writer.write(encode_jpeg_example(jpegs, label, video_id))
            return
        frames = tf.stack([tf.io.decode_jpeg(data, channels=3) for data in jpegs]).numpy()
    else:
        frames, repair = read_all_frames(source, with_repair=True)
        if repair is not None:
            repaired.append((video_id, *repair))
    if short_side:
        frames = _resize(frames, short_side)
    writer.write(encode_example(frames, label, video_id, quality))


def write_shard(job):
    """Writes one shard; returns (written ids, [(id, reason)] skipped, [(id, decoded, claimed)] repaired).

    Runs in a worker process.
    """
    import tensorflow as tf

    from keras_v4d.data.video_io import VideoReadError

    path, items, short_side, quality, progress = job
    written, skipped, repaired = [], [], []
    with tf.io.TFRecordWriter(path) as writer:
        for item in items:
            video_id = item[3]
            try:
                _write_item(writer, item, short_side, quality, repaired)
                written.append(video_id)
            except VideoReadError as error:
                skipped.append((video_id, str(error)))
            except Exception as error:  # noqa: BLE001 - one bad video must not stop a conversion
                skipped.append((video_id, f"cannot be converted ({type(error).__name__}: {error})"))
            if progress is not None:
                progress.put(1)
    return written, skipped, repaired


def _items(videos):
    from keras_v4d.data.sources import RawFrames

    if isinstance(videos, RawFrames):
        return [("rawframes", d, label, video_id, n, videos.template, videos.start_index)
                for d, n, label, video_id in zip(videos.dirs, videos.num_frames, videos.labels, videos.ids)]
    return [("video", p, label, video_id, None, None, None)
            for p, label, video_id in zip(videos.paths, videos.labels, videos.ids)]


def convert(videos, output, num_shards=8, workers=1, short_side=None, jpeg_quality=90, progress_bar=True,
            with_repaired=False):
    """Writes ``videos`` (``VideoFiles`` or ``RawFrames``) to ``num_shards`` TFRecord shards at ``output``.

    Returns ``(shard paths, written ids, [(id, reason)] skipped)``, and with ``with_repaired`` also
    ``[(id, frames decoded, frames claimed)]`` for the videos stored with only the frames that decode.
    """
    from tqdm import tqdm

    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    num_shards = max(1, min(num_shards, len(videos)))
    paths = shard_paths(output, num_shards)
    items = _items(videos)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        queue = manager.Queue()
        jobs = [(path, items[i::num_shards], short_side, jpeg_quality, queue) for i, path in enumerate(paths)]
        with context.Pool(min(workers, num_shards)) as pool:
            pending = pool.map_async(write_shard, jobs)
            with tqdm(total=len(items), desc="videos", unit="video", disable=not progress_bar, file=sys.stderr) as bar:
                for _ in range(len(items)):
                    queue.get()
                    bar.update(1)
            results = pending.get()
    written = [video_id for shard_written, _, _ in results for video_id in shard_written]
    skipped = [entry for _, shard_skipped, _ in results for entry in shard_skipped]
    repaired = [entry for _, _, shard_repaired in results for entry in shard_repaired]
    return (paths, written, skipped, repaired) if with_repaired else (paths, written, skipped)
