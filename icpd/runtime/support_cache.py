"""Cached support sets: everything the matcher needs that depends only on one class's supports.

File = safetensors (tensors named like the matcher's inputs) + JSON metadata under the
``icpd`` key: format, format version, model fingerprint, class, shots, shapes, dtype, created,
icpd version and a content hash over every tensor. Loading refuses a cache from another model,
an altered or truncated file, or a newer format. No pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import icpd

SUPPORT_FORMAT = "icpd-support"
SUPPORT_FORMAT_VERSION = 1


RESERVED_KEYS = frozenset(
    {"format", "format_version", "fingerprint", "class_name", "shots", "shapes", "dtype", "created", "icpd_version", "content_hash"}
)


class SupportCacheError(ValueError):
    """A support cache that cannot be used with this model."""


def content_hash(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{a.dtype}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class SupportSet:
    """One class's support set, ready for the matcher (tensors keyed by matcher input name)."""

    class_name: str
    fingerprint: str
    shots: int
    tensors: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | os.PathLike[str]) -> Path:
        from safetensors.numpy import save_file

        path = Path(path)
        extra = {k: v for k, v in self.meta.items() if k not in RESERVED_KEYS}  # e.g. backend, source files
        meta = {
            **extra,
            "format": SUPPORT_FORMAT,
            "format_version": SUPPORT_FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "class_name": self.class_name,
            "shots": self.shots,
            "shapes": {k: list(v.shape) for k, v in self.tensors.items()},
            "dtype": "float32",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "icpd_version": icpd.__version__,
            "content_hash": content_hash(self.tensors),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            save_file({k: np.ascontiguousarray(v) for k, v in self.tensors.items()}, str(tmp), metadata={"icpd": json.dumps(meta)})
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        self.meta = meta
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], fingerprint: str | None = None) -> SupportSet:
        """Read and verify a cache; with ``fingerprint``, refuse one made with another model."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise SupportCacheError(f"support cache {path}: file not found; create it with `icpd cache-support`")
        try:
            with safe_open(str(path), framework="numpy") as f:
                raw = (f.metadata() or {}).get("icpd")
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as e:
            raise SupportCacheError(
                f"support cache {path}: unreadable or truncated ({e}); recreate it with `icpd cache-support`"
            ) from e
        if raw is None:
            raise SupportCacheError(f"support cache {path}: no icpd metadata; not made by `icpd cache-support`")
        meta = json.loads(raw)
        if meta.get("format") != SUPPORT_FORMAT:
            raise SupportCacheError(f"support cache {path}: format {meta.get('format')!r} is not an icpd support cache")
        if int(meta.get("format_version", 0)) > SUPPORT_FORMAT_VERSION:
            raise SupportCacheError(
                f"support cache {path}: format version {meta['format_version']} is newer than this icpd reads "
                f"({SUPPORT_FORMAT_VERSION}); upgrade icpd or recreate the cache with this version"
            )
        if content_hash(tensors) != meta.get("content_hash"):
            raise SupportCacheError(f"support cache {path}: content does not match its hash (altered or corrupt); recreate it")
        if fingerprint is not None and meta.get("fingerprint") != fingerprint:
            raise SupportCacheError(
                f"support cache {path} was made with model {str(meta.get('fingerprint'))[:12]}..., not this model "
                f"({fingerprint[:12]}...); recreate it with `icpd cache-support --model <this model dir>`"
            )
        return cls(meta["class_name"], meta["fingerprint"], int(meta["shots"]), tensors, meta)
