"""Decoding that seeks (``read_frames``, ``sample_video``): the frames are byte for byte those of a
sequential decode, on short and long GOPs with B-frames, an open GOP and a variable frame rate, for
many index patterns; damaged files are read as without seeking."""

import fractions
import os

import av
import numpy as np
import pytest

from keras_v4d.data import VideoReadError, read_frames, segment_indices, video_io
from keras_v4d.data.video_io import sample_video

WIDTH, HEIGHT = 64, 48


def clip(num_frames, seed=0):
    """A textured pattern moving by one pixel a frame, plus fresh noise: every frame differs."""
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(0, 255, (HEIGHT // 4, WIDTH // 4 * 2, 3), dtype=np.uint8), np.ones((4, 4, 1), np.uint8))
    frames = np.stack([np.roll(base, t, axis=1)[:, :WIDTH] for t in range(num_frames)]).astype(int)
    return np.clip(frames + rng.integers(-8, 9, frames.shape), 0, 255).astype(np.uint8)


def encode(path, frames, options, pts=None, fps=30, format=None, faststart=False):
    """H.264 (x264 default B-frames unless ``options`` says) with ``options``; ``pts``: each frame's
    presentation time in ms (a variable frame rate); ``faststart``: the MP4 index before the frames."""
    with av.open(str(path), "w", format=format, options={"movflags": "faststart"} if faststart else {}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast", **options}
        if pts is not None:
            stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for k, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = int(pts[k]), fractions.Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return str(path)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seeking")
    rng = np.random.default_rng(1)
    vfr = np.cumsum(rng.choice([10, 33, 34, 50, 120], 300))  # irregular gaps between frames, in ms
    return {
        "short_gop": (encode(folder / "short_gop.mp4", clip(200), {"g": "5"}), 200),
        "long_gop": (encode(folder / "long_gop.mp4", clip(600, 2), {"g": "250"}), 600),
        "open_gop": (encode(folder / "open_gop.mkv", clip(400, 3), {"g": "60", "x264-params": "open-gop=1"}), 400),
        "vfr": (encode(folder / "vfr.mp4", clip(300, 4), {"g": "40"}, pts=vfr), 300),
    }


def sequential(path, indices):
    """The frames a sequential decode gives (no seeking), in the order of ``indices``."""
    found, _, _ = video_io._decode(path, set(indices), max(indices))
    return np.stack([found[i] for i in indices])


def patterns(num_frames, seed):
    rng = np.random.default_rng(seed)
    last = num_frames - 1
    yield [0]
    yield [last]
    yield [0, last]
    yield [last, 0, last, 5]  # any order, repeats
    yield sorted(rng.choice(num_frames, 12, replace=False).tolist())
    yield sorted(rng.choice(num_frames, 30, replace=True).tolist())  # repeats
    yield rng.choice(num_frames, 20, replace=True).tolist()  # unsorted
    for training in (False, True):
        yield segment_indices(num_frames, 4, 8, 8, training, seed=seed).numpy().reshape(-1).tolist()
    yield list(range(last - 9, last + 1))  # the frames the decoder holds at the end


@pytest.mark.parametrize("name", ["short_gop", "long_gop", "open_gop", "vfr"])
def test_seeking_gives_the_frames_of_a_sequential_decode(videos, name, monkeypatch):
    path, num_frames = videos[name]
    plan = video_io._seek_plan(path)
    assert plan is not None and len(plan.pts) == num_frames
    calls = []
    real_decode = video_io._decode
    monkeypatch.setattr(video_io, "_decode", lambda *args, **kwargs: calls.append(args) or real_decode(*args, **kwargs))
    seeked = 0
    for seed in range(3):
        for indices in patterns(num_frames, seed):
            expected = sequential(path, indices)
            calls.clear()
            np.testing.assert_array_equal(read_frames(path, indices), expected, err_msg=f"{name} {indices}")
            if plan.seeks(sorted(set(indices))):
                seeked += 1
                assert calls == [], f"{name} {indices}: seeking fell back to the sequential decoder"
    # each video has patterns where seeking is cheaper, but the open GOP: its I-frames are no clean cut
    assert (seeked > 0) == (name != "open_gop")


def test_the_seek_plan_knows_the_keyframes(videos):
    plan = video_io._seek_plan(videos["long_gop"][0])
    assert plan.keys.tolist()[:3] == [0, 250, 500]
    assert plan.seeks([300]) and not plan.seeks([10, 100])  # a keyframe past the decoder's position, or none
    assert not video_io._seek_plan(videos["short_gop"][0]).seeks([0, 1, 2, 3, 4, 5, 6, 7])
    open_gop = video_io._seek_plan(videos["open_gop"][0])
    with av.open(videos["open_gop"][0]) as container:
        flagged = sum(packet.is_keyframe for packet in container.demux(video=0) if packet.size)
    assert len(open_gop.keys) < flagged  # the open GOP's I-frames (leading B-frames) are no clean cut


def test_sample_video_seeks_and_gives_the_sequential_frames(videos):
    path, num_frames = videos["long_gop"]
    for training in (False, True):
        frames, repair = sample_video(path, 4, 8, 8, training=training, seed=7)
        indices = segment_indices(num_frames, 4, 8, 8, training, seed=7).numpy().reshape(-1).tolist()
        assert repair is None
        np.testing.assert_array_equal(frames, sequential(path, indices))


def test_frames_past_the_end_are_the_same_error(videos, monkeypatch):
    path, num_frames = videos["long_gop"]
    cases = [[num_frames], [300, num_frames + 50], [10, 520, num_frames + 5]]
    with_seeking = [read_or_error(path, indices) for indices in cases]
    monkeypatch.setattr(video_io, "_seek_plan", lambda path: None)
    assert with_seeking == [read_or_error(path, indices) for indices in cases]
    assert with_seeking[0] == f"{path}: frame {num_frames} requested but only {num_frames} frame(s) decode"


def read_or_error(path, indices):
    try:
        return read_frames(path, indices)
    except VideoReadError as error:
        return str(error)


@pytest.mark.parametrize("damage", ["cut", "cut_index_first", "no_pts"])
def test_files_without_a_seek_plan_are_read_as_without_seeking(videos, tmp_path, damage, monkeypatch):
    path, num_frames = videos["long_gop"]
    if damage == "cut_index_first":  # the header still claims every frame: the plan's count differs
        path = encode(tmp_path / "whole.mp4", clip(600, 2), {"g": "250"}, faststart=True)
    elif damage == "no_pts":  # a raw H.264 stream: no timestamps to seek by
        path = encode(tmp_path / "raw.h264", clip(600, 2), {"g": "250"}, format="h264")
    data = open(path, "rb").read()
    if damage.startswith("cut"):  # the index at the end (moov) lost: nothing opens, as before
        data = data[: len(data) * 2 // 3]
    damaged = str(tmp_path / f"{damage}{os.path.splitext(path)[1]}")
    open(damaged, "wb").write(data)
    assert video_io._seek_plan(damaged) is None
    cases = [[0, num_frames - 1], [300, 310, 550], list(range(500, 600, 7)), [599]]
    with_seeking = [read_or_error(damaged, indices) for indices in cases]
    monkeypatch.setattr(video_io, "_seek_plan", lambda path: None)  # the decoder as it was
    without = [read_or_error(damaged, indices) for indices in cases]
    for got, expected in zip(with_seeking, without):
        assert type(got) is type(expected)
        if isinstance(expected, str):
            assert got == expected
        else:
            np.testing.assert_array_equal(got, expected)


AVX2_CASES = os.path.join(os.path.dirname(__file__), "avx2_cases")


def packets(path):
    """``(pts, is_keyframe, byte offset, size)`` of each video packet, in decode order (the demuxer's)."""
    with av.open(path) as container:
        return [(p.pts, p.is_keyframe, p.pos, p.size) for p in container.demux(video=0) if p.size]


def damage_packet(path, out, frame, how):
    """A copy of the MP4 ``path`` with the packet that presents ``frame`` damaged, found through the
    demuxer (so wherever the encoder put it): ``"lost"`` makes its first NAL unit's 4-byte length claim
    more bytes than the packet holds (every H.264 decoder rejects the packet), ``"garbled"`` inverts the
    bytes of its first NAL unit's payload past the slice header's first bytes (what a decoder then
    outputs is its own affair)."""
    data = bytearray(open(path, "rb").read())
    by_pts = {pts: (pos, size) for pts, _, pos, size in packets(path)}
    pos, size = by_pts[sorted(by_pts)[frame]]
    first_nal = int.from_bytes(data[pos:pos + 4], "big")
    assert 4 + first_nal <= size, "not length-prefixed H.264 (MP4's avcC layout)"
    if how == "lost":
        data[pos:pos + 4] = (4 * size).to_bytes(4, "big")
    else:
        for offset in range(pos + 4 + 8, pos + 4 + first_nal):
            data[offset] ^= 0xFF
    open(out, "wb").write(bytes(data))
    return str(out)


def never_seek(monkeypatch):
    """Reads decode sequentially from the first frame (frames still numbered by their timestamps)."""
    monkeypatch.setattr(video_io._SeekPlan, "seeks", lambda self, targets: False)


@pytest.mark.parametrize("source", ["encoded_here", "encoded_on_avx2"])
@pytest.mark.parametrize("how", ["lost", "garbled"])
def test_damage_in_one_group_of_pictures_leaves_the_others_exact(videos, tmp_path, source, how, monkeypatch):
    """The contract for a damaged packet, whatever bytes the encoder wrote and however the decoder
    conceals damage: frames of the groups of pictures before and after the damaged one are the undamaged
    file's, read with or without seeking (frames are numbered by timestamp, so a lost frame moves no
    other); a frame whose own packet is lost is an error naming the file and the frame."""
    path = videos["long_gop"][0] if source == "encoded_here" else os.path.join(AVX2_CASES, "long_gop.mp4")
    plan = video_io._seek_plan(path)
    assert plan.keys.tolist()[:3] == [0, 250, 500]
    frame = 300 if how == "lost" else 250  # a P-frame, or the keyframe of the middle group
    damaged = damage_packet(path, tmp_path / f"{how}.mp4", frame, how)
    if how == "lost":  # the damage the test relies on: the decoder rejects that packet and only that one
        found, decoded, error = video_io._decode(damaged, set(range(600)), 599, False, plan=plan)
        assert sorted(set(range(600)) - found.keys()) == [frame] and decoded == 599 and error is not None
        # FFmpeg's frame threads may also drop the frames in flight beside it, never one of another group
        found, _, error = video_io._decode(damaged, set(range(600)), 599, True, plan=plan)
        assert frame not in found and set(range(250)) | set(range(500, 600)) <= found.keys() and error is not None
    cases = [[0, 120, 249], [500, 555, 599], [10, 560], [599]]
    truth = [sequential(path, indices) for indices in cases]
    with_seeking = [read_frames(damaged, indices) for indices in cases]
    never_seek(monkeypatch)
    without = [read_frames(damaged, indices) for indices in cases]
    for indices, expected, got, sequentially in zip(cases, truth, with_seeking, without):
        np.testing.assert_array_equal(got, expected, err_msg=f"{indices} with seeking")
        np.testing.assert_array_equal(sequentially, expected, err_msg=f"{indices} without seeking")
    monkeypatch.undo()
    if how == "lost":
        for indices in ([frame], [280, frame, 320], [frame, 550]):
            for seeking in (True, False):
                if not seeking:
                    never_seek(monkeypatch)
                with pytest.raises(VideoReadError, match=f"{damaged}: frame {frame} requested but it does not"):
                    read_frames(damaged, indices)
                monkeypatch.undo()
    else:  # the damaged group itself: the decoder's concealment, or a named error; never another shape
        for indices in ([frame], [260, 400, 499], [300, 550]):
            got = read_or_error(damaged, indices)
            assert isinstance(got, np.ndarray) and got.shape == (len(indices), HEIGHT, WIDTH, 3) or (
                isinstance(got, str) and got.startswith(f"{damaged}: frame "))


def test_randomly_damaged_file_written_on_avx2(monkeypatch):
    """``garbled.mp4``: 40 bytes inverted at random offsets across three groups of pictures, as an AVX2
    CPU wrote it. What decodes past damage is the decoder's concealment, so what holds is: every read
    gives frames of the file's shape or a ``VideoReadError`` naming the file and a frame, with and
    without seeking, and frames decoded before the first damaged packet are the undamaged file's."""
    original, garbled = (os.path.join(AVX2_CASES, name) for name in ("long_gop.mp4", "garbled.mp4"))
    data = [open(name, "rb").read() for name in (original, garbled)]
    first_damaged = min(k for k, (_, _, pos, size) in enumerate(packets(original))
                        if data[0][pos:pos + size] != data[1][pos:pos + size])
    order = sorted(pts for pts, *_ in packets(original))
    clean = [order.index(pts) for pts, *_ in packets(original)[:first_damaged]]
    clean = [k for k in clean if k < min(order.index(pts) for pts, *_ in packets(original)[first_damaged:])]
    assert len(clean) > 100
    cases = [[0, num] for num in (clean[-1], 300, 520, 599)] + [[250, 599], list(range(500, 600, 9))]
    for seeking in (True, False):
        if not seeking:
            never_seek(monkeypatch)
        for indices in cases:
            got = read_or_error(garbled, indices)
            assert isinstance(got, np.ndarray) and got.shape == (len(indices), HEIGHT, WIDTH, 3) or (
                isinstance(got, str) and got.startswith(f"{garbled}: frame ")), (indices, got)
        np.testing.assert_array_equal(read_frames(garbled, clean[::10]), sequential(original, clean[::10]))
