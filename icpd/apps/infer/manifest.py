"""The manifest of ``icpd infer`` runs in an output folder: what each run completed, so a restarted
run skips it.

``OUT/runs/<run id>.jsonl`` holds one JSON line per finished scene (its result and the sha256 of
every output file), appended and fsynced as each scene completes, so it survives a killed run; a
torn last line is ignored when read. A scene is skipped when an earlier line has the same input
(resolved path, size, mtime), the same resume key (options, model fingerprint, support sets) and
every output file still hashes to what was recorded. Anything else is redone: outputs are written
atomically, so a partly done scene has a subset of its files, and is redone whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from icpd.artifacts.model_dir import file_sha256

__all__ = ["RUNS_DIR", "Manifest", "new_run_id"]

RUNS_DIR = "runs"


def new_run_id() -> str:
    """``YYYYMMDDTHHMMSSZ-xxxxxx``: sortable by start time, unique across hosts."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def _input_key(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"input": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class Manifest:
    """This run's JSONL manifest, and what earlier runs in the folder completed with the same
    ``key`` (a JSON-able dict, kept as its sha256)."""

    def __init__(self, out: Path, run_id: str, key: dict[str, Any]) -> None:
        self.dir = out / RUNS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{run_id}.jsonl"
        self.run_id = run_id
        self.config = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
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
        try:
            key = _input_key(path)
        except OSError:  # a failed scene whose input is gone: recorded by name
            key = {"input": str(path.resolve()), "size": None, "mtime_ns": None}
        entry = {**key, "run": self.run_id, "config": self.config, "status": result.get("status"),
                 "outputs": {str(p): file_sha256(p) for p in outputs}, "result": result}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
