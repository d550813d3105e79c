"""Does a pretrained start transfer to other classes? Pretrain, fine-tune, and the same network from scratch.

Per seed: a small V4D (``build_resnet3d(18, "v4d", width=0.25)``, the demo's sampling: 4 units × 2
frames at 32²) is trained on the order-of-events demo's task (``examples/order_of_events.py``: the
order of three shapes, 6 classes) and its weights saved. Then a *different* task with other classes
and few labelled videos — which shape appears second (3 classes), on new videos — is trained twice
with the same budget (the same videos, epochs, data order, augmentation and seed): from the
pretrained weights with a new 3-class classifier (``build_resnet3d(..., weights=file, classes=3)``)
and from scratch. Both are scored with video-level inference (Algorithm 1 over 8 units,
``keras_v4d.inference.evaluate``) on held-out videos; the table gives each seed and the medians.

Run: ``python benchmarks/transfer.py [--seeds 3] [--pretrain_epochs 20] [--finetune_epochs 12]
[--per_class 4]``.
"""

import argparse
import dataclasses
import importlib.util
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import print_machine  # noqa: E402  (sets the Keras backend before keras_v4d is imported)

import keras_v4d  # noqa: E402, F401  (before TensorFlow: oneDNN on where TensorFlow leaves it off)

# isort: split
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_v4d.data import DataOptions, video_dataset  # noqa: E402
from keras_v4d.inference import evaluate  # noqa: E402
from keras_v4d.models import build_resnet3d  # noqa: E402
from keras_v4d.records.atomic import open_atomically, write_atomically  # noqa: E402
from keras_v4d.training import compile_for_training  # noqa: E402

DEMO_PATH = os.path.join(os.path.dirname(HERE), "examples", "order_of_events.py")
SECOND_SHAPE_CLASSES = 3  # the fine-tuning task: which of the three shapes appears second


