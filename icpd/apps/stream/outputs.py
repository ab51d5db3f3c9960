"""The files of one ``icpd stream`` run: checked before the first frame, written frame by frame,
finalised whatever happens.

For ``out="run.mp4"``: ``run.mp4`` (overlay video), ``run.jsonl`` (one line per processed frame)
and ``run.summary.json`` (written atomically at the end).

- :func:`check_outputs` (the CLI calls it before the model loads; :class:`StreamOutputs` again
  before the first frame) refuses a folder that cannot be written, a name that is a folder, a
  path through a file, and a disk without room to finalise the video: one
  :class:`~icpd.io.OutputPathError`, before any work.
- The JSONL is written line by line, unbuffered; a line that cannot be written whole (a full
  disk, a quota, a file size limit) is cut back off, so every line of the file is complete JSON.
- Before each frame the free space is checked: below :func:`reserve_bytes` the run stops with
  the video still finalisable (its index, written at the end, and the summary need room). A
  write that fails anyway (a quota, a file size limit, another program filling the disk) is
  found when the video is closed: :meth:`icpd.apps.stream.video.OverlayWriter.close` removes a video
  that is not whole and says so.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from icpd.apps.stream.video import OverlayWriter, video_fourcc
from icpd.io import OutputPathError, atomic_write, ensure_writable

__all__ = ["JsonlWriter", "StreamOutputs", "check_outputs", "reserve_bytes", "stream_paths"]

RESERVE_BASE = 4 * 2**20  # bytes kept free for the video's index, the summary and the file system's own needs
RESERVE_PER_FRAME = 64  # bytes of video index per frame (MP4 moov: ~12, AVI idx1: 16), with a margin


def reserve_bytes(frames: int) -> int:
    """Free space (bytes) a run needs to finalise a video of ``frames`` frames and write its summary."""
    return RESERVE_BASE + RESERVE_PER_FRAME * frames


def stream_paths(out: str | os.PathLike[str]) -> dict[str, Path]:
    """The three output files of ``out`` (the overlay video): video, jsonl, summary."""
    video = Path(out)
    return {"video": video, "jsonl": video.with_suffix(".jsonl"),
            "summary": video.with_suffix(".summary.json")}


def _free_bytes(folder: Path) -> int | None:
    """Free space in ``folder`` (or its nearest existing ancestor) for any user: root's reserved blocks
    are left aside, so a run as root stops where a user's would. None where unknown."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _low_space(folder: Path, free: int, frames: int) -> OutputPathError:
    need = reserve_bytes(frames) / 2**20
    return OutputPathError(errno.ENOSPC, f"only {free / 2**20:.1f} MiB free; a run keeps {need:.1f} MiB free "
                                         "to finalise its video", str(folder))


def check_outputs(out: str | os.PathLike[str]) -> dict[str, Path]:
    """The output files of ``out`` (:func:`stream_paths`), checked without writing anything.

    Raises:
        ValueError: the video's suffix is not .mp4 or .avi.
        OutputPathError: a name is a folder, the folder (or the nearest existing one above it)
            cannot be written, a part of the path is a file, or the disk has less free space than
            :func:`reserve_bytes`.
    """
    paths = stream_paths(out)
    video_fourcc(paths["video"])  # a suffix OpenCV writes
    for path in paths.values():
        if path.is_dir():
            raise OutputPathError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    folder = paths["video"].parent
    ensure_writable(folder, folder=True)  # probes a real file: read-only mounts and root alike
    free = _free_bytes(folder)
    if free is not None and free < reserve_bytes(0):
        raise _low_space(folder, free, 0)
    return paths


