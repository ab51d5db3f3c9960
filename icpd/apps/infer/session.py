"""Bookkeeping of ``icpd infer`` runs in an output folder: a lock, a manifest per run, resume.

* **Writable first**: :func:`check_writable` creates the folder and a probe file before any
  model is loaded, so an unwritable ``--out`` is one clear error, not a traceback at the end.
* **One run per folder**: :class:`OutLock` holds ``OUT/.icpd-infer.lock`` (pid, host, start)
  for the run; a second run into the same folder is refused with the holder's pid. A lock left
  by a process that no longer exists on this host is taken over.
* **Manifest**: ``OUT/runs/<run id>.jsonl``, one JSON line per finished scene (its result and
  the sha256 of every output file), appended and fsynced as each scene completes, so it
  survives a killed run; a torn last line is ignored when read.
* **Resume**: a scene is skipped when an earlier manifest line has the same input (resolved
  path, size, mtime), the same run configuration (options, model fingerprint, support sets)
  and every output file still hashes to what was recorded. Anything else is redone: outputs
  are written atomically, so a partly done scene has a subset of its files, and is redone whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from icpd.io.atomic import ensure_writable

__all__ = ["LOCK_NAME", "RUNS_DIR", "Manifest", "OutLock", "check_writable", "file_sha256", "new_run_id"]

LOCK_NAME = ".icpd-infer.lock"
RUNS_DIR = "runs"


def check_writable(out: Path) -> None:
    """Create ``out`` (and parents) and check it can be written (``icpd.io.ensure_writable``).

    Raises:
        ValueError: the folder cannot be created or written (the message names it, why, and the fix).
    """
    try:
        ensure_writable(out, folder=True, create=True)
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot write there ({exc.strerror or exc}); pass a writable folder or fix "
                         "its permissions") from None


def new_run_id() -> str:
    """``YYYYMMDDTHHMMSSZ-xxxxxx``: sortable by start time, unique across hosts."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutLock:
    """Exclusive use of an output folder by one run (a context manager)."""

    def __init__(self, out: Path, run_id: str) -> None:
        self.path, self.run_id = out / LOCK_NAME, run_id
        self.held = False

    def __enter__(self) -> OutLock:  # noqa: PYI034 - final classes
        doc = {"pid": os.getpid(), "host": socket.gethostname(), "run": self.run_id,
               "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None or (holder.get("host") == doc["host"] and not _pid_alive(int(holder.get("pid", -1)))):
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()  # stale: its process is gone
                    continue
                raise ValueError(
                    f"--out {self.path.parent} is in use by another `icpd infer` run (pid {holder.get('pid')} on "
                    f"{holder.get('host')}, started {holder.get('started')}): wait for it or pass another --out. "
                    f"If that run no longer exists, delete {self.path}") from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(doc) + "\n")
            self.held = True
            return self
        raise ValueError(f"--out {self.path.parent}: could not take the lock {self.path}; delete it and retry")

    def _holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # torn or unreadable: treated as stale

    def __exit__(self, *exc: object) -> None:
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.held = False


def _input_key(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"input": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class Manifest:
    """This run's JSONL manifest, and what earlier runs in the folder completed."""

    def __init__(self, out: Path, run_id: str, config: dict[str, Any]) -> None:
        self.dir = out / RUNS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{run_id}.jsonl"
        self.run_id = run_id
        self.config = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
        self._done: dict[str, dict[str, Any]] = {}
        for f in sorted(self.dir.glob("*.jsonl")):
            for line in f.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line torn by a killed run
                if entry.get("config") == self.config and entry.get("status") == "ok":
                    self._done[entry["input"]] = entry

    def complete(self, path: Path) -> dict[str, Any] | None:
        """The earlier entry for ``path`` if its input and every output are unchanged (hashes), else None."""
        try:
            key = _input_key(path)
        except OSError:
            return None
        entry = self._done.get(key["input"])
        if entry is None or entry.get("size") != key["size"] or entry.get("mtime_ns") != key["mtime_ns"]:
            return None
        for name, digest in entry.get("outputs", {}).items():
            f = Path(name)
            if not f.is_file() or file_sha256(f) != digest:
                return None
        return entry

    def record(self, path: Path, result: dict[str, Any], outputs: list[Path]) -> None:
        """Append one finished scene (its result and output hashes), flushed to disk."""
        entry = {**_input_key(path), "run": self.run_id, "config": self.config, "status": result.get("status"),
                 "outputs": {str(p): file_sha256(p) for p in outputs}, "result": result}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
