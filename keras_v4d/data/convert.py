"""Videos + annotation list → sharded TFRecords in the Model Garden video format.

    convert(read_annotations("train.txt"), "records/train", num_shards=8, workers=2)

(command line: ``python -m keras_v4d.cli.convert_data``).

Each video is decoded once, optionally resized so its short side is ``--short_side``, and every
frame is stored as a JPEG. Shards are written in parallel with a progress bar; at the end a
summary lists every video that was skipped and why; ``convert`` returns them.
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


def write_shard(job):
    """Writes one shard; returns (written ids, [(id, reason)] skipped). Runs in a worker process."""
    import tensorflow as tf

    from keras_v4d.data.tfrecord import encode_example
    from keras_v4d.data.video_io import VideoReadError, read_all_frames

    path, items, short_side, quality, progress = job
    written, skipped = [], []
    with tf.io.TFRecordWriter(path) as writer:
        for video_path, label, video_id in items:
            try:
                frames = read_all_frames(video_path)
                if short_side:
                    frames = _resize(frames, short_side)
                writer.write(encode_example(frames, label, video_id, quality))
                written.append(video_id)
            except VideoReadError as error:
                skipped.append((video_id, str(error)))
            if progress is not None:
                progress.put(1)
    return written, skipped


def convert(videos, output, num_shards=8, workers=1, short_side=None, jpeg_quality=90, progress_bar=True):
    """Writes ``videos`` (a ``VideoFiles``) to ``num_shards`` TFRecord shards at ``output``.

    Returns ``(shard paths, written ids, [(id, reason)] skipped)``.
    """
    from tqdm import tqdm

    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    num_shards = max(1, min(num_shards, len(videos)))
    paths = shard_paths(output, num_shards)
    items = list(zip(videos.paths, videos.labels, videos.ids))
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
    written = [video_id for shard_written, _ in results for video_id in shard_written]
    skipped = [entry for _, shard_skipped in results for entry in shard_skipped]
    return paths, written, skipped
