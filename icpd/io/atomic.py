"""Writing files and folders so that readers never see a half-written one.

- :func:`atomic_write` (one file) and :func:`write_bytes_atomic` / :func:`write_text_atomic`:
  a temporary file next to the target, renamed onto it when the body succeeds.
- :func:`atomic_dir` (one folder: an exported model dir, an engine dir): a temporary folder next
  to the target, renamed onto it when the body succeeds.
- :func:`scratch_dir`: a temporary working folder next to a target, always removed at the end
  (e.g. the FP32 export an FP16 export is converted from).

Temporary names are hidden (``.<name>.<pid>-<host>.<random>``); the process id and a tag of the
host in the name let a later run remove the leftovers of a killed one (:func:`remove_stale`)
without touching those of a run still in progress.

:func:`ensure_writable` checks an output location up front (a command calls it before any long
work, so a read-only folder fails in a second, not after an hour), and :func:`describe_os_error`
turns an ``OSError`` on a user's path into one line that names the path and the fix.

One run per output: :mod:`icpd.io.locks`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the body succeeds.

    The temporary file (``.<name>.<random>.tmp``, hidden and without an image suffix so
    :func:`list_inputs` never picks it up) lives in the same folder, so ``os.replace`` is
    atomic: readers see the old file or the new one, never a half-written one. If the body
    raises, the temporary file is deleted and an existing ``path`` is left untouched.
    The file gets the usual umask-derived permissions, also when the body's writer replaced the
    yielded file with one of its own (``safetensors.save_file`` creates a new 0600 file).
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {parent} does not exist. Create it first.")
    while True:
        tmp = parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        break
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_write`, flushed to disk before the rename
    (``fsync=False`` for bulk outputs such as thousands of data set tiles: still never half-written
    after a crash of the process, but not guaranteed on disk after a power cut)."""
    path = Path(path)
    with atomic_write(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str, encoding: str = "utf-8", fsync: bool = True) -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_write` (JSON sidecars, reports, logs)."""
    return write_bytes_atomic(path, text.encode(encoding), fsync)


def _umask() -> int:
    """The process umask. Read from /proc where it exists: setting it to read it (the portable
    way) would briefly give files that other threads create in between a umask of 0."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


def host_tag() -> str:
    """Six hex digits naming this host: a pid is only meaningful on the machine that issued it."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def temp_name(path: Path, tag: str = "") -> str:
    return f".{path.name}.{tag}{os.getpid()}-{host_tag()}.{secrets.token_hex(4)}"


def remove_stale(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary folders of ``path`` (:func:`atomic_dir`, :func:`scratch_dir`) left by
    killed runs on this host; returns what was removed.

    Only folders whose name carries this host's tag and the id of a process that no longer
    exists are removed: a run still writing next to the same target keeps its folder.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(re.escape(f".{path.name}.") + r"(?:([a-z0-9]+)-)?(\d+)-([0-9a-f]{6})\.[0-9a-f]{8}")
    removed = []
    host = host_tag()
    for entry in path.parent.iterdir():
        m = pattern.fullmatch(entry.name)
        # "old": a replaced folder renamed aside; a crash between the two renames leaves the only copy there
        if m is None or m.group(1) == "old" or m.group(3) != host or not entry.is_dir() or pid_alive(int(m.group(2))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _make_temp_dir(path: Path, tag: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    while True:
        work = path.parent / temp_name(path, tag)
        try:
            # mode applied through the umask, like any folder (mkdtemp alone would make it 0700)
            work.mkdir(mode=0o777)
        except FileExistsError:
            continue
        return work


def _not_replaceable(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, replace: bool = False) -> Iterator[Path]:
    """Yield a new temporary folder next to ``path``; it becomes ``path`` only if the body succeeds.

    The folder (``.<name>.<pid>-<host>.<random>``, hidden) is in the same parent, so the final
    rename is atomic: ``path`` is the old folder or the complete new one, never a half-written
    one. With ``replace=True`` an existing ``path`` is first renamed aside, the new folder renamed
    into place, and only then is the old one deleted (the caller decides whether that folder may
    be replaced); without it, an existing non-empty ``path`` is a ``FileExistsError``, checked
    before the body runs and again before the rename. If the body raises (Ctrl-C included), the
    temporary folder is deleted; leftovers of killed runs are removed on the next call
    (:func:`remove_stale`). The folder gets the umask's permissions.
    """
    path = Path(path)
    if not replace and _not_replaceable(path):
        raise FileExistsError(f"{path} exists and is not empty; choose another folder or replace it explicitly")
    work = _make_temp_dir(path)
    try:
        yield work
        old = None
        if path.exists() or path.is_symlink():
            if not replace and _not_replaceable(path):
                raise FileExistsError(f"{path} exists and is not empty; choose another folder or replace it explicitly")
            old = path.parent / temp_name(path, "old-")
            os.replace(path, old)
        try:
            os.replace(work, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)  # put the previous folder back
            raise
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


@contextlib.contextmanager
def scratch_dir(near: str | os.PathLike[str], tag: str = "scratch") -> Iterator[Path]:
    """A temporary working folder next to ``near`` (same file system: a later rename is cheap),
    removed when the body ends, whether it succeeded or not."""
    work = _make_temp_dir(Path(near), f"{tag}-")
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# output locations

_OS_ERROR_HINTS = {
    errno.EACCES: "check the permissions of the folder (or choose another output location)",
    errno.EPERM: "check the permissions and attributes of the folder (or choose another output location)",
    errno.EROFS: "that file system is read-only; choose an output location on a writable one",
    errno.ENOSPC: "the disk is full; free some space or choose an output location on another disk",
    errno.EDQUOT: "the disk quota is exceeded; free some space or choose another output location",
    errno.ENOENT: "check the path (relative paths start at the current folder)",
    errno.ENOTDIR: "a part of the path is a file where a folder is needed; check the path",
    errno.EISDIR: "it is a folder; name a file",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
}


class OutputPathError(OSError):
    """An output location that cannot be written; ``str()`` is the whole one-line message."""

    def __str__(self) -> str:
        return describe_os_error(self)


def describe_os_error(err: OSError) -> str:
    """``<path>: <reason>; <fix>`` for an ``OSError`` (one line, no exception class name).

    The path is ``err.filename`` (and ``filename2`` for a rename); without a file name the
    error's own text is used.
    """
    reason = err.strerror or (err.args[0] if err.args else type(err).__name__)
    where = err.filename
    if where is None:
        return f"{reason}" + (f"; {_OS_ERROR_HINTS[err.errno]}" if err.errno in _OS_ERROR_HINTS else "")
    if err.filename2 is not None:
        where = f"{where} -> {err.filename2}"
    hint = _OS_ERROR_HINTS.get(err.errno, "check the path and its permissions") if err.errno is not None else None
    return f"{where}: {reason}" + (f"; {hint}" if hint else "")


def _probe(folder: Path) -> None:
    """Create and delete a hidden file in ``folder``: the only test that sees permissions, ACLs,
    read-only mounts and immutable attributes alike (``os.access`` misses some for root)."""
    while True:
        probe = folder / f".icpd-write-test.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            continue
        except OSError as err:
            raise OutputPathError(err.errno, err.strerror, str(folder)) from None
        os.close(fd)
        probe.unlink()
        return


def ensure_writable(path: str | os.PathLike[str], *, folder: bool = False, create: bool = False) -> Path:
    """Check, before any work starts, that ``path`` can be written; return it as a ``Path``.

    Args:
        path: the output location.
        folder: False: ``path`` is created or replaced by a rename (a file written with
            :func:`atomic_write`, or a folder written with :func:`atomic_dir`), so its parent
            folder must be writable. True: files are written *inside* ``path``, so ``path``
            itself must be a writable folder (or, if it does not exist yet, be creatable).
        create: make the missing folders (the parent, or ``path`` itself with ``folder=True``).
            Without it, a missing parent is an error and a missing ``folder`` is checked through
            its nearest existing ancestor.

    Raises:
        OutputPathError: (an ``OSError``: errno, strerror and filename are set; ``str()`` is a
            one-line message with the fix) the location is read-only, not permitted, a file
            where a folder is needed, or missing.
    """
    path = Path(path)
    target = path if folder else path.parent
    if folder and path.exists() and not path.is_dir():
        raise OutputPathError(errno.ENOTDIR, "exists and is not a folder", str(path))
    if create:
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputPathError(err.errno, err.strerror, err.filename or str(target)) from None
    probe_at = target
    while not probe_at.exists():
        if not folder:
            raise OutputPathError(errno.ENOENT, "folder does not exist", str(target))
        probe_at = probe_at.parent
    if not probe_at.is_dir():
        raise OutputPathError(errno.ENOTDIR, "is not a folder", str(probe_at))
    _probe(probe_at)
    return path
