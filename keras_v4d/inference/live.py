"""A live timeline: class probabilities per window while a stream arrives.

``for item in live_timeline(model, "rtsp://camera/stream", sampling, window=10.0, hop=1.0):`` yields a
``LiveWindow`` (its span in stream seconds, from the packets' timestamps, its class probabilities and
its latency) as soon as the window's last unit has arrived, and a ``LiveEvent`` when the source
stalls, drops and comes back, or changes frame size. The source is anything FFmpeg opens through PyAV:
``rtsp://``, ``http(s)://``, ``udp://``, ``tcp://``, a camera device, a file. The command-line tool is
``keras-v4d predict --stream URL``.

The windows are the timeline's (``inference.timeline``, its ``TimelineStream`` and its Algorithm 1
store): the 3D part runs once per unit, each 4D level once per distinct window of units, and a
unit's features are dropped once the windows have passed it, so memory stays bounded on an endless
stream. A reader thread decodes ahead into a bounded queue; windows run one at a time while the
model keeps up and in batches when frames are waiting. Each connection of the source is a segment:
windows never span two (a ``"gap"`` event between them), and a change of frame size starts a new one.
Unlike a file's timeline, a segment has no last window ending at its last frame. Each window says how
far its end is behind the live edge (``lag``); a model slower than the stream skips the windows over
``LiveSource.max_lag`` behind, or runs them all late (``on_behind``).
"""

import dataclasses
import os
import queue
import threading
import time

import av
import numpy as np

from keras_v4d.data.frame_size import MAX_FRAME_PIXELS
from keras_v4d.data.service import put_until_stopped
from keras_v4d.data.video_io import VideoReadError
from keras_v4d.inference.algorithm1 import MAX_ELEMENTS, check_mode
from keras_v4d.inference.timeline import DEFAULT_HOP_SECONDS, DEFAULT_WINDOW_SECONDS, TimelineStream, timeline_grid
from keras_v4d.records.sampling import resolve_sampling

