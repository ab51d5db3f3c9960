"""Claiming an output before the work starts: it can be written, and no other run is writing it.

:func:`claim_output` is what every command that writes a file or a folder calls first (issue 20:
two runs into one output must never both "succeed" with the last writer winning, nor fail late
with a traceback; an unwritable output must fail at once, not after the work). It composes the two
helpers of :mod:`icpd.io.atomic`: :func:`~icpd.io.atomic.ensure_writable` (a real probe file, so a
read-only mount, a path through a file and root alike are caught) and
:func:`~icpd.io.locks.exclusive_lock` (``<target>.lock`` with the holder's pid).

Two policies:

- refuse (default): a second run is refused at once with
  :class:`~icpd.io.locks.LockHeldError` (its message names the output and the holder's pid);
- ``wait=True``: for outputs shared by design (a cache: the bench export, downloaded weights),
  the second run waits for the first to finish, saying so once through ``on_wait``, and then
  finds (and reuses) what the first one wrote.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from icpd.io.atomic import OutputPathError, ensure_writable
from icpd.io.locks import LockHeldError, exclusive_lock, lock_path

__all__ = ["check_output", "claim_output", "lock_holder"]


def check_output(target: str | os.PathLike[str], *, folder: bool = False, renamed: bool = False) -> Path:
    """Check, writing nothing that stays, that ``target`` can be written; return it as a ``Path``.

    Args:
        target: the output: a file (written by a rename) or, with ``folder``, a folder (files
            written inside it, or the folder renamed into place). Missing folders above it are
            fine when the nearest existing one can be written (they are made by the writer).
        folder: ``target`` is a folder.
        renamed: the folder is assembled beside ``target`` and renamed onto it
            (:func:`~icpd.io.atomic.atomic_dir`): its parent must be writable too, also when it exists.

    Raises:
        OutputPathError: a file named where a folder is needed (or the other way round), a path
            through a file, or a folder that cannot be written (``str()`` is one line with the fix).
    """
    target = Path(target)
    if folder and target.exists() and not target.is_dir():
        raise OutputPathError(errno.ENOTDIR, "exists and is not a folder", str(target))
    if not folder and target.is_dir():
        raise OutputPathError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
    ensure_writable(target if folder else target.parent, folder=True)
    if folder and renamed and target.exists():
        ensure_writable(target.parent, folder=True)
    return target


def lock_holder(target: str | os.PathLike[str]) -> dict | None:
    """What the lock file of ``target`` says about its holder (pid, host, command, started), or None."""
    try:
        doc = json.loads(lock_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


@contextlib.contextmanager
def claim_output(target: str | os.PathLike[str], what: str, *, folder: bool = False, renamed: bool = False,
                 wait: bool = False, on_wait: Callable[[str], None] | None = None,
                 poll_s: float = 0.5) -> Iterator[Path]:
    """Check ``target`` (:func:`check_output`), then hold its lock for the body; yields the lock's path.

    Args:
        target: the output file or folder.
        what: the command, as the lock records it (``"train"`` for ``icpd train``).
        folder, renamed: see :func:`check_output`.
        wait: another run holding the lock is waited for (polled every ``poll_s`` seconds) instead
            of refused: for caches shared by design.
        on_wait: called once, with a one-line message naming the holder, when the run has to wait.

    Raises:
        OutputPathError: see :func:`check_output`.
        LockHeldError: (a ``ValueError``) another run writes ``target`` and ``wait`` is False; the
            message names ``target``, the holder's pid and the fix.
    """
    target = check_output(target, folder=folder, renamed=renamed)
    with contextlib.ExitStack() as stack:
        noted = False
        while True:
            try:
                lock = stack.enter_context(exclusive_lock(target, what))
                break
            except LockHeldError:
                if not wait:
                    raise
            if not noted and on_wait is not None:
                h = lock_holder(target) or {}
                on_wait(f"{target} is being written by another `{h.get('command', 'icpd')}` run (pid "
                        f"{h.get('pid', '?')}, started {h.get('started', '?')}); waiting for it to finish "
                        f"(Ctrl-C to stop; if that run no longer exists, delete {lock_path(target)})")
                noted = True
            time.sleep(poll_s)
        yield lock
