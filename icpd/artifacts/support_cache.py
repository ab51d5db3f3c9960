"""Cached support sets: everything the matcher needs that depends only on one class's supports.

File = safetensors (tensors named like the matcher's inputs) + JSON metadata under the
``icpd`` key: format, format version, model fingerprint, class, shots, shapes, dtype, created,
icpd version and a content hash over every tensor **and every other metadata value** (format 2;
format 1 hashed the tensors only, so an edited ``shots`` or ``class_name`` went unnoticed: those
caches are refused with the command that recreates them). Loading checks the metadata against a
schema, then the hash, and refuses a cache from another model, an altered or truncated file, or
a newer format, naming the file and the fix. No pickle.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import icpd
from icpd.artifacts.formats import (
    NON_EMPTY_STR,
    OBJECT,
    SHA256,
    STR,
    ArtifactFormat,
    check_fields,
    check_format,
    is_int,
)
from icpd.io.atomic import atomic_write

if TYPE_CHECKING:
    from icpd.artifacts.signature import MatcherSignature

SUPPORT_FORMAT = "icpd-support"
SUPPORT_FORMAT_VERSION = 2  # 2: the content hash covers the metadata too
_FORMAT = ArtifactFormat(SUPPORT_FORMAT, SUPPORT_FORMAT_VERSION, "support cache",
                         "recreate it with `icpd cache-support`",
                         min_version=2, required=("fingerprint", "class_name", "shots", "content_hash"))
_SCHEMA = {"fingerprint": SHA256, "class_name": NON_EMPTY_STR, "shots": is_int(1), "shapes": OBJECT,
           "dtype": ((lambda v: v == "float32"), '"float32"'), "created": STR, "icpd_version": STR,
           "content_hash": SHA256}


RESERVED_KEYS = frozenset(
    {"format", "format_version", "fingerprint", "class_name", "shots", "shapes", "dtype", "created", "icpd_version",
     "content_hash"}
)


class SupportCacheError(ValueError):
    """A support cache that cannot be used with this model."""


def content_hash(tensors: dict[str, np.ndarray], meta: dict[str, Any] | None = None) -> str:
    """sha256 over every tensor (name, dtype, shape, bytes) and, if given, the metadata other than
    ``content_hash`` itself (canonical JSON: sorted keys, no spaces)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{a.dtype}|{a.shape}".encode())
        h.update(a.tobytes())
    if meta is not None:
        rest = {k: v for k, v in meta.items() if k != "content_hash"}
        h.update(b"|meta|" + json.dumps(rest, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


@dataclass
class SupportSet:
    """One class's support set, ready for the matcher (tensors keyed by matcher input name)."""

    class_name: str
    fingerprint: str
    shots: int
    tensors: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def notes(self) -> list[str]:
        """What was done to the support images while encoding (e.g. one upscaled to the model
        input), one line each; saved with the cache (``meta["notes"]``)."""
        return [str(n) for n in self.meta.get("notes", [])]

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
        """Write the cache to ``path``, complete or not at all (a temporary file renamed into place).

        ``overwrite=False``: never replace a file at ``path``, also one created by someone else
        while this one was being written (the finished file is hard-linked into place, which fails
        if the name exists): raises ``FileExistsError`` naming ``path`` and leaves it as it is.
        """
        from safetensors.numpy import save_file

        path = Path(path)
        extra = {k: v for k, v in self.meta.items() if k not in RESERVED_KEYS}  # e.g. backend, source files
        meta = {
            **extra,
            **_FORMAT.header(),
            "fingerprint": self.fingerprint,
            "class_name": self.class_name,
            "shots": self.shots,
            "shapes": {k: list(v.shape) for k, v in self.tensors.items()},
            "dtype": "float32",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "icpd_version": icpd.__version__,
        }
        meta["content_hash"] = content_hash(self.tensors, meta)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not overwrite and path.exists():  # at once, before the work of writing
            raise _exists(path, meanwhile=False)
        staging = path if overwrite else path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            with atomic_write(staging) as tmp:
                save_file({k: np.ascontiguousarray(v) for k, v in self.tensors.items()}, str(tmp),
                          metadata={"icpd": json.dumps(meta)})
            if not overwrite:
                _place_exclusive(staging, path)
        finally:
            if not overwrite:
                staging.unlink(missing_ok=True)
        self.meta = meta
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], fingerprint: str | None = None) -> SupportSet:
        """Read and verify a cache; with ``fingerprint``, refuse one made with another model."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            what = "a folder, not a file" if path.is_dir() else "file not found"
            raise SupportCacheError(f"support cache {path}: {what}; create it with `icpd cache-support`")
        try:
            with safe_open(str(path), framework="numpy") as f:
                raw = (f.metadata() or {}).get("icpd")
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
        except (SafetensorError, OSError, ValueError) as e:
            raise SupportCacheError(
                f"support cache {path}: unreadable or truncated ({e}); recreate it with `icpd cache-support`"
            ) from e
        return cls._checked(raw, tensors, f"support cache {path}", fingerprint)

    @classmethod
    def loads(cls, data: bytes, fingerprint: str | None = None, source: str = "support cache (bytes)") -> SupportSet:
        """:meth:`load` of a cache file's bytes already in memory (an upload), with the same checks and
        words; ``source`` names it in the messages."""
        from safetensors import SafetensorError
        from safetensors.numpy import load as load_tensors

        try:
            size = int.from_bytes(data[:8], "little")  # safetensors: u64 header length, JSON header, tensors
            raw = (json.loads(data[8 : 8 + size]).get("__metadata__") or {}).get("icpd")
            tensors = load_tensors(data)
        except (SafetensorError, ValueError, AttributeError) as e:
            raise SupportCacheError(f"{source}: unreadable or truncated ({e}); recreate it with `icpd cache-support`"
                                    ) from e
        return cls._checked(raw, tensors, source, fingerprint)

    @classmethod
    def _checked(cls, raw: str | None, tensors: dict[str, np.ndarray], source: str,
                 fingerprint: str | None) -> SupportSet:
        """The cache's metadata checked (schema, content hash, shapes, model) -> the SupportSet."""
        if raw is None:
            raise SupportCacheError(f"{source}: no icpd metadata; not made by `icpd cache-support`")
        try:
            meta = json.loads(raw)
        except json.JSONDecodeError as e:
            raise SupportCacheError(f"{source}: its icpd metadata is not valid JSON ({e}); {_FORMAT.fix}") from e
        check_format(meta, _FORMAT, source, SupportCacheError)
        check_fields(meta, _SCHEMA, source, SupportCacheError, _FORMAT.fix)
        if content_hash(tensors, meta) != meta["content_hash"]:
            raise SupportCacheError(f"{source}: its tensors or metadata do not match its content hash (altered or "
                                    f"corrupt); {_FORMAT.fix}")
        shapes = {k: list(v.shape) for k, v in tensors.items()}
        if meta["shapes"] != shapes:  # a writer bug rather than an edit (the hash covers both), but never load it
            raise SupportCacheError(f"{source}: tensor shapes {shapes} differ from its metadata {meta['shapes']}; "
                                    f"{_FORMAT.fix}")
        if fingerprint is not None and meta.get("fingerprint") != fingerprint:
            raise SupportCacheError(
                f"{source} was made with model {str(meta.get('fingerprint'))[:12]}..., not this model "
                f"({fingerprint[:12]}...); recreate it with `icpd cache-support --model <this model dir>`"
            )
        return cls(meta["class_name"], meta["fingerprint"], int(meta["shots"]), tensors, meta)


