"""Top-k classes of video files with video-level inference (Algorithm 1, multi-crop).

    keras-v4d predict --checkpoint runs/v4d/last.keras video1.mp4 video2.webm

    keras-v4d predict --checkpoint runs/v4d/last.keras --timeline --window 10 --hop 1 match.mp4

Sampling flags default to the checkpoint's saved settings; class names come from --class_names,
else the registry entry of a weights tag or the run's ``settings.json`` beside the checkpoint. A
video that cannot be read is reported with its path and the others are still predicted; the exit
code is then 1 (2 for bad flags or a missing checkpoint).

--timeline answers "what happens when" in a long video: windows of about --window seconds every
--hop seconds, each with the test protocol (the probabilities of predicting that window alone),
units shared between windows, the video decoded as a stream. It writes NAME.timeline.csv, .json
and .png per video into --output_dir and prints their paths.

--stream URL follows a live source (rtsp://, http(s)://, udp://, tcp://, a camera device, a file):
one JSON line per window on stdout as soon as the window's last unit has arrived —
{"segment", "start", "end" (stream seconds), "mode", "latency_s", "lag_s", "skipped", "top": [{"class",
"probability"}]} — and one line per event ({"event": "stall" | "gap" | "segment" | "behind" | "end",
"message", "segment", "time"}); messages go to stderr, and --append FILE appends the same lines to
FILE. The mode defaults to all_units (the one that keeps up on a CPU; --mode combinations for
Algorithm 1). Windows more than --max_lag seconds behind the stream are skipped (--on_behind keep
runs them all, later and later). A connection that ends is reopened with backoff (--noreconnect to
stop instead); with no frame for --stall_timeout seconds a stall line is written and the tool waits
(--on_stall exit: it exits with code 1). Ctrl-C and SIGTERM end it cleanly (exit codes 130 and 143)
with every line written whole.

    keras-v4d predict --checkpoint runs/v4d/last.keras --stream rtsp://camera.local/stream --window 10 --hop 1
"""

import json
import sys

from absl import flags

from keras_v4d.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_NOT_WRITTEN,
    CommandError,
    define_inference_flags,
    load_inference_model,
    output_lock,
    run,
    unique_stem,
    until_stopped,
)

