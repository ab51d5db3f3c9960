"""``icpd stream``: segment a video, camera or network stream with bounded latency.

    with open_frames("flight.mp4") as src:
        summary = run_stream(predictor, src, StreamOptions(realtime=True), out="flight_seg.mp4")

Three stages joined by bounded queues::

    capture thread --[frames, <= queue_size]--> inference (caller's thread) --[results]--> output thread
    source.read()                               segment_array: as `icpd infer`        overlay video, JSONL

- Without ``realtime`` every selected frame is processed: a full queue makes capture wait
  (a file is simply read more slowly; a live camera's own buffer then grows).
- With ``realtime`` the frame queue keeps only the newest ``queue_size`` frames (1 by default):
  a new frame replaces the oldest waiting one, which is counted as dropped. Latency stays at
  about two inference times instead of growing. Files and folders are then read at their frame
  rate, as a camera would deliver them.
- ``every`` = N selects source frames 0, N, 2N, ...; the others are counted as skipped.
- Each frame goes through the one scene pipeline (:func:`icpd.runtime.scene.segment_array`, i.e.
  ``run_scene`` on the frame in memory) with the scene options of ``icpd infer``
  (:class:`~icpd.runtime.tiling.SceneOptions`), so its labels equal ``icpd infer`` on that frame saved
  losslessly.
- Stopping (``stop`` event set, e.g. by the CLI's SIGINT handler) ends capture; the frames
  already queued are still processed ("drained"), then the video and the JSONL are finalised.
  A KeyboardInterrupt in the inference stage skips the drain but still finalises the outputs.
- An exception in the inference or output stage (a failed write, an ``on_result`` that raises)
  stops the others at once: no stage waits on a queue whose other end is gone (every wait also
  watches the ``halt`` flag). One in capture ends capture; the frames it queued before are still
  processed. Either way every thread is joined, the outputs are finalised, and the error is
  raised in the caller's thread.

Outputs for ``out="run.mp4"`` (:mod:`icpd.apps.stream.outputs`: checked before the first
frame): ``run.mp4`` (overlay of the processed frames, at the source rate divided by ``every``),
``run.jsonl`` (one line per processed frame, on disk as written, never a half line) and
``run.summary.json`` (written atomically at the end).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from icpd.apps.stream.outputs import StreamOutputs, stream_paths
from icpd.apps.stream.video import Frame, FrameSource
from icpd.io import OutputPathError
from icpd.io.viz import overlay
from icpd.runtime.scene import segment_array
from icpd.runtime.tiling import SceneOptions

if TYPE_CHECKING:
    from icpd.runtime.predictor import Predictor

__all__ = ["FrameQueue", "FrameResult", "StreamOptions", "StreamSummary", "run_stream", "stream_paths"]

POLL_S = 0.1  # how often a waiting stage looks at the stop flag


@dataclass(frozen=True)
class StreamOptions:
    """How to run a stream; ``scene`` holds the per-frame scene options shared with ``icpd infer``."""

    realtime: bool = False  # keep only the newest frames when inference falls behind (drops counted)
    every: int = 1  # process source frames 0, N, 2N, ...
    queue_size: int | None = None  # frames waiting for inference; default 1 with realtime, 4 without
    max_frames: int | None = None  # stop after this many source frames (None: until the source ends)
    alpha: float = 0.5  # opacity of the class colours in the overlay video
    scene: SceneOptions = field(default_factory=SceneOptions)  # threshold, tiling, batch: as `icpd infer`

    @property
    def bound(self) -> int:
        return self.queue_size if self.queue_size is not None else (1 if self.realtime else 4)

    def for_model(self, model_size: int) -> StreamOptions:
        """These options checked, with the scene options' tile resolved for a model of input
        ``model_size`` (:meth:`SceneOptions.for_model`): once per stream.

        Raises:
            ParamError (a ValueError): naming the field (``every=0``; ``--every 0`` on the command line).
        """
        from icpd.errors import ParamError, arg

        if self.every < 1:
            raise ParamError(f"{arg('every', self.every)}: must be >= 1 (1 processes every frame)")
        if self.bound < 1:
            raise ParamError(f"{arg('queue_size', self.bound)}: must be >= 1")
        if self.max_frames is not None and self.max_frames < 0:
            raise ParamError(f"{arg('max_frames', self.max_frames)}: must be >= 0")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"overlay alpha {self.alpha}: must be in [0, 1]")
        return replace(self, scene=self.scene.for_model(model_size))


@dataclass
class FrameResult:
    """One processed frame: labels (H, W) uint8 (0 background, i + 1 = class_names[i]);
    latency from capture to result in seconds; pixels: class -> labelled pixel count."""

    frame: Frame
    labels: np.ndarray
    latency: float
    pixels: dict[str, int]

    def record(self) -> dict[str, Any]:
        """The frame's JSONL line."""
        return {"frame": self.frame.index, "timestamp_s": round(self.frame.timestamp, 6),
                "latency_ms": round(self.latency * 1000.0, 3), "size": list(self.labels.shape),
                "pixels": self.pixels}


