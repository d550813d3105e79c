"""Where the videos come from: annotation lists of video files, rawframe lists (folders of JPEG
frames, TSN/MMAction2 style), folder-per-class trees and TFRecord files."""

import dataclasses
import glob
import os
import re

from keras_v4d.records.class_names import read_class_names

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


DEFAULT_FRAME_TEMPLATE = "img_{:05d}.jpg"  # TSN, MMAction2 and the official V4D loader


@dataclasses.dataclass
class RawFrames:
    """Folders of JPEG frames (a rawframe list: ``frame_dir total_frames label`` per line).

    ``dirs[i]`` is absolute; ``ids[i]`` is the folder as listed; frame ``k`` (counted from 0) of
    folder ``i`` is ``dirs[i]/template.format(k + start_index)``.
    """

    dirs: list
    num_frames: list
    labels: list
    ids: list
    class_names: list = None
    template: str = DEFAULT_FRAME_TEMPLATE
    start_index: int = 1

    def __len__(self):
        return len(self.dirs)

    def frame_names(self, i):
        """File names of the frames folder ``i`` should hold, in order."""
        return frame_names(self.template, self.start_index, self.num_frames[i])


_BRACE = re.compile(r"^(?P<prefix>[^{}%]*)\{(?::(?P<fill>0?)(?P<width>\d*)d)?\}(?P<suffix>[^{}%]*)$")
_PERCENT = re.compile(r"^(?P<prefix>[^{}%]*)%(?P<fill>0?)(?P<width>\d*)d(?P<suffix>[^{}%]*)$")


def parse_frame_template(template):
    """``'img_{:05d}.jpg'`` (or ``'img_%05d.jpg'``) → ``(prefix, width, fill, suffix)``.

    The number must be the template's only field: ``{}``, ``{:d}``, ``{:Nd}``, ``{:0Nd}`` or the
    ``%`` forms. Raises ``ValueError`` otherwise.
    """
    match = _BRACE.match(template) or _PERCENT.match(template)
    if not match:
        raise ValueError(f"frame template {template!r}: expected one integer field such as "
                         f"'img_{{:05d}}.jpg' or 'img_%05d.jpg'")
    width = int(match["width"] or 0)
    return match["prefix"], width, "0" if match["fill"] else " ", match["suffix"]


def frame_names(template, start_index, count):
    """``count`` frame file names from ``template`` numbered from ``start_index``."""
    prefix, width, fill, suffix = parse_frame_template(template)
    return [f"{prefix}{str(k + start_index).rjust(width, fill)}{suffix}" for k in range(count)]


@dataclasses.dataclass
class TFRecordFiles:
    """TFRecord shards of ``SequenceExample``s in the Model Garden video format."""

    files: list
    class_names: list = None


def _is_int(text):
    """An integer label in ASCII digits, at most one leading minus (``isdigit`` alone takes ``²``)."""
    return re.fullmatch(r"-?[0-9]+", text) is not None


def _entries(path):
    """``(line number, stripped line)`` of an annotation list, without blank lines and ``#`` comments."""
    with open(path, encoding="utf-8-sig") as handle:  # -sig: a UTF-8 byte-order mark is not part of line 1
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if line and not line.startswith("#"):
                yield number, line


def _label_indexer(path, class_names):
    """``(class_names, index)``: ``index(label, number)`` maps an int or class-name label to its
    int, or raises a ``ValueError`` naming ``path`` and the line number."""
    if isinstance(class_names, str):
        class_names = read_class_names(class_names)
    name_to_index = {name: i for i, name in enumerate(class_names or [])}

    def index(label, number):
        if _is_int(label):
            return int(label)
        if label in name_to_index:
            return name_to_index[label]
        raise ValueError(f"{path}:{number}: label {label!r} is neither an int nor a known class name")

    return class_names, index


def read_annotations(path, root=None, class_names=None):
    """Parses an annotation list: one ``relative/path label`` per line (label: int or class name).

    Paths are relative to ``root`` (default: the list's folder). Blank lines and ``#`` comments
    are ignored. A malformed line raises a ``ValueError`` naming the file and line number.
    """
    root = os.path.dirname(os.path.abspath(path)) if root is None else root
    class_names, label_index = _label_indexer(path, class_names)
    paths, labels, ids = [], [], []
    for number, line in _entries(path):
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: expected 'path label', got {line!r}")
        relative, label = parts
        paths.append(os.path.join(root, relative))
        labels.append(label_index(label, number))
        ids.append(relative)
    return VideoFiles(paths, labels, ids, class_names)


def _looks_like_rawframes(line):
    """A ``frame_dir total_frames label`` line (not a ``path label`` line of a video list)."""
    parts = line.rsplit(maxsplit=2)
    return (len(parts) == 3 and _is_int(parts[1])
            and not parts[0].lower().endswith(VIDEO_EXTENSIONS))


