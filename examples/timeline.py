"""A timeline of a long video: V4D trained on the order-of-events demo (examples/order_of_events.py),
then ``keras-v4d predict --timeline`` on one long video made of demo videos played one after another.

Each episode is one demo video (three shapes in one of the 6 orders, 2.2–3.2 s); the timeline's
windows are about one episode long, so a window that lies within an episode should name its order,
and one that straddles two sees the end of one and the start of the next. The script trains the
demo's V4D ResNet18 (seed 0, the demo's recipe), saves it as a training run would (``last.keras``,
``settings.json``, class names), writes the long video, runs the command-line tool on it and
prints, per episode, its order and the top class of the windows inside it. The tool writes the CSV,
JSON and PNG; the PNG is copied to ``--output_dir``.

Run: ``python examples/timeline.py [--episodes 8] [--output_dir docs]``.
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import order_of_events as demo  # sets the backend and TensorFlow's logging first

# isort: split
import numpy as np

from keras_v4d.sampling import VideoSampling, write_settings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--hop", type=float, default=0.2, help="seconds between windows")
    parser.add_argument("--output_dir", default=demo.DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    training = argparse.Namespace(epochs=args.epochs, lr=0.02, batch_size=8, width=0.25)
    with tempfile.TemporaryDirectory() as folder:
        train_list = demo.write_dataset(os.path.join(folder, "train"), 32, seed=[0, 1])
        model = demo.train("v4d", 4, train_list, training, seed=0)
        run = os.path.join(folder, "run")
        os.makedirs(run)
        model.save(os.path.join(run, "last.keras"))
        # the demo's sampling: 4 units of 2 frames at stride 2; tested on 8 units, one 32² crop of the short side 36
        sampling = VideoSampling(train_units=4, frames_per_unit=2, stride=2, crop_size=32, short_side=36,
                                 test_num_units=demo.TEST_UNITS, test_crop_size=32, test_num_crops=1)
        write_settings(run, sampling, demo.CLASS_NAMES)
        rng = np.random.default_rng([0, 3])
        orders = rng.permutation(np.arange(args.episodes) % len(demo.ORDERS))
        clips = [demo.make_video(demo.ORDERS[o], rng) for o in orders]
        video = os.path.join(folder, "episodes.mp4")
        demo.write_mp4(video, np.concatenate(clips))
        bounds = np.cumsum([0] + [len(c) for c in clips]) / 25.0
        window = float(np.mean([len(c) for c in clips])) / 25.0
        out = os.path.join(folder, "timelines")
        command = [sys.executable, "-m", "keras_v4d.cli", "predict", f"--checkpoint={run}/last.keras", "--timeline",
                   f"--window={window:.2f}", f"--hop={args.hop}", "--top_k=3", f"--output_dir={out}", video]
        print("$ keras-v4d " + " ".join(command[3:]).replace(folder + "/", ""), flush=True)
        subprocess.run(command, check=True)
        with open(os.path.join(out, "episodes.timeline.csv")) as handle:
            rows = list(csv.DictReader(handle))
        right = inside = 0
        for e, order in enumerate(orders):
            within = [r["class1"] for r in rows
                      if float(r["start_s"]) >= bounds[e] - 1e-6 and float(r["end_s"]) <= bounds[e + 1] + 1e-6]
            right += sum(name == demo.CLASS_NAMES[order] for name in within)
            inside += len(within)
            print(f"episode {e + 1} ({bounds[e]:.1f}–{bounds[e + 1]:.1f} s) {demo.CLASS_NAMES[order]}: "
                  f"{len(within)} window(s) inside, top class {', '.join(sorted(set(within))) or '-'}")
        print(f"{right} of the {inside} windows that lie within one episode name its order; "
              f"{len(rows)} windows in all")
        os.makedirs(args.output_dir, exist_ok=True)
        picture = os.path.normpath(os.path.join(args.output_dir, "timeline_episodes.png"))
        shutil.copyfile(os.path.join(out, "episodes.timeline.png"), picture)
        print(f"picture: {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
