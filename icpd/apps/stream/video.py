"""Frame sources and the overlay-video writer of ``icpd stream``.

    with open_frames("flight.mp4") as src:      # or "frames/", "0", "/dev/video0", "rtsp://..."
        while (frame := src.read()) is not None:
            ...                                  # frame.pixels: (H, W, 3) uint8 RGB

Videos, cameras and URLs go through OpenCV's ``VideoCapture`` (its FFmpeg backend where
available); a folder of frames is read in sorted order with :func:`icpd.io.read_image`, so a
frame decodes exactly as ``icpd infer`` decodes the same file. Every frame leaves here as RGB
(OpenCV's BGR is converted at this boundary, both ways).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import cv2
import numpy as np

from icpd.io import IMAGE_SUFFIXES, ImageError, OutputPathError, list_inputs, read_image

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["VIDEO_SUFFIXES", "Frame", "FrameSource", "OverlayWriter", "SourceError", "container_problem",
           "open_frames", "video_fourcc"]

FOLDER_FPS = 10.0  # frame rate assumed for a folder of frames when none is given (``fps``)
URL_TIMEOUT_MS = 10_000  # open / read timeout of network streams: a dead camera ends the run, not hangs it
VIDEO_SUFFIXES = {".mp4": "mp4v", ".avi": "MJPG"}  # overlay video container -> fourcc both play everywhere


class SourceError(ValueError):
    """A video source that cannot be opened or read; the message names it and says what to check."""


@dataclass
class Frame:
    """One captured frame: ``index`` counts every frame of the source from 0; ``timestamp`` is the
    source's time of the frame in seconds (container time for files, index / fps for folders,
    seconds since opening for live sources); ``captured`` is ``time.perf_counter()`` when it was
    read (the start of the capture -> result latency); ``pixels`` (H, W, 3) uint8 RGB."""

    index: int
    timestamp: float
    captured: float
    pixels: np.ndarray


class FrameSource:
    """Base of the sources: ``read()`` returns the next :class:`Frame`, or None at the end with
    ``end_reason`` saying why. ``live`` sources (cameras, URLs) deliver frames at their own rate;
    files and folders as fast as they are read. Use as a context manager (closes the source)."""

    description: str = ""
    fps: float | None = None  # frames per second, when the source knows it
    live: bool = False
    end_reason: str = ""

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class FolderSource(FrameSource):
    """The images of a folder (or one image file), in sorted order, at ``fps`` frames per second."""

    def __init__(self, path: Path, fps: float | None) -> None:
        self.paths = list_inputs(path)
        if not self.paths:
            raise SourceError(f"source {path}: no images ({' '.join(IMAGE_SUFFIXES)}) in this folder")
        self.description = f"folder {path} ({len(self.paths)} frames)"
        self.fps = fps or FOLDER_FPS
        self.next = 0

    def read(self) -> Frame | None:
        if self.next >= len(self.paths):
            self.end_reason = f"end of source ({len(self.paths)} frames)"
            return None
        i, path = self.next, self.paths[self.next]
        try:
            pixels = read_image(path).pixels
        except ImageError as e:
            self.end_reason = f"frame {i} unreadable: {e}"
            return None
        self.next += 1
        assert self.fps is not None
        return Frame(i, i / self.fps, time.perf_counter(), pixels)


class CaptureSource(FrameSource):
    """An OpenCV ``VideoCapture``: a video file, a camera index or device path, or a URL."""

    def __init__(self, target: int | str, description: str, live: bool, fps: float | None) -> None:
        self.description, self.live = description, live
        with _native_stderr() as said:  # FFmpeg and OpenCV print their reasons on fd 2, lines of their own
            if isinstance(target, str) and "://" in target:
                params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, URL_TIMEOUT_MS,
                          cv2.CAP_PROP_READ_TIMEOUT_MSEC, URL_TIMEOUT_MS]
                self.cap = cv2.VideoCapture(target, cv2.CAP_ANY, params)
            else:
                self.cap = cv2.VideoCapture(target)
            opened = self.cap.isOpened()
        if not opened:  # their reason goes into the one error line
            reason = f" ({said[0]})" if said else ""  # the first: the cause, later ones fallbacks
            raise SourceError(f"source {description}: OpenCV could not open it{reason}; {_hint(target)}")
        for line in said:  # opened after all: what they said is a warning, shown as printed
            print(line, file=sys.stderr)
        if live:  # keep the driver's queue short: old frames there are latency
            self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        own_fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps or (own_fps if 0 < own_fps < 1000 else None)
        self.frame_count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not live else 0
        self.opened = time.perf_counter()
        self.next = 0
        self.first = self._grab()  # a file that opens but does not decode fails here, named
        if self.first is None:
            self.close()
            raise SourceError(f"source {description}: opened, but no frame could be read; {_hint(target)}")

    def _grab(self) -> Frame | None:
        ok, bgr = self.cap.read()
        now = time.perf_counter()
        if not ok or bgr is None:
            return None
        if bgr.ndim == 2:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        rgb = np.ascontiguousarray(bgr[:, :, 2::-1])  # BGR(A) -> RGB
        if self.live:
            stamp = now - self.opened
        else:
            stamp = self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        frame = Frame(self.next, stamp, now, rgb)
        self.next += 1
        return frame

    def read(self) -> Frame | None:
        if self.first is not None:
            frame, self.first = self.first, None
            frame.captured = time.perf_counter()  # latency counts from when the pipeline took it
            return frame
        frame = self._grab()
        if frame is None:
            if self.live:
                self.end_reason = f"source stopped sending frames after {self.next} (disconnected or closed)"
            elif self.frame_count and self.next < self.frame_count:
                self.end_reason = f"read error after frame {self.next} of {self.frame_count}"
            else:
                self.end_reason = f"end of source ({self.next} frames)"
        return frame

    def close(self) -> None:
        self.cap.release()


@contextlib.contextmanager
def _native_stderr() -> Iterator[list[str]]:
    """Capture what native code writes on file descriptor 2 during the block: its non-empty lines,
    FFmpeg's ``[mov,mp4,... @ 0x...]`` prefix and OpenCV's ``[ WARN:...] global file.cpp:N`` cut off."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for raw in captured.read().decode("utf-8", "replace").splitlines():
                line = re.sub(r"^\[[^\]]*\]\s*(global )?(\S+\.[ch]pp:\d+ )?", "", raw.strip()).strip()
                if line:
                    lines.append(line)