def _exists(path: Path, meanwhile: bool = True) -> FileExistsError:
    when = "was created while this cache was being written" if meanwhile else "exists"
    return FileExistsError(errno.EEXIST, f"{when}; it was left as it is: choose another file, or replace it on "
                           "purpose (overwrite=True)", str(path))


def _place_exclusive(staging: Path, path: Path) -> None:
    """Give the finished ``staging`` file the name ``path`` unless that name exists (FileExistsError)."""
    try:
        os.link(staging, path)  # atomic and exclusive: fails if the name exists
    except FileExistsError:
        raise _exists(path) from None
    except OSError as err:  # a file system without hard links: claim the name, then replace the claim
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            raise _exists(path) from None
        os.replace(staging, path)


def check_inputs(support: SupportSet, signature: MatcherSignature) -> None:
    """Refuse a support set that lacks one of the matcher's support inputs, or whose inputs
    disagree with its number of shots (axis 0 of every input but the class embeddings)."""
    missing = signature.missing_support(support.tensors)
    if missing:
        more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
        raise SupportCacheError(f"support set {support.class_name!r} lacks the matcher inputs "
                                f"{', '.join(missing[:4])}{more}; "
                                "recreate it with `icpd cache-support` for this model")
    axes = signature.dynamic_axes("batch", "shots")[len(signature.levels):]
    wrong = [n for n, dyn in zip(signature.support_inputs, axes)
             if dyn and np.shape(support.tensors[n])[:1] != (support.shots,)]
    if wrong:
        raise SupportCacheError(f"support set {support.class_name!r}: {wrong[0]} has shape "
                                f"{np.shape(support.tensors[wrong[0]])}, "
                                f"not {support.shots} shots first; recreate it with `icpd cache-support`")