@dataclass
class StreamSummary:
    """What a run did; ``frames_in = skipped + dropped + frames_out + unprocessed``."""

    source: str
    end_reason: str  # "end of source (...)", "source stopped sending frames ...", "interrupted", ...
    interrupted: bool
    frames_in: int  # frames read from the source
    skipped: int  # not selected by --every
    dropped: int  # replaced by a newer frame while waiting (--realtime)
    frames_out: int  # processed: lines in the JSONL, frames in the video
    unprocessed: int  # captured but abandoned by an abort (a second Ctrl-C, an error)
    seconds: float  # from the first captured frame to the last result
    fps: float  # frames_out / seconds
    latency_ms: dict[str, float]  # capture -> result: p50, p90, p99, max, mean
    queue_bound: int
    queue_max_depth: int  # deepest the frame queue ever was (never above queue_bound)
    source_fps: float | None
    classes: list[str]
    options: dict[str, Any]
    outputs: dict[str, str | None]


class FrameQueue:
    """A bounded FIFO between two threads. ``put`` blocks while full, or with ``drop_oldest``
    evicts the oldest item (counted in ``dropped``). ``close()`` lets ``get`` return None once
    empty. ``max_depth`` records the deepest it has been."""

    def __init__(self, bound: int, drop_oldest: bool = False) -> None:
        self.bound, self.drop_oldest = bound, drop_oldest
        self.items: deque[Any] = deque()
        self.cond = threading.Condition()
        self.closed = False
        self.dropped = 0
        self.max_depth = 0

    def put(self, item: Any, give_up: Callable[[], bool]) -> bool:
        """Queue ``item``; returns False (item not queued) if ``give_up()`` turns true while waiting."""
        with self.cond:
            while len(self.items) >= self.bound:
                if self.drop_oldest:
                    self.items.popleft()
                    self.dropped += 1
                elif give_up():
                    return False
                else:
                    self.cond.wait(POLL_S)
            self.items.append(item)
            self.max_depth = max(self.max_depth, len(self.items))
            self.cond.notify_all()
            return True

    def get(self, give_up: Callable[[], bool] | None = None) -> Any:
        """The oldest item, waiting for one; None once the queue is closed and empty, or if
        ``give_up()`` turns true while waiting (the producer's stage failed)."""
        with self.cond:
            while not self.items:
                if self.closed or (give_up is not None and give_up()):
                    return None
                self.cond.wait(POLL_S)
            item = self.items.popleft()
            self.cond.notify_all()
            return item

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def clear(self) -> int:
        """Discard what is queued; returns how many items."""
        with self.cond:
            n = len(self.items)
            self.items.clear()
            self.cond.notify_all()
            return n


def _percentiles(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    ms = np.asarray(latencies) * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50": round(float(p50), 3), "p90": round(float(p90), 3), "p99": round(float(p99), 3),
            "max": round(float(ms.max()), 3), "mean": round(float(ms.mean()), 3)}