def _hint(target: int | str) -> str:
    if isinstance(target, int):
        return f"check that camera {target} exists (ls /dev/video*) and is not in use by another program"
    if "://" in target:
        return ("check the URL, the network and the credentials; the stream must be reachable from this "
                "machine")
    return "check that it is a video file OpenCV's FFmpeg backend can decode (e.g. .mp4, .avi, .mkv)"


def open_frames(spec: str | os.PathLike[str], fps: float | None = None) -> FrameSource:
    """Open ``spec``: a folder of frames or an image file, a video file, a camera index ("0"), a
    device path ("/dev/video0"), or a URL ("rtsp://...", "http://..."). ``fps`` sets the frame
    rate of sources that have none (folders; default :data:`FOLDER_FPS`) or overrides theirs.

    Raises:
        SourceError: the source does not exist or cannot be opened/decoded; the message names it.
    """
    from icpd.errors import ParamError, arg

    text = str(spec)
    if fps is not None and fps <= 0:
        raise ParamError(f"{arg('fps', fps)}: must be > 0")
    if text.isdigit():
        return CaptureSource(int(text), f"camera {text}", live=True, fps=fps)
    if "://" in text:
        return CaptureSource(text, text, live=True, fps=fps)
    path = Path(text)
    if path.is_dir() or (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES):
        return FolderSource(path, fps)
    if text.startswith("/dev/"):
        if not path.exists():
            raise SourceError(f"source {text}: no such device; list cameras with `ls /dev/video*`")
        return CaptureSource(text, text, live=True, fps=fps)
    if not path.exists():
        raise SourceError(f"source {text}: no such file or folder, and not a camera index (0, 1, ...) or a "
                          "URL (rtsp://, http://); check the path")
    return CaptureSource(text, text, live=False, fps=fps)


