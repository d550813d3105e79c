"""Videos or rawframe folders + annotation list (or a folder per class) → sharded TFRecords in the
Model Garden format.

    python -m keras_v4d.cli.convert_data --annotations train.txt --root videos/ \
        --output records/train --num_shards 8 --workers 2 [--short_side 256]
    python -m keras_v4d.cli.convert_data --annotations train_rawframes.txt --root rawframes/ \
        --output records/train [--frame_template img_{:05d}.jpg --frame_start 1]

A rawframe list (``frame_dir total_frames label`` lines, TSN / MMAction2) is recognised from its
first entry (or say so with ``--source_format rawframes``). At the end a summary lists every video
that was skipped and why, and every video stored with only the frames that decode (repaired).
Exit code 1 if any video was skipped, 0 otherwise.
"""

import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("annotations", None, "Annotation list: 'relative/path label' per line (video files) "
                    "or 'frame_dir total_frames label' (rawframes).")
flags.DEFINE_string("root", None, "Folder the annotation paths are relative to (default: the list's folder).")
flags.DEFINE_string("videos", None, "Instead of --annotations: a folder with one sub-folder per class.")
flags.DEFINE_string("output", None, "Output prefix: shards are written as PREFIX-00000-of-00008.tfrecord.")
flags.DEFINE_integer("num_shards", 8, "Number of shards.")
flags.DEFINE_integer("workers", os.cpu_count() or 1, "Parallel worker processes.")
flags.DEFINE_integer("short_side", None, "Resize frames so their short side is this (keeps aspect).")
flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of the stored frames.")
flags.DEFINE_enum("source_format", None, ["videos", "rawframes"],
                  "What --annotations lists (default: recognised from its first entry).")
flags.DEFINE_string("frame_template", "img_{:05d}.jpg", "Rawframes: frame file names ('{:05d}' or '%05d' form).")
flags.DEFINE_integer("frame_start", 1, "Rawframes: number of the first frame file.")


def main(argv):
    del argv
    from keras_v4d.data.convert import convert
    from keras_v4d.data.sources import list_format, read_annotations, read_class_folders, read_rawframe_annotations

    if bool(FLAGS.annotations) == bool(FLAGS.videos):
        print("error: give exactly one of --annotations or --videos", file=sys.stderr)
        return 2
    if not FLAGS.output:
        print("error: --output is required", file=sys.stderr)
        return 2
    try:
        if FLAGS.annotations and (FLAGS.source_format or list_format(FLAGS.annotations)) == "rawframes":
            videos = read_rawframe_annotations(FLAGS.annotations, FLAGS.root, template=FLAGS.frame_template,
                                               start_index=FLAGS.frame_start)
        elif FLAGS.annotations:
            videos = read_annotations(FLAGS.annotations, FLAGS.root)
        else:
            videos = read_class_folders(FLAGS.videos)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not len(videos):
        print("error: the source lists no videos", file=sys.stderr)
        return 2
    paths, written, skipped, repaired = convert(videos, FLAGS.output, FLAGS.num_shards, FLAGS.workers,
                                                FLAGS.short_side, FLAGS.jpeg_quality, with_repaired=True)
    if videos.class_names:
        with open(f"{FLAGS.output}-classes.txt", "w", encoding="utf-8") as handle:
            handle.write("\n".join(videos.class_names) + "\n")
    print(f"wrote {len(written)} video(s) to {len(paths)} shard(s) at {FLAGS.output}-*.tfrecord")
    print(f"skipped {len(skipped)} video(s)" + "".join(f"\n  {vid}: {reason}" for vid, reason in skipped))
    if repaired:
        print(f"repaired {len(repaired)} video(s) (stored with the frames that decode; decoded / claimed)"
              + "".join(f"\n  {vid}: {decoded} / {claimed}" for vid, decoded, claimed in repaired))
    return 1 if skipped else 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
