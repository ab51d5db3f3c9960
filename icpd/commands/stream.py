"""``icpd stream``: segment a video file, a folder of frames, a camera or an RTSP/HTTP stream."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from icpd.commands.common import (
    BackendOpt,
    DeviceOpt,
    EnginesOpt,
    ModelDirOpt,
    OverlapOpt,
    QuietOpt,
    ThreadsOpt,
    ThresholdOpt,
    TileBatchOpt,
    TileOpt,
    finite_number,
)
from icpd.config import Backend

if TYPE_CHECKING:
    from typing_extensions import Self

    from icpd.apps.stream.pipeline import FrameResult, StreamSummary

INTERRUPTED = 130  # the shell's code for a process ended by SIGINT (128 + 2)


class _SigintStops:
    """While active, the first Ctrl-C sets ``stop`` (capture ends, queued frames are drained, the
    outputs finalised); a second one raises KeyboardInterrupt (skips the drain, still finalises)."""

    def __init__(self, stop: threading.Event, console: Any) -> None:
        self.stop, self.console = stop, console
        self.previous: Any = None

    def _handle(self, signum: int, frame: object) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        self.console.print("stopping: finishing the frames in flight (Ctrl-C again to abort)",
                           markup=False, highlight=False)

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():  # signal handlers live there only
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


class _Status:
    """A one-line live status on a terminal (frames out, latency), refreshed at most every 0.5 s."""

    def __init__(self, console: Any, enabled: bool) -> None:
        self.status = console.status("waiting for the first frame", spinner="dots") if enabled else None
        self.frames, self.shown = 0, 0.0

    def __call__(self, result: FrameResult) -> None:  # called by the output thread, per frame
        self.frames += 1
        now = time.monotonic()
        if self.status is not None and now - self.shown >= 0.5:
            self.shown = now
            self.status.update(f"frame {result.frame.index}: {self.frames} segmented, "
                               f"latency {result.latency * 1000:.0f} ms")

    def __enter__(self) -> Self:
        if self.status is not None:
            self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.stop()


def _report(summary: StreamSummary, out_path: Path | None) -> str:
    lat = summary.latency_ms
    latency = f"latency p50 {lat['p50']:.0f} / p90 {lat['p90']:.0f} / p99 {lat['p99']:.0f} ms" if lat else "no frame"
    where = f"; wrote {out_path} (+ .jsonl, .summary.json)" if out_path is not None else ""
    return (f"{summary.frames_out} of {summary.frames_in} frame(s) segmented ({summary.dropped} dropped, "
            f"{summary.skipped} skipped), {summary.fps:.2f} fps, {latency}; {summary.end_reason}{where}")


def stream_cmd(
    source: Annotated[str, typer.Argument(help="Video file, folder of frames, camera index (0) or device "
                                               "(/dev/video0), or URL (rtsp://, http://).", show_default=False)],
    model: ModelDirOpt,
    support: Annotated[list[Path], typer.Option("--support", "-s",
                                                help="Support cache of one class (`icpd "
                                                     "cache-support`); repeat per class.")],
    out_path: Annotated[Path | None, typer.Option("--out", "-o",
                                                  help="Overlay video (.mp4 or .avi); OUT.jsonl and "
                                                       "OUT.summary.json go beside it. Default: no files.")] = None,
    realtime: Annotated[bool, typer.Option("--realtime", help="Process the newest frame when inference "
                                                              "falls behind; count the dropped ones (files "
                                                              "play at their frame rate).")] = False,
    every: Annotated[int, typer.Option(min=1, help="Process one frame in N.")] = 1,
    fps: Annotated[float | None, typer.Option(min=0.001, callback=finite_number,
                                              help="Frame rate of a folder of frames (default "
                                                   "10), or override the source's.")] = None,
    queue: Annotated[int | None, typer.Option(min=1, help="Frames waiting for inference at most. "
                                                          "Default: 1 with --realtime, else 4.")] = None,
    max_frames: Annotated[int | None, typer.Option(min=0, help="Stop after this many source frames.")] = None,
    backend: BackendOpt = Backend.ORT,
    engines: EnginesOpt = None,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    threshold: ThresholdOpt = 0.5,
    tile: TileOpt = None,
    overlap: OverlapOpt = 32,
    batch: TileBatchOpt = 8,
    quiet: QuietOpt = False,
) -> None:
    """Segment a video stream frame by frame (same results as `icpd infer`); Ctrl-C stops cleanly (exit 130)."""
    from icpd.apps.infer.local import open_predictor
    from icpd.apps.stream.outputs import check_outputs
    from icpd.apps.stream.pipeline import StreamOptions, run_stream
    from icpd.apps.stream.video import SourceError, open_frames
    from icpd.commands.common import console, fail, fail_os_error, out
    from icpd.runtime.tiling import SceneOptions

    stop = threading.Event()
    try:
        # refused with one line naming the option (--overlap 64 with --tile 64 was a traceback)
        options = StreamOptions(realtime=realtime, every=every, queue_size=queue, max_frames=max_frames,
                                scene=SceneOptions(threshold=threshold, tile=tile, overlap=overlap, batch=batch))
        if out_path is not None:
            check_outputs(out_path)  # a bad suffix or an unwritable folder fails before the source and the model open
        # the source opens first (cheap checks before the model's seconds); a Ctrl-C while the
        # model loads gives an empty, clean run
        with _SigintStops(stop, console), open_frames(source, fps) as src:
            predictor = open_predictor(model, support, backend=backend.value, device=device, threads=threads,
                                       engine_dir=engines)
            with _Status(console, console.is_terminal and not quiet) as status:
                summary = run_stream(predictor, src, options, out_path, on_result=status, stop=stop,
                                     about={"model": str(model), "backend": backend.value})
    except KeyboardInterrupt:  # second Ctrl-C: outputs were finalised on the way out
        console.print("interrupted", markup=False, highlight=False)
        raise typer.Exit(code=INTERRUPTED) from None
    except (SourceError, ValueError, ImportError) as e:
        fail(e)
    except OSError as e:  # an output that cannot be written (or stopped being writable): one line, exit 2
        if e.filename is None:
            raise  # not about a user's path: an internal error keeps its traceback
        fail_os_error(e)
    out.print(_report(summary, out_path), markup=False, highlight=False, soft_wrap=True)
    if summary.interrupted:
        raise typer.Exit(code=INTERRUPTED)


def register(app: typer.Typer) -> None:
    app.command("stream")(stream_cmd)