class JsonlWriter:
    """One JSON object per line, each written with one unbuffered ``os.write`` loop (on disk as soon
    as the frame is done). A line that fails midway is cut back off: the file only ever holds
    whole lines, and the error (an :class:`~icpd.io.OutputPathError`) names the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        except OSError as err:
            raise OutputPathError(err.errno, err.strerror, str(path)) from None
        self.size = 0  # bytes of whole lines
        self.last = 0  # where the last line starts (undo)
        self.lines = 0

    def write(self, record: dict[str, Any]) -> None:
        assert self.fd is not None, "written after close()"
        payload = (json.dumps(record) + "\n").encode("utf-8")
        data = memoryview(payload)
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError as err:
            self._truncate(self.size)
            raise OutputPathError(err.errno, err.strerror, str(self.path)) from None
        self.last, self.size = self.size, self.size + len(payload)
        self.lines += 1

    def undo(self) -> None:
        """Remove the last line (its frame could not be written to the video)."""
        if self.lines:
            self._truncate(self.last)
            self.size, self.lines = self.last, self.lines - 1

    def _truncate(self, size: int) -> None:
        if self.fd is not None:
            # shrinking needs no space; if it fails there is nothing better to do
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, size)
                os.lseek(self.fd, size, os.SEEK_SET)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class StreamOutputs:
    """The video, JSONL and summary of one run. Created in the caller's thread before the first
    frame (so an unwritable ``--out`` fails there), written by the output stage, closed once.

    Raises (constructor): see :func:`check_outputs`; the JSONL is created (empty) here.
    """

    def __init__(self, out: str | os.PathLike[str], fps: float) -> None:
        self.paths = check_outputs(out)
        folder = self.paths["video"].parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputPathError(err.errno, err.strerror, err.filename or str(folder)) from None
        self.jsonl = JsonlWriter(self.paths["jsonl"])
        self.video = OverlayWriter(self.paths["video"], fps)
        self.video_error: OutputPathError | None = None  # set by close() when the video had to be removed

    @property
    def frames(self) -> int:
        """Frames in both files (a JSONL line and a video frame each)."""
        return self.jsonl.lines

    def write(self, rgb: np.ndarray, record: dict[str, Any]) -> None:
        """Append one frame: ``rgb`` (H, W, 3) uint8 overlay to the video, ``record`` to the JSONL.
        Both or neither (as far as OpenCV reports). Raises OutputPathError when the disk is nearly full."""
        free = _free_bytes(self.paths["video"].parent)
        if free is not None and free < reserve_bytes(self.frames + 1):
            raise _low_space(self.paths["video"].parent, free, self.frames)
        self.jsonl.write(record)
        try:
            self.video.write(rgb)
        except BaseException:
            self.jsonl.undo()
            raise

    def close(self) -> OutputPathError | None:
        """Finalise both files; returns the error of a video that was not whole (and was removed)."""
        self.jsonl.close()
        try:
            self.video.close()
        except OutputPathError as err:
            self.video_error = err
        return self.video_error

    def outputs(self) -> dict[str, str | None]:
        """The summary's ``outputs``: video None when none was written (no frame, or removed)."""
        whole = self.video.frames and self.video_error is None
        return {k: (str(p) if k != "video" or whole else None) for k, p in self.paths.items()}

    def write_summary(self, doc: dict[str, Any]) -> None:
        try:
            with atomic_write(self.paths["summary"]) as tmp:
                tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        except OSError as err:  # the temporary file's name means nothing to the user: name the summary
            raise OutputPathError(err.errno, err.strerror, str(self.paths["summary"])) from None

    def kept(self, primary: BaseException, summary_written: bool = True) -> str:
        """What the files hold after a run stopped by ``primary`` (an output error), for its message."""
        held = f"{self.paths['jsonl']}" + (f" and {self.paths['summary'].name}" if summary_written else "")
        parts = [f"{self.frames} frame(s) written, {held} hold{'' if summary_written else 's'} them"]
        video = self.paths["video"]
        if self.video_error is not None and self.video_error is not primary:
            parts.append(f"{video} could not be finalised and was removed")
        elif self.video_error is None and self.video.frames:
            parts.append(f"{video} is finalised")
        if not summary_written:
            parts.append(f"{self.paths['summary'].name} could not be written")
        return "; ".join(parts)
