"""A tiny training source and the command line that trains on it, shared by the training tests."""

import csv
import os
import sys

import numpy as np

from keras_v4d.data import write_video


def write_tiny_dataset(root):
    """Four 12-frame 32² videos of two classes and their list; returns the list's path."""
    lines = []
    for i in range(4):
        write_video(str(root / f"v{i}.mp4"), np.full((12, 32, 32, 3), 40 * i, np.uint8))
        lines.append(f"v{i}.mp4 {i % 2}")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root / "list.txt"


def train_command(listing, output, epochs):
    return [sys.executable, "-m", "keras_v4d.cli.train", "--model=TSNResNet18", f"--train={listing}", "--num_classes=2",
            f"--output={output}", f"--epochs={epochs}", "--batch_size=2", "--num_units=2", "--frames_per_unit=2",
            "--stride=2", "--crop_size=32", "--short_side=32"]


def epochs_logged(output):
    """The ``epoch`` column of ``output/history.csv`` (Keras' 0-based count), ``[]`` without one."""
    path = os.path.join(output, "history.csv")
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]