def list_format(path):
    """``'rawframes'`` if the list's first entry is ``frame_dir total_frames label``, else ``'videos'``."""
    for _, line in _entries(path):
        return "rawframes" if _looks_like_rawframes(line) else "videos"
    return "videos"


def read_rawframe_annotations(path, root=None, class_names=None, template=DEFAULT_FRAME_TEMPLATE,
                              start_index=1):
    """Parses a rawframe list (TSN / MMAction2 / official V4D): ``frame_dir total_frames label`` per line.

    ``frame_dir`` is relative to ``root`` (default: the list's folder); the label is an int or a
    class name. Frames are ``frame_dir/template.format(k)`` for k = ``start_index`` …
    ``start_index + total_frames - 1``. Nothing is read from the folders here. Blank lines and
    ``#`` comments are ignored; a malformed line raises a ``ValueError`` naming the file and line.
    """
    parse_frame_template(template)
    root = os.path.dirname(os.path.abspath(path)) if root is None else root
    class_names, label_index = _label_indexer(path, class_names)
    dirs, totals, labels, ids = [], [], [], []
    for number, line in _entries(path):
        parts = line.rsplit(maxsplit=2)
        if len(parts) != 3 or not _is_int(parts[1]):
            raise ValueError(f"{path}:{number}: expected 'frame_dir total_frames label', got {line!r}")
        relative, total, label = parts
        dirs.append(os.path.join(root, relative))
        totals.append(int(total))
        labels.append(label_index(label, number))
        ids.append(relative)
    return RawFrames(dirs, totals, labels, ids, class_names, template, start_index)


def _hidden(name):
    """Hidden and system entries (``.ipynb_checkpoints``, ``__MACOSX``, ``._clip.mp4``) are never data."""
    return name.startswith((".", "__"))


def read_class_folders(root, class_names=None):
    """A folder per class (``root/<class>/<video>``; hidden and system folders are not classes).

    Without ``class_names`` the classes are the folders sorted by name, label = position. With
    ``class_names`` (e.g. the training set's, for validation) each folder's label is its name's
    position in that list; a folder not in it is a ``ValueError`` naming it (a class may lack a folder).
    """
    folders = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not _hidden(d))
    if not folders:
        raise ValueError(f"{root}: no class folders found")
    class_names = list(folders if class_names is None else class_names)
    unknown = [d for d in folders if d not in class_names]
    if unknown:
        raise ValueError(f"{root} has {len(folders)} class folders; {unknown[:5]} are not among the "
                         f"{len(class_names)} classes it is read with (e.g. {class_names[:3]})")
    paths, labels, ids = [], [], []
    for name in folders:
        label = class_names.index(name)
        for file_name in sorted(os.listdir(os.path.join(root, name))):
            if file_name.lower().endswith(VIDEO_EXTENSIONS) and not _hidden(file_name):
                paths.append(os.path.join(root, name, file_name))
                labels.append(label)
                ids.append(f"{name}/{file_name}")
    return VideoFiles(paths, labels, ids, class_names)


SOURCE_FORMATS = ("videos", "rawframes", "tfrecord")


def resolve_source(source, root=None, class_names=None, source_format=None,
                   frame_template=DEFAULT_FRAME_TEMPLATE, frame_start=1):
    """Turns ``video_dataset``'s ``source`` into ``VideoFiles``, ``RawFrames`` or ``TFRecordFiles``.

    Accepts such an object, an annotation list file (video files: ``path label`` lines; rawframes:
    ``frame_dir total_frames label`` lines — recognised from the first entry, or forced with
    ``source_format``), a folder (class folders, or ``*.tfrecord*`` shards), a glob pattern of
    TFRecord files or a list of TFRecord paths.
    """
    if source_format is not None and source_format not in SOURCE_FORMATS:
        raise ValueError(f"`source_format` must be one of {SOURCE_FORMATS} or None, got {source_format!r}")
    if isinstance(source, (VideoFiles, TFRecordFiles, RawFrames)):
        return source
    if isinstance(class_names, str):
        class_names = read_class_names(class_names)
    if isinstance(source, (list, tuple)):
        return TFRecordFiles(sorted(source), class_names)
    source = os.fspath(source)
    if os.path.isdir(source) and source_format != "rawframes":
        shards = sorted(glob.glob(os.path.join(source, "*.tfrecord*")))
        if shards or source_format == "tfrecord":
            return TFRecordFiles(shards, class_names)
        return read_class_folders(source, class_names)
    if os.path.isfile(source) and source_format != "tfrecord" and (
            source_format is not None or ".tfrecord" not in os.path.basename(source)):
        if (source_format or list_format(source)) == "rawframes":
            return read_rawframe_annotations(source, root, class_names, frame_template, frame_start)
        return read_annotations(source, root, class_names)
    if source_format == "rawframes":
        raise ValueError(f"`source`: no rawframe list at {source!r}")
    files = sorted(glob.glob(source))
    if not files:
        raise ValueError(f"`source`: no annotation list, folder or TFRecord files at {source!r}")
    return TFRecordFiles(files, class_names)
