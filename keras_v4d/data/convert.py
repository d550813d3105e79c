"""Videos + annotation list → sharded TFRecords in the Model Garden video format.

    python -m keras_v4d.data.convert --annotations train.txt --root videos/ \
        --output records/train --num_shards 8 --workers 2 [--short_side 256]

Each video is decoded once, optionally resized so its short side is ``--short_side``, and every
frame is stored as a JPEG. Shards are written in parallel with a progress bar; at the end a
summary lists every video that was skipped and why. Exit code 1 if any video was skipped.
"""

import multiprocessing
import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("annotations", None, "Annotation list: 'relative/path label' per line.")
flags.DEFINE_string("root", None, "Folder the annotation paths are relative to (default: the list's folder).")
flags.DEFINE_string("videos", None, "Instead of --annotations: a folder with one sub-folder per class.")
flags.DEFINE_string("output", None, "Output prefix: shards are written as PREFIX-00000-of-00008.tfrecord.")
flags.DEFINE_integer("num_shards", 8, "Number of shards.")
flags.DEFINE_integer("workers", os.cpu_count() or 1, "Parallel worker processes.")
flags.DEFINE_integer("short_side", None, "Resize frames so their short side is this (keeps aspect).")
flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of the stored frames.")


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


def main(argv):
    del argv
    from keras_v4d.data.sources import read_annotations, read_class_folders

    if bool(FLAGS.annotations) == bool(FLAGS.videos):
        print("error: give exactly one of --annotations or --videos", file=sys.stderr)
        return 2
    if not FLAGS.output:
        print("error: --output is required", file=sys.stderr)
        return 2
    try:
        videos = (read_annotations(FLAGS.annotations, FLAGS.root) if FLAGS.annotations
                  else read_class_folders(FLAGS.videos))
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    paths, written, skipped = convert(videos, FLAGS.output, FLAGS.num_shards, FLAGS.workers,
                                      FLAGS.short_side, FLAGS.jpeg_quality)
    if videos.class_names:
        with open(f"{FLAGS.output}-classes.txt", "w", encoding="utf-8") as handle:
            handle.write("\n".join(videos.class_names) + "\n")
    print(f"wrote {len(written)} video(s) to {len(paths)} shard(s) at {FLAGS.output}-*.tfrecord")
    print(f"skipped {len(skipped)} video(s)" + "".join(f"\n  {vid}: {reason}" for vid, reason in skipped))
    return 1 if skipped else 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