def load_demo():
    """The order-of-events demo as a module (its video maker, its 6-class dataset, its sampling)."""
    spec = importlib.util.spec_from_file_location("order_of_events", DEMO_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = load_demo()


def write_second_shape_dataset(folder, per_class, seed):
    """``per_class`` mp4 videos per class of the fine-tuning task (label: the shape shown second; both
    orders with that shape second, alternately) into ``folder``; returns the list file's path."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for label in range(SECOND_SHAPE_CLASSES):
        orders = [order for order in demo.ORDERS if order[1] == label]
        for i in range(per_class):
            name = f"second{label}_{i:03d}.mp4"
            demo.write_mp4(os.path.join(folder, name), demo.make_video(orders[i % len(orders)], rng))
            lines.append(f"{name} {label}")
    path = os.path.join(folder, "list.txt")
    with open_atomically(path) as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def fit(model, train_list, num_classes, epochs, batch_size, args, seed):
    """Trains ``model`` with the demo's recipe (lr ÷ 10 at 60% and 85% of the epochs), data order,
    units, crops and flips following ``seed``."""
    dataset, info = video_dataset(train_list, demo.SAMPLING, training=True, batch_size=batch_size,
                                  num_classes=num_classes, options=DataOptions(seed=seed), with_info=True)
    steps = info.num_videos // batch_size
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps))  # every generated video decodes
    compile_for_training(model, steps, base_lr=args.lr, weight_decay=1e-4,
                         decay_epochs=(int(epochs * 0.6), int(epochs * 0.85)))
    model.fit(dataset, epochs=epochs, verbose=0, shuffle=False)  # the dataset shuffles itself (seeded)
    return model


def new_model(classes, args, seed, weights=None):
    keras.utils.set_random_seed(seed)  # the initialisation (of the new classifier, with weights)
    return build_resnet3d(18, "v4d", weights=weights, classes=classes, width=args.width,
                          input_shape=(None, demo.SAMPLING.frames_per_unit, 32, 32, 3))


def top1(model, test_list):
    return evaluate(model, test_list, demo.SAMPLING, batch_size=16, progress=False)["top1"]


def pretrain(folder, args, seed):
    """Trains V4D on the demo's 6 orders; returns (weights file, its top-1 on held-out videos, their list)."""
    train_list = demo.write_dataset(os.path.join(folder, "pretrain"), args.pretrain_per_class, seed=[seed, 1])
    test_list = demo.write_dataset(os.path.join(folder, "pretrain_test"), args.test_per_class, seed=[seed, 2])
    model = fit(new_model(len(demo.ORDERS), args, seed), train_list, len(demo.ORDERS), args.pretrain_epochs,
                args.pretrain_batch_size, args, seed)
    path = os.path.join(folder, "pretrained.weights.h5")
    write_atomically(path, model.save_weights)
    return path, top1(model, test_list), test_list


def run_seed(seed, args, folder):
    """One seed: pretrain, then fine-tune and from scratch on the second-shape task; their top-1 (%)."""
    folder = os.path.join(folder, f"seed{seed}")
    began = time.time()
    weights, pretrained_top1, _ = pretrain(folder, args, seed)
    train_list = write_second_shape_dataset(os.path.join(folder, "finetune"), args.per_class, seed=[seed, 3])
    test_list = write_second_shape_dataset(os.path.join(folder, "finetune_test"), args.test_per_class,
                                           seed=[seed, 4])
    result = {"seed": seed, "pretrain": pretrained_top1}
    for label, start in (("pretrained", weights), ("scratch", None)):
        model = new_model(SECOND_SHAPE_CLASSES, args, seed, weights=start)
        model = fit(model, train_list, SECOND_SHAPE_CLASSES, args.finetune_epochs, args.batch_size, args, seed)
        result[label] = top1(model, test_list)
    result["seconds"] = time.time() - began
    return result


def table(results):
    lines = ["seed  pretrain task (6 orders)  fine-tuned from pretrained  from scratch  difference  seconds"]
    for r in results:
        lines.append(f"{r['seed']:>4}  {r['pretrain']:>24.1f}  {r['pretrained']:>26.1f}  {r['scratch']:>11.1f}  "
                     f"{r['pretrained'] - r['scratch']:>+10.1f}  {r['seconds']:>7.0f}")
    medians = {key: statistics.median(r[key] for r in results) for key in ("pretrain", "pretrained", "scratch")}
    differences = statistics.median(r["pretrained"] - r["scratch"] for r in results)
    lines.append(f"{'median':>6}{medians['pretrain']:>24.1f}  {medians['pretrained']:>26.1f}  "
                 f"{medians['scratch']:>11.1f}  {differences:>+10.1f}")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (each: its own videos, data order, init)")
    parser.add_argument("--pretrain_epochs", type=int, default=20)
    parser.add_argument("--finetune_epochs", type=int, default=12, help="both fine-tuning and from scratch")
    parser.add_argument("--per_class", type=int, default=4, help="labelled videos per class of the new task")
    parser.add_argument("--pretrain_per_class", type=int, default=32, help="videos per class of the pretraining")
    parser.add_argument("--test_per_class", type=int, default=10, help="held-out videos per class of each task")
    parser.add_argument("--batch_size", type=int, default=4, help="batch size of the new task's trainings")
    parser.add_argument("--pretrain_batch_size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.02, help="base learning rate of every training")
    parser.add_argument("--width", type=float, default=0.25, help="channel width multiplier of the ResNet18")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    print_machine()
    print(f"pretrain: {len(demo.ORDERS)} orders, {args.pretrain_per_class} videos per class, "
          f"{args.pretrain_epochs} epochs; new task: the shape shown second ({SECOND_SHAPE_CLASSES} classes), "
          f"{args.per_class} labelled videos per class, {args.finetune_epochs} epochs from each start; "
          f"{args.test_per_class} held-out videos per class; top-1 (%), video-level (Algorithm 1, "
          f"{demo.SAMPLING.test_num_units} units)", flush=True)
    began = time.time()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            results.append(run_seed(seed, args, folder))
            print(f"seed {seed} done in {results[-1]['seconds']:.0f} s", flush=True)
    print(table(results))
    print(f"settings: {dataclasses.asdict(demo.SAMPLING)}")
    print(f"total time {time.time() - began:.0f} s")


if __name__ == "__main__":
    main()
