"""A timeline of a long video: ``keras-v4d predict --timeline`` on a video of episodes of known classes.

The classes are the colour of a patch over a noisy background (red, green, blue). The script trains
a V4D ResNet18 (width 0.25, 4 units of 2 frames at 32²) on short clips of each colour, saves it as a
training run would (``last.keras``, ``settings.json`` with the sampling and the class names), writes
one long H.264 video of episodes in changing colours (3 s each), runs the command-line tool on it
and prints, per episode, the top class of the windows that lie within it. The tool writes the CSV,
JSON and PNG; the PNG is copied to ``--output_dir``. The test of the timeline
(tests/inference/test_timeline.py) uses the same clips, model and video.

Run: ``python examples/timeline.py [--output_dir DIR]``: the picture goes to the current folder unless
``--output_dir`` says otherwise (``--output_dir docs`` from the repository's root regenerates the guide's
figure).
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_v4d  # noqa: F401  (before TensorFlow: oneDNN on where TensorFlow leaves it off)

# isort: split
import keras
import numpy as np
import tensorflow as tf

from keras_v4d.data import eval_transform, write_video
from keras_v4d.models import build_resnet3d
from keras_v4d.records.run_files import write_settings
from keras_v4d.records.sampling import VideoSampling

FPS = 25
CLASS_NAMES = ["red", "green", "blue"]
COLOURS = ((220, 40, 40), (40, 200, 60), (60, 90, 240))
SAMPLING = VideoSampling(train_units=4, frames_per_unit=2, stride=2, crop_size=32, short_side=32, test_num_units=8,
                         test_num_crops=1)
EPISODES = (1, 0, 2, 0, 1, 2)  # green, red, blue, red, green, blue
EPISODE_SECONDS = 3.0
DEFAULT_OUTPUT = "."  # where the user runs it; the guide's figures: --output_dir docs


def colour_clip(rng, label, frames):
    """``frames`` 48×36 frames of noise with a patch of class ``label``'s colour (uint8)."""
    clip = rng.integers(60, 120, (frames, 36, 48, 3)).astype(np.int64)
    top, left = rng.integers(0, 12), rng.integers(0, 20)
    clip[:, top:top + 24, left:left + 28] = COLOURS[label]
    return (clip + rng.integers(-20, 20, clip.shape)).clip(0, 255).astype(np.uint8)


def train_colour_model(seed=0, videos=48, epochs=8):
    """A V4D ResNet18 (width 0.25) trained on ``videos`` clips of ``SAMPLING``'s units to name the colour."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    labels = np.arange(videos) % len(COLOURS)
    units, frames, size = SAMPLING.train_units, SAMPLING.frames_per_unit, SAMPLING.crop_size
    clips = np.stack([colour_clip(rng, c, units * frames) for c in labels])
    x = eval_transform(tf.constant(clips.reshape((-1,) + clips.shape[2:])), size, SAMPLING.short_side)
    x = keras.ops.convert_to_numpy(x).reshape(videos, units, frames, size, size, 3)
    model = build_resnet3d(18, "v4d", classes=len(COLOURS), input_shape=(None, frames, None, None, 3), width=0.25)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, labels, batch_size=8, epochs=epochs, verbose=0)
    return model


def save_run(model, folder):
    """``folder/last.keras`` with ``settings.json`` (the sampling, the class names) beside it; → its path."""
    os.makedirs(folder, exist_ok=True)
    model.save(os.path.join(folder, "last.keras"))
    write_settings(folder, SAMPLING, CLASS_NAMES)
    return os.path.join(folder, "last.keras")


def write_episodes(path, episodes=EPISODES, seconds=EPISODE_SECONDS, seed=5):
    """One video of ``episodes`` (class labels), ``seconds`` each, at ``FPS``; returns ``path``."""
    rng = np.random.default_rng(seed)
    frames = int(round(seconds * FPS))
    write_video(path, np.concatenate([colour_clip(rng, c, frames) for c in episodes]), fps=FPS)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=1.0, help="seconds per window")
    parser.add_argument("--hop", type=float, default=0.25, help="seconds between windows")
    parser.add_argument("--output_dir", default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = save_run(train_colour_model(), os.path.join(folder, "run"))
        video = write_episodes(os.path.join(folder, "episodes.mp4"))
        out = os.path.join(folder, "timelines")
        command = [sys.executable, "-m", "keras_v4d.cli", "predict", f"--checkpoint={checkpoint}", "--timeline",
                   f"--window={args.window}", f"--hop={args.hop}", "--top_k=3", f"--output_dir={out}", video]
        print("$ keras-v4d " + " ".join(command[3:]).replace(folder + "/", ""), flush=True)
        subprocess.run(command, check=True)
        with open(os.path.join(out, "episodes.timeline.csv")) as handle:
            rows = list(csv.DictReader(handle))
        right = inside = 0
        for e, label in enumerate(EPISODES):
            begin, end = e * EPISODE_SECONDS, (e + 1) * EPISODE_SECONDS
            within = [r["class1"] for r in rows if float(r["start_s"]) >= begin and float(r["end_s"]) <= end + 1e-6]
            right += within.count(CLASS_NAMES[label])
            inside += len(within)
            print(f"episode {e + 1} ({begin:.0f}–{end:.0f} s, {CLASS_NAMES[label]}): {len(within)} windows inside, "
                  f"top class {', '.join(sorted(set(within))) or '-'}")
        print(f"{right} of the {inside} windows that lie within one episode name its class; {len(rows)} windows in all")
        os.makedirs(args.output_dir, exist_ok=True)
        picture = os.path.normpath(os.path.join(args.output_dir, "timeline_episodes.png"))
        shutil.copyfile(os.path.join(out, "episodes.timeline.png"), picture)
        print(f"picture: {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