FLAGS = flags.FlagValues()
define_inference_flags(FLAGS)
flags.DEFINE_integer("top_k", 5, "Classes listed per video.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_bool("json", False, "Print one JSON object per video instead of a table.", flag_values=FLAGS)
flags.DEFINE_bool("timeline", False, "Class probabilities over time (windows every --hop seconds) as CSV, JSON and "
                  "PNG files in --output_dir, instead of one answer per video.", flag_values=FLAGS)
flags.DEFINE_float("window", 10.0, "--timeline: seconds per window (rounded to whole unit steps).", lower_bound=0.001,
                   flag_values=FLAGS)
flags.DEFINE_float("hop", 1.0, "--timeline: seconds between window starts (rounded to whole unit steps).",
                   lower_bound=0.001, flag_values=FLAGS)
flags.DEFINE_string("output_dir", "timelines", "--timeline: folder for the CSV, JSON and PNG files.",
                    flag_values=FLAGS)
flags.DEFINE_string("stream", None, "A live source (a URL FFmpeg opens, a camera device or a file): one JSON line "
                    "per window of --window seconds every --hop seconds, as it arrives.", flag_values=FLAGS)
flags.DEFINE_float("stall_timeout", 10.0, "--stream: seconds without a frame before a stall is reported.",
                   lower_bound=0.001, flag_values=FLAGS)
flags.DEFINE_enum("on_stall", "wait", ["wait", "exit"], "--stream: after a stall, keep waiting or exit (code 1).",
                  flag_values=FLAGS)
flags.DEFINE_bool("reconnect", True, "--stream: reopen a source whose connection ends (with backoff).",
                  flag_values=FLAGS)
flags.DEFINE_float("stream_fps", None, "--stream: the source's frame rate when it does not say.", lower_bound=0.001,
                   flag_values=FLAGS)
flags.DEFINE_float("max_lag", 10.0, "--stream: seconds a window may be behind the stream when it is given; over "
                   "it a behind line is written (see --on_behind).", lower_bound=0.001, flag_values=FLAGS)
flags.DEFINE_enum("on_behind", "skip", ["skip", "keep"], "--stream: windows over --max_lag behind are skipped "
                  "(each line counts those skipped before it), or all kept, later and later.", flag_values=FLAGS)
flags.DEFINE_string("append", None, "--stream: also append the JSON lines to this file.", flag_values=FLAGS)


def main(argv):
    from keras_v4d.data import MAX_FRAME_PIXELS
    from keras_v4d.inference.prediction import predict_videos

    videos = argv[1:]
    if FLAGS.stream:
        if videos or FLAGS.timeline:
            raise CommandError("--stream follows one source: give no video files and no --timeline with it")
        model, class_names, sampling = load_inference_model(FLAGS)
        return _stream(model, sampling, class_names)
    if not videos:
        raise CommandError("give one or more video files: keras-v4d predict --checkpoint C VIDEO...")
    model, class_names, sampling = load_inference_model(FLAGS)
    print(f"sampling: train_units={sampling.train_units} num_units={sampling.test_num_units} "
          f"frames_per_unit={sampling.frames_per_unit} stride={sampling.stride} crop_size={sampling.test_crop} "
          f"short_side={sampling.short_side} num_crops={sampling.test_num_crops}", file=sys.stderr)
    max_frame_pixels = FLAGS.max_frame_pixels or MAX_FRAME_PIXELS
    if FLAGS.timeline:
        with output_lock(FLAGS.output_dir, "predict", "--output_dir"):
            return _timelines(model, videos, sampling, class_names, max_frame_pixels)
    failed = 0
    for path, best, error in predict_videos(model, videos, sampling, mode=FLAGS.mode, class_names=class_names,
                                            top_k=FLAGS.top_k, max_frame_pixels=max_frame_pixels):
        if error is not None:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
        elif FLAGS.json:
            print(json.dumps({"video": path, "top": [{"class": c, "probability": p} for c, p in best]}))
        else:
            print(path)
            for rank, (name, probability) in enumerate(best, 1):
                print(f"  {rank}. {100 * probability:5.1f}%  {name}")
    if failed:
        print(f"{failed} of {len(videos)} video(s) could not be read", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def _timelines(model, videos, sampling, class_names, max_frame_pixels):
    import os

    from keras_v4d.data import VideoReadError
    from keras_v4d.inference.timeline import video_timeline, write_timeline
    from keras_v4d.records.atomic import write_failure

    failed, names = 0, set()
    for path in videos:
        try:
            timeline = video_timeline(model, path, sampling, window=FLAGS.window, hop=FLAGS.hop, mode=FLAGS.mode,
                                      class_names=class_names, max_frame_pixels=max_frame_pixels)
        except (VideoReadError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        name = unique_stem(path, names)
        try:
            paths = write_timeline(timeline, os.path.join(FLAGS.output_dir, name), top_k=FLAGS.top_k)
        except OSError as error:
            raise CommandError(f"--output_dir {FLAGS.output_dir}: the timeline of {path} cannot be written "
                               f"({write_failure(error)})", EXIT_NOT_WRITTEN) from None
        grid = timeline.grid
        print(f"{path}: {len(timeline.starts)} windows of {grid.window_frames / timeline.fps:.2f} s every "
              f"{grid.hop_frames / timeline.fps:.2f} s ({timeline.units_run} units through the 3D part)")
        for kind in ("csv", "json", "png"):
            print(f"  {kind}: {paths[kind]}")
    if failed:
        print(f"{failed} of {len(videos)} video(s) could not be read", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0



def _window_line(window, class_names):
    from keras_v4d.records.class_names import top_classes

    top = top_classes(window.probabilities, class_names, FLAGS.top_k)
    return {"segment": window.segment, "start": round(window.start, 3), "end": round(window.end, 3),
            "mode": window.mode, "latency_s": round(window.latency, 3),
            "lag_s": None if window.lag is None else round(window.lag, 3), "skipped": window.skipped,
            "top": [{"class": name, "probability": round(float(p), 6)} for name, p in top]}


def _stream(model, sampling, class_names):
    """--stream: JSON lines as the source arrives (``inference.live``)."""
    from keras_v4d.data import VideoReadError
    from keras_v4d.inference.live import LIVE_MODE, LiveSource, LiveWindow, StreamStalled, live_timeline
    from keras_v4d.records.atomic import write_failure

    try:
        appended = open(FLAGS.append, "a", encoding="utf-8") if FLAGS.append else None
    except OSError as error:
        raise CommandError(f"--append {FLAGS.append}: cannot be written ({write_failure(error)})",
                           EXIT_NOT_WRITTEN) from None

    def emit(document):
        line = json.dumps(document) + "\n"
        sys.stdout.write(line)
        sys.stdout.flush()
        if appended:
            appended.write(line)
            appended.flush()

    def follow():
        follow = LiveSource(fps=FLAGS.stream_fps, stall_timeout=FLAGS.stall_timeout, on_stall=FLAGS.on_stall,
                            reconnect=FLAGS.reconnect, max_lag=FLAGS.max_lag, on_behind=FLAGS.on_behind)
        for item in live_timeline(model, FLAGS.stream, sampling, window=FLAGS.window, hop=FLAGS.hop,
                                  mode=FLAGS.mode if FLAGS["mode"].present else LIVE_MODE, follow=follow):
            if isinstance(item, LiveWindow):
                emit(_window_line(item, class_names))
            else:
                print(f"{item.kind}: {item.message}", file=sys.stderr, flush=True)
                emit({"event": item.kind, "message": item.message, "segment": item.segment, "time": item.time})

    try:
        until_stopped(follow, "every line written is whole")
    except StreamStalled as error:
        raise CommandError(f"--stream {FLAGS.stream}: {error}", EXIT_BAD_INPUT) from None
    except VideoReadError as error:
        raise CommandError(f"--stream: {error}") from None
    finally:
        if appended:
            appended.close()
    return 0


if __name__ == "__main__":
    run("predict", main, FLAGS, __doc__)
