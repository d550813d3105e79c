"""End-to-end demo: what V4D learns that clip-level and TSN models cannot — the order of events.

A procedural dataset is written as real H.264 mp4 files: in each video three coloured shapes
(red square, green disc, blue triangle) appear one after another, at varying times, sizes and
positions, with short gaps of background around them; the class is their order (3! = 6
classes). Every single unit shows at most one shape, so a
model that averages over units (TSN) or sees one clip (I3D-S) cannot tell the classes apart;
V4D's 4D blocks see the units' order. The script trains I3D-S, TSN + I3D-S and V4D (ResNet18
structure, 4 units of 2 frames at 32²) through the package's own video-file pipeline, evaluates
them with video-level inference (Algorithm 1, 8 units) and prints a table like V4D Table 2a;
then it repeats V4D §4.4's experiment: the units reversed at test time.

Everything random follows ``--seed``: the videos, the data order, the units' offsets, the random
crops and flips, and the initialisation; two runs print the same table. ``--seeds N`` runs seeds
0..N-1 and prints each table and the mean ± standard deviation (with the range) over the seeds.
It writes two pictures (paths printed): the units sampled from one test video per class, and a
bar chart of the table.

Run: ``python examples/order_of_events.py [--seed 0 | --seeds 3] [--epochs 20] [--output_dir DIR]``: the
pictures go to the current folder unless ``--output_dir`` says otherwise (``--output_dir docs`` from the
repository's root regenerates the guide's figures).
"""

import argparse
import dataclasses
import itertools
import os
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import av

import keras_v4d  # noqa: F401  (before TensorFlow: oneDNN on where TensorFlow leaves it off)

# isort: split
import keras
import numpy as np
import tensorflow as tf

from keras_v4d import VideoSampling
from keras_v4d.data import DataOptions, read_video_units, video_dataset
from keras_v4d.inference import VideoLevelPredictor, accuracy_metrics, video_level_predict
from keras_v4d.models import build_resnet3d
from keras_v4d.training import compile_for_training

SHAPES = (("red square", (230, 40, 40)), ("green disc", (40, 200, 60)), ("blue triangle", (60, 90, 240)))
ORDERS = list(itertools.permutations(range(3)))
CLASS_NAMES = [" → ".join(SHAPES[i][0].split()[0] for i in order) for order in ORDERS]
SIZE = 48
TEST_UNITS = 8
SAMPLING = VideoSampling(train_units=4, frames_per_unit=2, stride=2, crop_size=32, short_side=36, area_range=(0.6, 1.0),
                         test_num_units=TEST_UNITS, test_crop_size=32, test_num_crops=1)
MODELS = (("I3D-S ResNet18", None, 1), ("TSN+I3D-S ResNet18", None, 4), ("V4D ResNet18", "v4d", 4))
DEFAULT_OUTPUT = "."  # where the user runs it; the guide's figures: --output_dir docs


def shape_mask(kind, centre, radius):
    y, x = np.mgrid[:SIZE, :SIZE]
    dy, dx = y - centre[0], x - centre[1]
    if kind == 0:
        return (np.abs(dy) <= radius) & (np.abs(dx) <= radius)
    if kind == 1:
        return dy**2 + dx**2 <= radius**2
    return (dy <= radius) & (dy >= -radius) & (np.abs(dx) <= (dy + radius) / 2)


def make_video(order, rng):
    """One video: three phases, each showing one shape moving a little over a noisy background.

    Background-only gaps of 2 frames come before, between and after the phases: as long as a
    unit's step from its first to its last frame (stride 2), so no unit sees two shapes (a unit
    that saw red, then green, would tell a clip model part of the order), and every shape appears
    after and before a gap.
    """
    gaps = np.full(4, SAMPLING.stride * (SAMPLING.frames_per_unit - 1))
    shown = int(rng.integers(48, 72))
    cuts = sorted((rng.uniform(0.27, 0.4), rng.uniform(0.6, 0.73)))
    lengths = np.diff([0, int(cuts[0] * shown), int(cuts[1] * shown), shown])
    num_frames = int(gaps.sum() + shown)
    frames = rng.integers(70, 110, (num_frames, SIZE, SIZE, 3)).astype(np.uint8)
    begin = 0
    for phase, kind in enumerate(order):
        begin += gaps[phase]
        radius = rng.uniform(7, 12)
        start = rng.uniform(radius + 2, SIZE - radius - 2, 2)
        velocity = rng.uniform(-0.4, 0.4, 2)
        for t in range(begin, begin + lengths[phase]):
            centre = np.clip(start + velocity * (t - begin), radius, SIZE - radius)
            frames[t][shape_mask(kind, centre, radius)] = SHAPES[kind][1]
        begin += lengths[phase]
    return frames


