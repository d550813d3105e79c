"""Where the videos come from: annotation lists, folder-per-class trees and TFRecord files."""

import dataclasses
import glob
import os

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v")


@dataclasses.dataclass
class VideoFiles:
    """Video files with integer labels. ``paths[i]`` is absolute; ``ids[i]`` is the path as listed."""

    paths: list
    labels: list
    ids: list
    class_names: list = None

    def __len__(self):
        return len(self.paths)


@dataclasses.dataclass
class TFRecordFiles:
    """TFRecord shards of ``SequenceExample``s in the Model Garden video format."""

    files: list
    class_names: list = None


def read_class_names(path):
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def read_annotations(path, root=None, class_names=None):
    """Parses an annotation list: one ``relative/path label`` per line (label: int or class name).

    Paths are relative to ``root`` (default: the list's folder). Blank lines and ``#`` comments
    are ignored. A malformed line raises a ``ValueError`` naming the file and line number.
    """
    root = os.path.dirname(os.path.abspath(path)) if root is None else root
    if isinstance(class_names, str):
        class_names = read_class_names(class_names)
    name_to_index = {name: i for i, name in enumerate(class_names or [])}
    paths, labels, ids = [], [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2:
                raise ValueError(f"{path}:{number}: expected 'path label', got {line!r}")
            relative, label = parts
            if label.lstrip("-").isdigit():
                label = int(label)
            elif label in name_to_index:
                label = name_to_index[label]
            else:
                raise ValueError(f"{path}:{number}: label {label!r} is neither an int nor a known class name")
            paths.append(os.path.join(root, relative))
            labels.append(label)
            ids.append(relative)
    return VideoFiles(paths, labels, ids, class_names)


def read_class_folders(root):
    """A folder per class (``root/<class>/<video>``): classes sorted by name, label = position."""
    class_names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not class_names:
        raise ValueError(f"{root}: no class folders found")
    paths, labels, ids = [], [], []
    for label, name in enumerate(class_names):
        for file_name in sorted(os.listdir(os.path.join(root, name))):
            if file_name.lower().endswith(VIDEO_EXTENSIONS):
                paths.append(os.path.join(root, name, file_name))
                labels.append(label)
                ids.append(f"{name}/{file_name}")
    return VideoFiles(paths, labels, ids, class_names)


def resolve_source(source, root=None, class_names=None):
    """Turns ``video_dataset``'s ``source`` into ``VideoFiles`` or ``TFRecordFiles``.

    Accepts such an object, an annotation list file, a folder (class folders, or ``*.tfrecord*``
    shards), a glob pattern of TFRecord files or a list of TFRecord paths.
    """
    if isinstance(source, (VideoFiles, TFRecordFiles)):
        return source
    if isinstance(class_names, str):
        class_names = read_class_names(class_names)
    if isinstance(source, (list, tuple)):
        return TFRecordFiles(sorted(source), class_names)
    source = os.fspath(source)
    if os.path.isdir(source):
        shards = sorted(glob.glob(os.path.join(source, "*.tfrecord*")))
        return TFRecordFiles(shards, class_names) if shards else read_class_folders(source)
    if os.path.isfile(source) and ".tfrecord" not in os.path.basename(source):
        return read_annotations(source, root, class_names)
    files = sorted(glob.glob(source))
    if not files:
        raise ValueError(f"`source`: no annotation list, folder or TFRecord files at {source!r}")
    return TFRecordFiles(files, class_names)
