"""Same tensors and metadata, same bytes: safetensors files written reproducibly.

``safetensors.save_file`` keeps the ``metadata`` dict in a hash map, so its keys land in the file
header in a different order in every process: two runs of ``icpd data synth --seed 0`` wrote
byte-different ``class_embeddings_*.safetensors``. :func:`sort_metadata` rewrites the header with
the metadata keys sorted, in place (the header keeps its length, so no tensor byte moves).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["sort_metadata"]

_LENGTH = 8  # the header starts with its byte length, a little-endian uint64


def sort_metadata(path: str | os.PathLike[str]) -> Path:
    """Sort the ``__metadata__`` keys of the safetensors file at ``path`` (in place; call it on the
    temporary file before renaming it into place). Returns ``path``."""
    path = Path(path)
    with path.open("r+b") as fh:
        size = int.from_bytes(fh.read(_LENGTH), "little")
        raw = fh.read(size)
        header = json.loads(raw)
        meta = header.get("__metadata__")
        if not meta:
            return path
        header["__metadata__"] = dict(sorted(meta.items()))
        # the writer's own JSON form (compact, UTF-8): same length, padded with spaces as it pads
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:  # cannot happen for a header this library wrote; never truncate one
            raise ValueError(f"{path}: re-serialised safetensors header is {len(text)} bytes, not {size}")
        fh.seek(_LENGTH)
        fh.write(text.ljust(size, b" "))
    return path