LIVE_MODE = "all_units"  # the mode that keeps up with a live stream on a CPU (benchmarks/live.py)
STALL_ACTIONS = ("wait", "exit")
BEHIND_ACTIONS = ("skip", "keep")
QUEUED_FRAMES = 32  # decoded frames the reader may be ahead by (bounds memory when the model falls behind)
# Caught up = no frame arrives within this wait: ready windows then run at once (latency); while frames
# keep coming they wait for a batch of ``windows_per_call`` (throughput). A 25-fps source sends a frame
# every 40 ms.
CAUGHT_UP_WAIT = 0.02
MAX_BACKOFF_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class LiveSource:
    """How a live source is followed.

    Attributes:
        fps: its frame rate when it does not say (None: from the stream).
        stall_timeout: seconds without a frame before a ``"stall"`` event.
        on_stall: ``"wait"`` (keep waiting) or ``"exit"`` (raise ``StreamStalled``).
        reconnect: reopen a connection that ends, with backoff (a local file is read once).
        open_timeout: seconds the first connection may take (a source that refuses is tried again
            until then) and each open may block.
        read_timeout: seconds a connection may be silent before it is reopened.
        max_lag: seconds a window's end may be behind the live edge (the newest moment of the stream,
            from the frames' arrival times) when its probabilities are given; over it, a ``"behind"`` event.
        on_behind: ``"skip"`` (ready windows that would end over ``max_lag`` behind are not run, so a
            model slower than the stream stays within about ``max_lag``; each window counts those skipped
            just before it) or ``"keep"`` (every window runs, later and later). A local file has no live
            edge: all run.
    """

    fps: float | None = None
    stall_timeout: float = 10.0
    on_stall: str = "wait"
    reconnect: bool = True
    open_timeout: float = 10.0
    read_timeout: float = 30.0
    max_lag: float = 10.0
    on_behind: str = "skip"

    def __post_init__(self):
        if self.on_stall not in STALL_ACTIONS:
            raise ValueError(f"LiveSource: `on_stall` must be one of {STALL_ACTIONS}, got {self.on_stall!r}")
        if self.on_behind not in BEHIND_ACTIONS:
            raise ValueError(f"LiveSource: `on_behind` must be one of {BEHIND_ACTIONS}, got {self.on_behind!r}")
        for name in ("stall_timeout", "open_timeout", "read_timeout", "max_lag"):
            if not getattr(self, name) > 0:
                raise ValueError(f"LiveSource: `{name}` must be positive, got {getattr(self, name)!r}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"LiveSource: `fps` must be positive or None, got {self.fps!r}")


class StreamStalled(RuntimeError):
    """No frame arrived for ``stall_timeout`` seconds and ``on_stall="exit"``."""


@dataclasses.dataclass(frozen=True)
class LiveWindow:
    """One window of a live timeline.

    Attributes:
        segment: the connection it belongs to (0, then 1 after the first reconnection or frame size change).
        start, end: stream seconds (packets' timestamps): its first frame's time and its last frame's end.
        probabilities: ``(classes,)`` float32.
        latency: seconds from its last frame's arrival (decoded) to its probabilities.
        mode: ``"all_units"`` or ``"combinations"``.
        first_frame: its first frame within the segment.
        lag: seconds its end is behind the live edge when its probabilities are given (None for a local
            file, which has no live edge).
        skipped: windows of its segment skipped since the one before it (``LiveSource.on_behind``).
    """

    segment: int
    start: float
    end: float
    probabilities: np.ndarray
    latency: float
    mode: str
    first_frame: int
    lag: float | None = None
    skipped: int = 0


@dataclasses.dataclass(frozen=True)
class LiveEvent:
    """What the source did: ``kind`` is ``"stall"`` (no frame for the stall timeout), ``"gap"`` (the
    connection ended; reconnecting), ``"segment"`` (a new segment: reconnected, or another frame size),
    ``"behind"`` (windows fell over ``LiveSource.max_lag`` behind the stream; once until they catch up)
    or ``"end"`` (the source ended and is not reconnected); ``time``: the stream time of the last frame
    before it (None before the first)."""

    kind: str
    message: str
    segment: int
    time: float | None


def is_local_file(source):
    """A path of this machine (read to its end once) rather than a URL or a device that may come back."""
    return "://" not in str(source) and os.path.isfile(source)


class _Reader(threading.Thread):
    """Decodes the source into ``items``: ``("open", fps)``, ``("frame", rgb, time, arrival)``,
    ``("lost", why)`` (reconnecting), ``("end", why)``, ``("failed", why)``."""

    def __init__(self, source, items, *, fps, reconnect, open_timeout, read_timeout, max_frame_pixels):
        super().__init__(daemon=True, name="keras_v4d-live-reader")
        self.source, self.items, self.fps = source, items, fps
        self.reconnect = reconnect and not is_local_file(source)
        self.open_timeout, self.read_timeout, self.max_frame_pixels = open_timeout, read_timeout, max_frame_pixels
        self.stopped = threading.Event()

    def put(self, item):
        return put_until_stopped(self.items, item, self.stopped, poll=0.1)

    def run(self):
        attempt, began = 0, time.monotonic()
        while not self.stopped.is_set():
            why = self.read_connection(first_until=began + self.open_timeout if attempt == 0 else None)
            if why is None:
                return
            if not self.reconnect:
                self.put(("end", why))
                return
            attempt = attempt + 1 if why.startswith("cannot open") else 1
            if attempt == 1:  # once per connection lost, not per failed attempt to reopen it
                self.put(("lost", why))
            self.stopped.wait(min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** (attempt - 1)))

    def _open(self, first_until):
        """The source opened; before ``first_until`` (the first connection), a source that refuses is
        tried again (a sender still starting up)."""
        while True:
            try:
                return av.open(str(self.source), timeout=(self.open_timeout, self.read_timeout))
            except (av.error.FFmpegError, OSError):
                if first_until is None or time.monotonic() > first_until or self.stopped.wait(0.2):
                    raise

    def read_connection(self, first_until=None):
        """Reads one connection to its end; returns why it ended (None: stopped or failed for good)."""
        try:
            container = self._open(first_until)
        except (av.error.FFmpegError, OSError) as error:
            if not self.reconnect:
                self.put(("failed", f"{self.source}: cannot be opened ({error})"))
                return None
            return f"cannot open {self.source} ({error})"
        try:
            if not container.streams.video:
                self.put(("failed", f"{self.source}: no video stream"))
                return None
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = self.fps or stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate:
                self.put(("failed", f"{self.source}: the stream has no frame rate; give fps"))
                return None
            if not self.put(("open", float(rate))):
                return None
            for index, frame in enumerate(container.decode(stream)):
                if frame.width * frame.height > self.max_frame_pixels:
                    self.put(("failed", f"{self.source}: frames of {frame.width}×{frame.height} are over "
                                        f"max_frame_pixels={self.max_frame_pixels}"))
                    return None
                moment = float(frame.time) if frame.time is not None else index / float(rate)
                if not self.put(("frame", frame.to_ndarray(format="rgb24"), moment, time.monotonic())):
                    return None
            return "the stream ended"
        except (av.error.FFmpegError, OSError) as error:
            return f"the stream broke off ({error})"
        finally:
            container.close()