class _Run:
    """The state the three stages share; one per :func:`run_stream` call."""

    def __init__(self, source: FrameSource, options: StreamOptions, stop: threading.Event) -> None:
        self.source, self.options, self.stop = source, options, stop
        self.halt = threading.Event()  # internal: a stage failed or the inference stage was aborted
        self.frames = FrameQueue(options.bound, drop_oldest=options.realtime)
        self.results = FrameQueue(8)  # output is quick; a bound keeps memory flat if it is not
        self.frames_in = self.skipped = 0
        self.end_reason = ""
        self.errors: list[BaseException] = []
        self.first_capture: float | None = None
        self.written = 0  # results the output stage has finished

    def stopping(self) -> bool:
        return self.stop.is_set() or self.halt.is_set()

    def capture(self) -> None:
        """Capture stage (own thread): read, select, pace, queue; closes the frame queue at the end."""
        opts, src = self.options, self.source
        start: float | None = None
        try:
            # a recording replayed like a camera
            pace = opts.realtime and not src.live and src.fps is not None
            while True:
                if self.stopping():
                    self.end_reason = "interrupted" if self.stop.is_set() else "stopped"
                    break
                if opts.max_frames is not None and self.frames_in >= opts.max_frames:
                    self.end_reason = f"the frame limit ({opts.max_frames}) reached"
                    break
                frame = src.read()
                if frame is None:
                    self.end_reason = src.end_reason or "end of source"
                    break
                if pace:
                    assert src.fps is not None
                    start = frame.captured if start is None else start
                    delay = start + self.frames_in / src.fps - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    frame.captured = time.perf_counter()
                self.frames_in += 1
                if self.first_capture is None:
                    self.first_capture = frame.captured
                if frame.index % opts.every:
                    self.skipped += 1
                    continue
                # a stop still queues this frame (it is in flight, the drain takes it); an abort does not
                if not self.frames.put(frame, self.halt.is_set):
                    break
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread after finalising
            self.errors.append(e)
            self.end_reason = f"capture error: {type(e).__name__}: {e}"
        finally:
            self.frames.close()  # the frames captured before an error are still processed, then it is raised

    def output(self, sinks: StreamOutputs | None, on_result: Callable[[FrameResult], None] | None) -> None:
        """Output stage (own thread): overlay video + JSONL line, then the callback. On an error it
        sets ``halt`` (the other stages stop) and discards what is queued; the caller closes ``sinks``."""
        try:
            while (result := self.results.get()) is not None:
                if sinks is not None:
                    tinted = overlay(result.frame.pixels, result.labels, self.options.alpha)
                    sinks.write(tinted, result.record())
                self.written += 1
                if on_result is not None:
                    on_result(result)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread after finalising
            self.errors.append(e)
            self.halt.set()
            self.results.clear()


