r"""Videos or rawframe folders + annotation list (or a folder per class) → sharded TFRecords in the
Model Garden format.

    keras-v4d convert-data --annotations train.txt --root videos/ \
        --output records/train --num_shards 8 --workers 2 [--short_side 256]
    keras-v4d convert-data --annotations train_rawframes.txt --root rawframes/ \
        --output records/train [--frame_template img_{:05d}.jpg --frame_start 1]

A rawframe list (``frame_dir total_frames label`` lines, TSN / MMAction2) is recognised from its
first entry (or say so with ``--source_format rawframes``). At the end a summary lists every video
that was skipped and why, and every video stored with only the frames that decode (repaired).

The shards are renamed into place only as a whole set: a conversion that fails or is stopped leaves
the earlier shards at --output as they were. Shards of an earlier run with another --num_shards are
removed once the new set is complete (said on stderr).

Exit code 0, or 1 if any video was skipped; 2 for bad flags or an output folder that cannot be
made; 4 when the shards could not be written (a shard that cannot be written, a worker process that
died, e.g. killed for memory: the message names the shards); 130 on Ctrl-C, 143 on SIGTERM (the
workers are stopped).
"""

import os

from absl import flags

from keras_v4d.cli.common import (
    EXIT_BAD_ARGUMENTS,
    EXIT_BAD_INPUT,
    EXIT_NOT_WRITTEN,
    CommandError,
    output_lock,
    run,
    until_stopped,
)

FLAGS = flags.FlagValues()
flags.DEFINE_string("annotations", None, "Annotation list: 'relative/path label' per line (video files) "
                    "or 'frame_dir total_frames label' (rawframes).", flag_values=FLAGS)
flags.DEFINE_string("root", None, "Folder the annotation paths are relative to (default: the list's folder).",
                    flag_values=FLAGS)
flags.DEFINE_string("videos", None, "Instead of --annotations: a folder with one sub-folder per class.",
                    flag_values=FLAGS)
flags.DEFINE_string("output", None, "Output prefix: shards are written as PREFIX-00000-of-00008.tfrecord.",
                    flag_values=FLAGS)
flags.DEFINE_integer("num_shards", 8, "Number of shards.", flag_values=FLAGS)
flags.DEFINE_integer("workers", os.cpu_count() or 1, "Parallel worker processes.", flag_values=FLAGS)
flags.DEFINE_integer("short_side", None, "Resize frames so their short side is this (keeps aspect).", flag_values=FLAGS)
flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of the stored frames.", flag_values=FLAGS)
flags.DEFINE_enum("source_format", None, ["videos", "rawframes"],
                  "What --annotations lists (default: recognised from its first entry).", flag_values=FLAGS)
flags.DEFINE_string("frame_template", "img_{:05d}.jpg", "Rawframes: frame file names ('{:05d}' or '%05d' form).",
                    flag_values=FLAGS)
flags.DEFINE_integer("frame_start", 1, "Rawframes: number of the first frame file.", flag_values=FLAGS)


def _convert():
    from keras_v4d.data.convert import ConversionError, convert
    from keras_v4d.data.sources import list_format, read_annotations, read_class_folders, read_rawframe_annotations
    from keras_v4d.records.atomic import open_atomically

    try:
        if FLAGS.annotations and (FLAGS.source_format or list_format(FLAGS.annotations)) == "rawframes":
            videos = read_rawframe_annotations(FLAGS.annotations, FLAGS.root, template=FLAGS.frame_template,
                                               start_index=FLAGS.frame_start)
        elif FLAGS.annotations:
            videos = read_annotations(FLAGS.annotations, FLAGS.root)
        else:
            videos = read_class_folders(FLAGS.videos)
    except (OSError, ValueError) as error:
        raise CommandError(str(error), EXIT_BAD_ARGUMENTS) from None
    if not len(videos):
        raise CommandError("the source lists no videos")
    folder = os.path.dirname(os.path.abspath(FLAGS.output))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise CommandError(f"--output: cannot create the folder {folder} ({error.strerror or error})") from None
    if not os.access(folder, os.W_OK):
        raise CommandError(f"--output: the folder {folder} is not writable")
    try:
        paths, written, skipped, repaired = convert(videos, FLAGS.output, FLAGS.num_shards, FLAGS.workers,
                                                    FLAGS.short_side, FLAGS.jpeg_quality, with_repaired=True)
    except ConversionError as error:
        raise CommandError(str(error), EXIT_NOT_WRITTEN) from None
    if videos.class_names:
        classes = f"{FLAGS.output}-classes.txt"
        try:
            with open_atomically(classes, "w", encoding="utf-8") as handle:
                handle.write("\n".join(videos.class_names) + "\n")
        except OSError as error:
            raise CommandError(f"cannot write {classes}: {error.strerror or error}", EXIT_NOT_WRITTEN) from None
    print(f"wrote {len(written)} video(s) to {len(paths)} shard(s) at {FLAGS.output}-*.tfrecord")
    print(f"skipped {len(skipped)} video(s)" + "".join(f"\n  {vid}: {reason}" for vid, reason in skipped))
    if repaired:
        print(f"repaired {len(repaired)} video(s) (stored with the frames that decode; decoded / claimed)"
              + "".join(f"\n  {vid}: {decoded} / {claimed}" for vid, decoded, claimed in repaired))
    return EXIT_BAD_INPUT if skipped else 0


def main(argv):
    if len(argv) > 1:
        raise CommandError(f"unexpected arguments {argv[1:]}")
    if bool(FLAGS.annotations) == bool(FLAGS.videos):
        raise CommandError("give exactly one of --annotations or --videos")
    if not FLAGS.output:
        raise CommandError("--output is required")
    # One conversion per folder; SIGTERM unwinds the conversion, which stops its workers on the way out.
    with output_lock(os.path.dirname(os.path.abspath(FLAGS.output)), "convert-data", "--output"):
        return until_stopped(_convert, f"the workers were stopped; shards are renamed into place only as a whole "
                                       f"set, so {FLAGS.output}-*.tfrecord is as it was")


if __name__ == "__main__":
    run("convert-data", main, FLAGS, __doc__)