def video_fourcc(path: Path) -> str:
    """The codec of an overlay video at ``path``, by its suffix (:data:`VIDEO_SUFFIXES`).

    Raises:
        ParamError (a ValueError, about ``out``): another suffix (the message names the path and the
        suffixes there are).
    """
    from icpd.errors import ParamError, arg

    fourcc = VIDEO_SUFFIXES.get(path.suffix.lower())
    if fourcc is None:
        raise ParamError(f"{arg('out', path)}: the overlay video must end in {' or '.join(VIDEO_SUFFIXES)}")
    return fourcc


class OverlayWriter:
    """Writes RGB frames to ``path`` (.mp4: mp4v, .avi: MJPG), opened at the first frame's size.
    ``close()`` finalises the container, so the file plays after a normal end or a Ctrl-C, and
    checks that it did: OpenCV reports no write error (a full disk, a quota, a file size limit
    leave a file without its index, "moov atom not found"), so a video that is not whole is
    removed and ``close()`` raises an :class:`~icpd.io.OutputPathError` naming it."""

    def __init__(self, path: str | os.PathLike[str], fps: float) -> None:
        self.path = Path(path)
        self.fourcc = cv2.VideoWriter_fourcc(*video_fourcc(self.path))
        self.fps = fps
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame (resized to the first frame's size if it differs)."""
        height, width = rgb.shape[:2]
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = cv2.VideoWriter(str(self.path), self.fourcc, self.fps, (width, height))
            if not self.writer.isOpened():
                self.writer = None
                raise OutputPathError(None, "OpenCV could not create the video (its codec or the folder's "
                                            "permissions); try the other container (.mp4 or .avi)",
                                      str(self.path))
            self.size = (width, height)
        if (width, height) != self.size:  # a folder of mixed sizes: a video keeps one size
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))  # RGB -> BGR
        self.frames += 1

    def close(self) -> None:
        """Finalise the container; remove it and raise OutputPathError if it is not whole."""
        if self.writer is None:
            return
        self.writer.release()
        self.writer = None
        problem = container_problem(self.path)
        if problem is None:
            return
        cause = _write_failure_cause(self.path)
        self.path.unlink(missing_ok=True)  # an unplayable file must not pass for a result
        raise OutputPathError(None, f"the video could not be finalised ({problem}; {cause}), so it was "
                                    "removed", str(self.path))


def container_problem(path: str | os.PathLike[str]) -> str | None:
    """Why the MP4 or AVI at ``path`` is not a whole file, or None if it is: its top-level boxes
    (MP4) or RIFF chunks (AVI) must end exactly at the end of the file, and an MP4 needs its
    ``moov`` index. A write that failed midway leaves a file cut inside a box (or the index
    missing), which players refuse; reading the headers is cheap at any video length."""
    path = Path(path)
    size = path.stat().st_size
    boxes: list[bytes] = []
    pos = 0
    with open(path, "rb") as fh:
        riff = fh.read(4) == b"RIFF"
        while pos + 8 <= size:
            fh.seek(pos)
            if riff:  # chunk: tag, little-endian size, data padded to an even length
                tag, n = struct.unpack("<4sI", fh.read(8))
                n += 8 + (n & 1)
            else:  # box: big-endian size (1: a 64-bit size follows; 0: to the end of the file), tag
                n, tag = struct.unpack(">I4s", fh.read(8))
                if n == 1:
                    n = struct.unpack(">Q", fh.read(8))[0]
                elif n == 0:
                    n = size - pos
                if n < 8:
                    return f"a box of {n} bytes at offset {pos}"
            boxes.append(tag)
            pos += n
    if pos != size:
        return f"{size} bytes where its headers announce {pos}: cut short"
    if not riff and b"moov" not in boxes:
        return "no moov index"
    if riff and not boxes:
        return "empty"
    return None


def _write_failure_cause(path: Path) -> str:
    """A best guess at why a video write failed (OpenCV does not say): a file size limit, a full disk."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft != resource.RLIM_INFINITY and path.stat().st_size >= soft:
            return f"the file size limit (ulimit -f) of {soft} bytes was reached"
    except (ImportError, OSError):
        pass
    try:
        if shutil.disk_usage(path.parent).free < 2**20:
            return "the disk is full; free some space or choose an output location on another disk"
    except OSError:
        pass
    return "a write failed: check the free space, the disk quota and the file size limit (ulimit -f)"