def run_stream(predictor: Predictor, source: FrameSource, options: StreamOptions = StreamOptions(),
               out: str | os.PathLike[str] | None = None,
               on_result: Callable[[FrameResult], None] | None = None, stop: threading.Event | None = None,
               about: dict[str, Any] | None = None) -> StreamSummary:
    """Segment ``source`` frame by frame with ``predictor`` (module docstring: stages, queues, outputs).

    Args:
        predictor: a Predictor with its support sets added (one class each).
        source: an open frame source (:func:`icpd.apps.stream.video.open_frames`); the caller closes it.
        options: realtime / every / queue bound; ``options.scene`` as for ``icpd infer``.
        out: the overlay video (.mp4 or .avi); the JSONL and summary go beside it. None: no files.
        on_result: called in the output thread with each processed frame, in order.
        stop: set it (from a signal handler or another thread) to stop capture and drain.
        about: extra entries for the summary file (e.g. the model path and backend).

    Raises:
        ValueError: bad options or output suffix (nothing is written then).
        OutputPathError: ``out`` cannot be written (found before the first frame; nothing is
            written then), or a write failed midway (a full disk, a quota, a file size limit):
            raised after the outputs are finalised, its message says what they hold.
        Any other error inside a stage is re-raised here, after the outputs are finalised.
    """
    # checked, the tile resolved: once per stream
    scene = options.for_model(predictor.preset.image_size).scene
    assert scene.tile is not None
    if not predictor.class_names:
        raise ValueError("no support set: add one to the predictor first (predictor.add_support(path), e.g. "
                         "a CLASS.support file from `icpd cache-support`)")
    sinks = StreamOutputs(out, (source.fps or 10.0) / options.every) if out is not None else None
    run = _Run(source, options, stop if stop is not None else threading.Event())
    names = predictor.class_names
    latencies: list[float] = []
    t_last = time.perf_counter()
    capture = threading.Thread(target=run.capture, name="icpd-capture", daemon=True)
    output = threading.Thread(target=run.output, args=(sinks, on_result), name="icpd-output", daemon=True)
    try:
        output.start()
        capture.start()
        while not run.halt.is_set() and (frame := run.frames.get(run.halt.is_set)) is not None:
            labels = segment_array(predictor, frame.pixels, scene.tile, scene.overlap, scene.batch,
                                   scene.threshold).labels
            t_last = time.perf_counter()
            latencies.append(t_last - frame.captured)
            counts = np.bincount(labels.ravel(), minlength=len(names) + 1)
            result = FrameResult(frame, labels, t_last - frame.captured,
                                 {c: int(counts[i + 1]) for i, c in enumerate(names)})
            run.results.put(result, run.halt.is_set)
    except BaseException as e:  # noqa: BLE001 - re-raised below, after the outputs are finalised
        run.halt.set()  # abort: no drain; what is queued for output is still written
        run.errors.insert(0, e)
    finally:
        if run.errors:
            run.halt.set()
        if capture.ident is not None:
            capture.join(timeout=10.0)  # a live source blocked in read() is left to its timeout (daemon)
        run.frames.clear()  # abandoned by an abort: counted as unprocessed
        run.results.close()
        if output.ident is not None:
            output.join()  # ends once the queue is closed and empty (cleared after its own error)
        if sinks is not None and (video_error := sinks.close()) is not None:
            run.errors.append(video_error)
    summary = _summary(run, predictor, latencies, t_last, sinks)
    summary_error: OutputPathError | None = None
    if sinks is not None:
        try:
            sinks.write_summary(asdict(summary) | (about or {}))
        except OutputPathError as e:
            summary_error = e
    first_error = run.errors[0] if run.errors else summary_error
    # a user's disk: one line saying what is kept
    if isinstance(first_error, OutputPathError) and sinks is not None:
        kept = sinks.kept(first_error, summary_written=summary_error is None)
        raise OutputPathError(first_error.errno, f"{first_error.strerror} ({kept})",
                              first_error.filename) from first_error
    if first_error is not None:  # internal errors keep their traceback; a KeyboardInterrupt goes on up
        raise first_error
    return summary


def _summary(run: _Run, predictor: Predictor, latencies: list[float], t_last: float,
             sinks: StreamOutputs | None) -> StreamSummary:
    options, source, names = run.options, run.source, predictor.class_names
    first_error = run.errors[0] if run.errors else None
    interrupted = isinstance(first_error, KeyboardInterrupt) or (first_error is None and run.stop.is_set())
    if interrupted:
        reason = "interrupted"
    elif first_error is not None and not run.end_reason.startswith("capture error"):
        reason = f"error: {type(first_error).__name__}: {first_error}"
    else:
        reason = run.end_reason
    seconds = max(t_last - run.first_capture, 1e-9) if run.first_capture is not None and latencies else 0.0
    return StreamSummary(
        source=source.description, end_reason=reason, interrupted=interrupted, frames_in=run.frames_in,
        skipped=run.skipped, dropped=run.frames.dropped, frames_out=run.written,
        unprocessed=run.frames_in - run.skipped - run.frames.dropped - run.written,
        seconds=round(seconds, 4), fps=round(run.written / seconds, 3) if seconds else 0.0,
        latency_ms=_percentiles(latencies[: run.written]), queue_bound=options.bound,
        queue_max_depth=run.frames.max_depth, source_fps=source.fps, classes=names,
        options={k: v for k, v in asdict(options).items() if k != "scene"}
        | {k: getattr(options.scene, k) for k in ("threshold", "tile", "overlap", "batch")},
        outputs=sinks.outputs() if sinks is not None else {},
    )