def yuv420p(rgb):
    """RGB uint8 (H, W, 3) → planar YUV 4:2:0 (BT.601, limited range) as PyAV takes it, ``(H·3/2, W)``
    (converted in NumPy, so the encoder's input is exactly defined)."""
    r, g, b = np.moveaxis(rgb.astype(np.float64), -1, 0)
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = y.shape
    u, v = (c.reshape(h // 2, 2, w // 2, 2).mean((1, 3)).reshape(h // 4, w) for c in (u, v))
    return np.round(np.concatenate([y, u, v])).clip(0, 255).astype(np.uint8)


def write_mp4(path, frames):
    """H.264 (CRF 18, x264 preset veryfast, as ``keras_v4d.data.write_video``), every frame a key
    frame and one thread: with motion prediction, x264 wrote slightly different files in different
    processes from the same frames (in one process it did not), and the demo's videos must not vary."""
    with av.open(path, mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"crf": "18", "preset": "veryfast", "threads": "1",
                          "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0:keyint=1:bframes=0"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(yuv420p(frame), format="yuv420p")))
        container.mux(stream.encode())


def write_dataset(folder, videos_per_class, seed):
    """Writes ``videos_per_class`` mp4 files per class into ``folder``; returns the list file's path."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for label, order in enumerate(ORDERS):
        for i in range(videos_per_class):
            name = f"class{label}_{i:03d}.mp4"
            write_mp4(os.path.join(folder, name), make_video(order, rng))
            lines.append(f"{name} {label}")
    path = os.path.join(folder, "list.txt")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def training_set(train_list, num_units, batch_size, seed):
    """The seeded training pipeline (shuffles, units' offsets, crops and flips all follow ``seed``)."""
    sampling = dataclasses.replace(SAMPLING, train_units=num_units)
    videos, info = video_dataset(train_list, sampling, training=True, batch_size=batch_size, num_classes=len(ORDERS),
                                 options=DataOptions(seed=seed), with_info=True)
    steps = info.num_videos // batch_size
    # Every generated video decodes, so an epoch is exactly `steps` batches: said up front, Keras
    # knows the epoch's length from the first epoch on.
    return videos.apply(tf.data.experimental.assert_cardinality(steps)), steps


def train(block4d, num_units, train_list, args, seed):
    keras.utils.set_random_seed(seed)  # the initialisation
    model = build_resnet3d(18, block4d, classes=len(ORDERS), input_shape=(None, 2, 32, 32, 3), width=args.width)
    dataset, steps = training_set(train_list, num_units, args.batch_size, seed)
    compile_for_training(model, steps, base_lr=args.lr, weight_decay=1e-4,
                         decay_epochs=(int(args.epochs * 0.6), int(args.epochs * 0.85)))
    model.fit(dataset, epochs=args.epochs, verbose=0, shuffle=False)  # the dataset shuffles itself (seeded)
    return model


def evaluate(model, train_units, test_list, reverse=False):
    """Top-1 (%) and the predicted class of each test video (list order)."""
    videos = video_dataset(test_list, SAMPLING, training=False, batch_size=16, num_classes=len(ORDERS))
    predictor = VideoLevelPredictor(model)
    labels, scores = [], []
    for views, y, _ in videos:
        views = views.numpy()[:, :, ::-1] if reverse else views.numpy()
        scores.append(keras.ops.convert_to_numpy(video_level_predict(model, views, train_units, predictor=predictor)))
        labels.append(y.numpy())
    scores = np.concatenate(scores)
    metrics, _ = accuracy_metrics(np.concatenate(labels), scores, len(ORDERS))
    return metrics["top1"], scores.argmax(-1)


def run_seed(seed, args, folder):
    """Writes the seed's dataset, trains and evaluates the three models; returns rows and test list."""
    began = time.time()
    train_list = write_dataset(os.path.join(folder, f"seed{seed}", "train"), args.videos_per_class, seed=[seed, 1])
    test_list = write_dataset(os.path.join(folder, f"seed{seed}", "test"), args.test_videos_per_class, seed=[seed, 2])
    print(f"seed {seed}: {args.videos_per_class} train / {args.test_videos_per_class} test mp4 videos per class "
          f"written in {time.time() - began:.0f} s", flush=True)
    rows = []
    for label, block4d, units in MODELS:
        began = time.time()
        model = train(block4d, units, train_list, args, seed)
        top1, predicted = evaluate(model, units, test_list)
        reversed_top1, _ = evaluate(model, units, test_list, reverse=True)
        rows.append(dict(model=label, units=units, top1=top1, reversed=reversed_top1, predicted=predicted))
        print(f"seed {seed}: trained and evaluated {label} in {time.time() - began:.0f} s", flush=True)
    return rows, test_list


def table(rows):
    lines = ["model                T_train×U_train  T_infer×U_infer×crops  top-1 (%)  top-1, units reversed (%)"]
    for row in rows:
        train_shape, test_shape = f"2×{row['units']}", f"2×{TEST_UNITS}×1"
        lines.append(f"{row['model']:<20} {train_shape:>15}  {test_shape:>21}  "
                     f"{row['top1']:9.1f}  {row['reversed']:25.1f}")
    return "\n".join(lines)


def summary(results):
    """Mean ± standard deviation [min, max] over seeds, per model, and the demo's claims checked."""
    chance = 100 / len(ORDERS)
    lines = ["model                top-1 (%), mean ± sd [min, max]   units reversed (%), mean ± sd [min, max]"]
    for k, (label, _, _) in enumerate(MODELS):
        cells = []
        for key in ("top1", "reversed"):
            values = np.array([rows[k][key] for rows in results.values()])
            cells.append(f"{values.mean():5.1f} ± {values.std():4.1f} [{values.min():5.1f}, {values.max():5.1f}]")
        lines.append(f"{label:<20} {cells[0]:<33} {cells[1]}")
    v4d = [rows[2] for rows in results.values()]
    clips = [row for rows in results.values() for row in rows[:2]]
    checks = (("V4D top-1 ≥ 90% on every seed", all(row["top1"] >= 90 for row in v4d)),
              (f"I3D-S and TSN top-1 ≤ chance + 10 = {chance + 10:.1f}% on every seed",
               all(row["top1"] <= chance + 10 for row in clips)),
              (f"V4D top-1 with the units reversed ≤ chance + 10 = {chance + 10:.1f}% on every seed",
               all(row["reversed"] <= chance + 10 for row in v4d)))
    lines += [f"{'yes' if ok else 'NO '}  {text}" for text, ok in checks]
    return "\n".join(lines), all(ok for _, ok in checks)


def units_picture(test_list, rows, path):
    """One test video per class: its U=4 units (2 frames each, centred as at test time) as a strip."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = os.path.dirname(test_list)
    with open(test_list) as handle:
        entries = [line.split() for line in handle if line.strip()]
    first = {}
    for index, (name, label) in enumerate(entries):
        first.setdefault(int(label), (index, name))
    units, frames = SAMPLING.train_units, SAMPLING.frames_per_unit
    columns = [u * (frames + 1) + f for u in range(units) for f in range(frames)]  # a narrow gap after each unit
    figure, axes = plt.subplots(
        len(ORDERS), units * (frames + 1) - 1, figsize=(1.1 * units * frames + 2.8, 1.15 * len(ORDERS)), squeeze=False,
        gridspec_kw=dict(wspace=0.06, hspace=0.1, width_ratios=([1] * frames + [0.3]) * (units - 1) + [1] * frames))
    for axis in axes.ravel():
        axis.set_axis_off()
    for label in range(len(ORDERS)):
        index, name = first[label]
        clip = read_video_units(os.path.join(folder, name), units, frames, SAMPLING.stride)
        for j, frame in enumerate(clip):
            axis = axes[label, columns[j]]
            axis.set_axis_on(), axis.set_xticks([]), axis.set_yticks([])
            axis.imshow(frame, interpolation="nearest")
            if label == 0 and j % frames == 0:
                axis.set_title(f"unit {j // frames + 1}", loc="left", fontsize=10)
        verdicts = "  ".join(f"{row['model'].split()[0].split('+')[0]} "
                             f"{'✓' if row['predicted'][index] == label else '✗'}"
                             for row in rows)
        axes[label, 0].set_ylabel(f"{CLASS_NAMES[label]}\n{verdicts}", rotation=0, ha="right", va="center",
                                  fontsize=9, labelpad=8)
    figure.suptitle(f"One test video per class (rows): the {units} units × {frames} frames sampled from it, "
                    "and whether each model classified it (✓/✗).\nA unit shows at most one shape: no single unit "
                    "carries the class, only the units' order does.", fontsize=10)
    figure.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)


def accuracy_chart(results, path):
    """Bars: top-1 and top-1 with the units reversed per model (mean over seeds; dots: each seed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chance = 100 / len(ORDERS)
    figure, axis = plt.subplots(figsize=(6.4, 3.6))
    x = np.arange(len(MODELS))
    for shift, key, colour, name in ((-0.2, "top1", "tab:blue", "top-1"),
                                     (0.2, "reversed", "tab:orange", "top-1, units reversed")):
        values = np.array([[rows[k][key] for k in range(len(MODELS))] for rows in results.values()])
        bars = axis.bar(x + shift, values.mean(0), 0.38, color=colour, label=name)
        if len(values) > 1:
            for k in range(len(MODELS)):
                axis.plot(np.full(len(values), x[k] + shift), values[:, k], "k.", markersize=4)
        for bar, value, top in zip(bars, values.mean(0), values.max(0)):
            axis.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, top), ha="center", va="bottom",
                          fontsize=9, xytext=(0, 3), textcoords="offset points")
    axis.axhline(chance, color="grey", linestyle="--", linewidth=1)
    axis.annotate(f"chance {chance:.1f}%", (x[-1] + 0.5, chance), ha="right", va="bottom", fontsize=8, color="grey")
    axis.set_xticks(x, [label for label, _, _ in MODELS])
    axis.set_ylim(0, 110), axis.set_ylabel("accuracy on the test videos (%)")
    seeds = list(results)
    axis.set_title("Order of events: 6 classes, video-level inference with 8 units" +
                   (f"\nmean of seeds {seeds[0]}–{seeds[-1]}, dots: each seed" if len(seeds) > 1 else ""), fontsize=10)
    axis.legend(loc="upper left", fontsize=9, frameon=False)
    axis.spines[["top", "right"]].set_visible(False)
    figure.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the videos, data order, augmentation, init")
    parser.add_argument("--seeds", type=int, default=None, help="run seeds 0..N-1 and print mean ± sd over them")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.02, help="base learning rate (÷10 at 60%% and 85%% of epochs)")
    parser.add_argument("--videos_per_class", type=int, default=32)
    parser.add_argument("--test_videos_per_class", type=int, default=15)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--width", type=float, default=0.25, help="channel width multiplier of the ResNet18")
    parser.add_argument("--output_dir", default=DEFAULT_OUTPUT, help="where the two PNG pictures are written")
    args = parser.parse_args(argv)
    seeds = list(range(args.seeds)) if args.seeds else [args.seed]
    start = time.time()
    print(f"{len(ORDERS)} classes: {', '.join(CLASS_NAMES)}")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for seed in seeds:
            results[seed], test_list = run_seed(seed, args, folder)
            print(f"\nseed {seed}\n{table(results[seed])}\nchance: {100 / len(ORDERS):.1f}%\n", flush=True)
            if seed == seeds[0]:
                tag = "" if len(seeds) == 1 and seed == 0 else f"_seed{seed}" if len(seeds) == 1 else \
                    f"_seeds{seeds[0]}-{seeds[-1]}"
                os.makedirs(args.output_dir, exist_ok=True)
                units_path = os.path.normpath(os.path.join(args.output_dir, f"order_of_events_units{tag}.png"))
                units_picture(test_list, results[seed], units_path)
    chart_path = os.path.normpath(os.path.join(args.output_dir, f"order_of_events_accuracy{tag}.png"))
    accuracy_chart(results, chart_path)
    ok = True
    if len(seeds) > 1:
        text, ok = summary(results)
        print(f"over seeds {', '.join(map(str, seeds))}:\n{text}\n")
    print(f"pictures: {units_path}\n          {chart_path}")
    print(f"total time {time.time() - start:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