class _Segment:
    """One connection's timeline: its ``TimelineStream``, when each window's last frame arrived and how
    far behind the live edge its windows are (``live``: the source has one; a local file has not)."""

    def __init__(self, number, model, sampling, grid, fps, mode, windows_per_call, max_elements, follow, live):
        self.number, self.mode, self.grid, self.fps, self.follow, self.live = number, mode, grid, fps, follow, live
        self.stream = TimelineStream(model, sampling, grid, fps, mode=mode, windows_per_call=None,
                                     max_elements=max_elements)
        self.windows_per_call = windows_per_call
        self.shape, self.arrivals = None, {}  # frame index of a window's last frame → its arrival
        # The live edge at monotonic time t is the stream time t - ahead: ``ahead`` is the least (arrival -
        # stream time) of the frames so far, the frame that came most ahead of the rest (a source may send a
        # burst on connecting; a model that falls behind only makes later frames arrive later).
        self.ahead, self.skipped, self.behind = None, 0, False
        self.window_seconds = 0.0  # what a window took to run, lately (an average weighing recent runs)

    def add(self, frame, moment, arrival):
        grid, index = self.grid, self.stream.count
        if index + 1 >= grid.window_frames and (index + 1 - grid.window_frames) % grid.hop_frames == 0:
            self.arrivals[index] = arrival
        self.ahead = arrival - moment if self.ahead is None else min(self.ahead, arrival - moment)
        self.stream.add_frame(frame, moment)

    def _lag(self, end, now):
        return now - self.ahead - end if self.live else None

    def _skip_late(self):
        """With ``on_behind="skip"``, passes over the oldest ready windows while the ones left would end
        over ``max_lag`` behind once run (their lag now plus what running them takes). The newest is
        kept unless its lag now is over ``max_lag`` less one window's run time, or less half of
        ``max_lag`` for windows slower than that, so some window always runs in time."""
        stream, grid, max_lag = self.stream, self.grid, self.follow.max_lag
        if not self.live or self.follow.on_behind != "skip":
            return
        now, ready, late = time.monotonic(), stream.pending_windows(), 0
        while late < ready:
            last = (stream.next_window + late) * grid.hop_frames + grid.window_frames - 1
            lag = self._lag(stream.times[last] + 1.0 / self.fps, now)
            if late == ready - 1:
                if lag <= max_lag - min(self.window_seconds, max_lag / 2):
                    break
            elif lag + (ready - late) * self.window_seconds <= max_lag:
                break
            late += 1
        if late:
            for k in range(stream.next_window, stream.next_window + late):
                self.arrivals.pop(k * grid.hop_frames + grid.window_frames - 1)
            stream.skip_windows(late)
            self.skipped += late

    def _behind_event(self, lag):
        """A ``"behind"`` event the first time a window is over ``max_lag`` behind (or skipped), again only
        after the windows have come within half of it."""
        follow = self.follow
        if lag is None or lag <= follow.max_lag and not self.skipped:
            if lag is not None and lag < follow.max_lag / 2:
                self.behind = False
            return None
        if self.behind:
            return None
        self.behind = True
        what = ("windows that would end over it are skipped" if follow.on_behind == "skip" else
                "every window still runs, later and later (on_behind keep)")
        hint = "; mode all_units keeps up on a CPU" if self.mode == "combinations" else ""
        return f"windows fell over max_lag={follow.max_lag:g} s behind the stream, the model running slower " \
               f"than it ({self.mode} mode): {what}{hint}"

    def windows(self, run_all):
        """The ready windows, run when there are ``windows_per_call`` of them or ``run_all``, as
        ``LiveWindow``s, each after the ``"behind"`` event it brings, if any."""
        # Skipping behind a live source, a window waiting for a batch only gets later: each runs when ready
        # (kept windows run in batches, the most windows per second).
        skipping = self.behind and self.follow.on_behind == "skip"
        if run_all or self.stream.pending_windows() >= (1 if skipping else self.windows_per_call):
            self._skip_late()
            count = self.stream.pending_windows()
            if count:
                began = time.monotonic()
                self.stream.run_windows(count)
                seconds = (time.monotonic() - began) / count
                self.window_seconds = seconds if not self.window_seconds else 0.7 * self.window_seconds + 0.3 * seconds
        now, found = time.monotonic(), []
        for first, probabilities, start, end in self.stream.take_windows():
            last = first + self.grid.window_frames - 1
            lag = self._lag(end, now)
            message = self._behind_event(lag)
            if message:
                found.append(LiveEvent("behind", message, self.number, float(end)))
            found.append(LiveWindow(self.number, float(start), float(end), np.asarray(probabilities, np.float32),
                                    now - self.arrivals.pop(last), self.mode, int(first), lag, self.skipped))
            self.skipped = 0
        return found


