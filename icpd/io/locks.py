"""One run per output: :func:`exclusive_lock` holds ``<target>.lock`` beside the target (a file or a
folder) while a run writes it, so a second run writing the same output fails at once with the first
run's pid (:class:`LockHeldError`) instead of at the end of its work. The lock file records pid,
host, command and start; a kernel lock (``flock``) on it tells a live holder from a killed one whose
pid was reused, and lets exactly one of several racing runs break a stale lock.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from icpd.io.atomic import pid_alive, temp_name

try:
    import fcntl
except ImportError:  # Windows: locks fall back to pid checks
    fcntl = None  # type: ignore[assignment]

__all__ = ["LockHeldError", "exclusive_lock", "lock_path"]


class LockHeldError(ValueError):
    """An output another run is writing (:func:`exclusive_lock`); ``str()`` is the whole one-line message."""


def lock_path(target: str | os.PathLike[str]) -> Path:
    """The lock file of ``target``: ``<target>.lock`` beside it, for a file and a folder alike (a
    folder written with :func:`atomic_dir` is renamed into place, so the lock cannot live inside it)."""
    target = Path(os.path.abspath(target))
    return target.with_name(target.name + ".lock")


def _parse_lock(text: str) -> dict | None:
    """The holder recorded in a lock file's text; None if it is not one (torn, or garbage)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("pid"), int) and doc["pid"] > 0 else None


def _try_flock(fd: int, holder: dict | None) -> bool:
    """Take the kernel lock of an open lock file; False if its holder still runs. The kernel drops it when
    the holder's process ends however it ends, so a killed run's lock is free (a pid reused since cannot
    keep it). Without ``fcntl`` (Windows), a lock whose pid no longer runs is free."""
    if fcntl is None:
        return holder is None or not pid_alive(holder["pid"])
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _create_lock(lock: Path, body: str) -> int | None:
    """Create ``lock`` holding ``body``, already kernel-locked, and return its open descriptor; None if it
    exists. A written and locked temporary file is hard-linked into place, so no reader ever sees it
    empty or unlocked (where hard links are missing: an exclusive create, then lock and write)."""
    tmp = lock.with_name(temp_name(lock, "new-"))
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    try:
        os.write(fd, body.encode())
        _try_flock(fd, None)  # a new file: nobody else has it
        try:
            os.link(tmp, lock)
        except FileExistsError:
            os.close(fd)
            return None
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                raise
            os.close(fd)
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
            except FileExistsError:
                return None
            _try_flock(fd, None)
            os.write(fd, body.encode())
        return fd
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _refuse_or_break(lock: Path, target: str | os.PathLike[str]) -> None:
    """``lock`` exists: raise :class:`LockHeldError` if its run still holds it, else remove it (stale).

    Stale means nobody holds its kernel lock (its process ended) and it was written on this host: a lock
    from another host (a shared file system) is kept, as its run cannot be checked from here. It is
    removed while holding its kernel lock and only if the path still names that file, so of two runs
    breaking the same stale lock the second never removes the lock the first has just taken."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return  # released in between: try again
    try:
        with os.fdopen(os.dup(fd), encoding="utf-8", errors="replace") as fh:
            holder = _parse_lock(fh.read())
        elsewhere = holder is not None and holder.get("host") != socket.gethostname()
        if elsewhere or not _try_flock(fd, holder):
            if holder is not None and not elsewhere and not pid_alive(holder["pid"]):
                time.sleep(0.05)  # a dead run's lock that another run is breaking right now: look again
                return
            h = holder or {}
            raise LockHeldError(
                f"{target} is being written by another `{h.get('command', 'icpd')}` run (pid {h.get('pid', '?')} "
                f"on {h.get('host', '?')}, started {h.get('started', '?')}): wait for it to finish or choose "
                f"another output. If that run no longer exists, delete {lock}")
        with contextlib.suppress(FileNotFoundError):
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                lock.unlink()
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(target: str | os.PathLike[str], what: str) -> Iterator[Path]:
    """Hold ``<target>.lock`` (:func:`lock_path`) while the body writes ``target``; yield the lock's path.

    Take it before any long work: a second run for the same ``target`` is refused at once instead of
    failing (or overwriting) at the end. The lock file holds the holder's pid, host, command (``what``,
    e.g. ``"export"`` for ``icpd export``) and start time, and is removed when the body ends (an
    exception or Ctrl-C included). A lock left on this host by a process that no longer runs (killed)
    is taken over; one from another host is kept: the message says to delete it if that run is gone.
    The target's parent folder is created if missing. In one process, a second lock of the same
    target is refused too (the locks are not re-entrant).

    Raises:
        LockHeldError: (a ``ValueError``) another run holds it; the message names ``target``, the
            holder (command, pid, host, start) and the fix.
        OSError: the lock cannot be written (a read-only folder: ``describe_os_error`` words it).
    """
    lock = lock_path(target)
    lock.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": f"icpd {what}",
                       "target": str(target), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n"
    for _ in range(10):
        fd = _create_lock(lock, body)
        if fd is not None:
            break
        _refuse_or_break(lock, target)
    else:
        raise LockHeldError(f"{target}: could not take the lock {lock} (other runs keep taking it); retry, or "
                            f"delete {lock} if no run is writing {target}")
    try:
        yield lock
    finally:
        with contextlib.suppress(FileNotFoundError):
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:  # ours still: not removed by hand and retaken
                lock.unlink()
        os.close(fd)