def live_timeline(model, source, sampling=None, *, window=DEFAULT_WINDOW_SECONDS, hop=DEFAULT_HOP_SECONDS,
                  mode=LIVE_MODE, follow=LiveSource(), windows_per_call=8, max_elements=MAX_ELEMENTS,
                  max_frame_pixels=MAX_FRAME_PIXELS):
    """Yields ``LiveWindow``s and ``LiveEvent``s of ``source`` as it arrives (see the module).

    ``sampling``: the model's test protocol (default: its fixed U/T and the defaults); ``window`` /
    ``hop``: seconds, as ``video_timeline`` rounds them; ``mode``: ``"all_units"`` (default: it keeps
    up on a CPU) or ``"combinations"`` (Algorithm 1); ``follow``: a ``LiveSource`` (frame rate, stall
    timeout and what a stall does, reconnection, timeouts). With no frame for ``follow.stall_timeout``
    seconds a ``"stall"`` event is yielded and, with ``on_stall="exit"``, ``StreamStalled`` raised.
    Raises ``VideoReadError`` when the source cannot be opened (and is not reconnected) or has no video.
    """
    sampling = sampling or resolve_sampling(model)
    check_mode(mode)
    items = queue.Queue(maxsize=QUEUED_FRAMES)
    reader = _Reader(source, items, fps=follow.fps, reconnect=follow.reconnect, open_timeout=follow.open_timeout,
                     read_timeout=follow.read_timeout, max_frame_pixels=max_frame_pixels)
    reader.start()
    try:
        yield from _follow(items, model, sampling, window, hop, mode, follow, windows_per_call, max_elements,
                           live=not is_local_file(source))
    finally:
        reader.stopped.set()


def _follow(items, model, sampling, window, hop, mode, follow, windows_per_call, max_elements, live):
    segment, last_time, number, fps = None, None, -1, None
    stall_timeout = follow.stall_timeout

    def new_segment(message):
        nonlocal segment, number
        number += 1
        segment = _Segment(number, model, sampling, timeline_grid(sampling, fps, window, hop), fps, mode,
                           windows_per_call, max_elements, follow, live)
        return LiveEvent("segment", message, number, last_time)

    waiting = None  # a frame taken to see whether the model has caught up, not handled yet
    while True:
        try:
            item, waiting = waiting or items.get(timeout=stall_timeout), None
        except queue.Empty:
            yield LiveEvent("stall", f"no frame for {stall_timeout:g} s", max(number, 0), last_time)
            if follow.on_stall == "exit":
                raise StreamStalled(f"no frame for {stall_timeout:g} s after stream time {last_time}") from None
            continue
        kind = item[0]
        if kind == "open":
            fps, segment = item[1], None
        elif kind == "frame":
            frame, last_time = item[1], item[2]
            if segment is not None and segment.shape is not None and frame.shape != segment.shape:
                yield from segment.windows(run_all=True)
                yield new_segment(f"the frame size changed from {segment.shape[1]}×{segment.shape[0]} to "
                                  f"{frame.shape[1]}×{frame.shape[0]}")
            elif segment is None:
                event = new_segment("the stream opened" if number < 0 else "reconnected")
                if event.segment:
                    yield event
            segment.shape = frame.shape
            segment.add(frame, item[2], item[3])
            try:
                waiting = items.get(timeout=CAUGHT_UP_WAIT)
            except queue.Empty:
                pass
            yield from segment.windows(run_all=waiting is None)  # caught up: run what is ready now
        else:
            if segment is not None:
                yield from segment.windows(run_all=True)
            if kind == "failed":
                raise VideoReadError(item[1])
            yield LiveEvent("gap" if kind == "lost" else "end", item[1], max(number, 0), last_time)
            if kind == "end":
                return
            segment = None
