"""The exported model directory: ``model.json`` plus the files it lists, checked on every open.

```
MODEL_DIR/
  model.json          preset, normalisation, I/O names and shapes, opset, versions, fingerprint, files
  preprocess.onnx     pixels (B,H,W,3) uint8 -> images (B,3,S,S) float32
  encoder.onnx (+ encoder.onnx.data)
  matcher.onnx (+ matcher.onnx.data)
  model.safetensors   the weights (the torch backend runs from these)
```

``model.json["files"]`` (format version 2) lists every file with its size and sha256, the ONNX
graphs' external data (``.onnx.data``, where the weights are) included:
``{role: {"name", "bytes", "sha256", "external_data": [{"name", "bytes", "sha256"}]}}``.
:meth:`ModelDir.open` checks that every listed file exists with its recorded size (cheap, on every
open: a truncated or half-copied weights file is refused at once) and, with ``verify=True``, its
sha256 too (``icpd validate``). Version 1 dirs recorded neither for the external data: they are
refused with "re-run icpd export".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import icpd
from icpd.config import Preset
from icpd.io.artifacts import ArtifactFormat, read_json
from icpd.io.atomic import write_text_atomic

MODEL_FORMAT = "icpd-model"
MODEL_FORMAT_VERSION = 2  # 2: sizes and hashes of every file, external data included
MODEL_JSON = "model.json"
_FORMAT = ArtifactFormat(MODEL_FORMAT, MODEL_FORMAT_VERSION, "model description", "re-run `icpd export`",
                         min_version=2, required=("preset", "fingerprint", "files"))


class ModelDirError(ValueError):
    """A model directory that is incomplete, altered, or from an older or newer icpd."""


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelDir:
    path: Path
    meta: dict[str, Any]

    @property
    def preset(self) -> Preset:
        return Preset.from_dict(self.meta["preset"])

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    def file(self, role: str) -> Path:
        """The main file of ``role`` (preprocess, encoder, matcher, weights)."""
        return self.path / self.meta["files"][role]["name"]

    def role_files(self, role: str) -> list[Path]:
        """Every file of ``role``: the main file, then its external data files."""
        entry = self.meta["files"][role]
        return [self.path / entry["name"], *(self.path / e["name"] for e in entry.get("external_data", []))]

    @classmethod
    def open(cls, path: str | os.PathLike[str], verify: bool = False, *, verify_hashes: bool | None = None) -> ModelDir:
        """Read and check ``model.json``; every listed file must exist with its recorded size.

        Args:
            verify: also compare every file's sha256 with model.json (reads every byte: about
                2 s per GB; ``icpd validate`` does it, loading for inference does not).
            verify_hashes: the former name of ``verify``.

        Raises:
            ModelDirError: not a model dir, model.json unreadable / of another format or version,
                a file missing, of the wrong size or (``verify``) content; the message names the file.
        """
        verify = verify if verify_hashes is None else verify_hashes
        path = Path(path)
        if not path.is_dir():
            raise ModelDirError(f"model dir {path}: not a directory; create one with `icpd export --out {path}`")
        fmt = dataclasses.replace(_FORMAT, fix=f"re-run `icpd export --out {path}`")
        if not (path / MODEL_JSON).is_file():
            raise ModelDirError(f"model dir {path}: {MODEL_JSON} is missing; {fmt.fix}")
        meta = read_json(path / MODEL_JSON, fmt, ModelDirError)
        for role, entry in meta["files"].items():
            for item in [entry, *entry.get("external_data", [])]:
                _check_file(path, role, item, verify)
        return cls(path, meta)


def _check_file(root: Path, role: str, item: dict[str, Any], verify: bool) -> None:
    name = item["name"]
    f = root / name
    hint = "copy the whole directory again or re-run `icpd export`"
    if not f.is_file():
        raise ModelDirError(f"model dir {root}: {name} ({role}) is missing; {hint}")
    size = f.stat().st_size
    if size != item["bytes"]:
        raise ModelDirError(
            f"model dir {root}: {name} ({role}) has {size} bytes, model.json records {item['bytes']} "
            f"(truncated or altered); {hint}"
        )
    if verify and file_sha256(f) != item["sha256"]:
        raise ModelDirError(f"model dir {root}: {name} ({role}) does not match its sha256 in model.json "
                            f"(altered or corrupt); {hint}")


def external_data_files(onnx_path: Path) -> list[str]:
    """Names of the external data files an ONNX model reads (its initialisers' ``location``s), sorted."""
    import onnx

    names: set[str] = set()

    def walk(graph: Any) -> None:
        tensors = list(graph.initializer)
        for node in graph.node:
            for a in node.attribute:
                tensors.extend([a.t, *a.tensors] if a.type in (onnx.AttributeProto.TENSOR, onnx.AttributeProto.TENSORS) else [])
                for g in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
                    walk(g)
        for t in tensors:
            if t.data_location == onnx.TensorProto.EXTERNAL:
                names.update(e.value for e in t.external_data if e.key == "location")

    walk(onnx.load(str(onnx_path), load_external_data=False).graph)
    return sorted(names)


def remove_unreferenced_data(path: Path) -> list[str]:
    """Delete ``*.onnx.data`` files in ``path`` that no ONNX file there reads (the exporter writes an
    empty one for a graph without large weights); returns their names."""
    used = {n for f in path.glob("*.onnx") for n in external_data_files(f)}
    stray = [f for f in path.glob("*.onnx.data") if f.name not in used]
    for f in stray:
        f.unlink()
    return sorted(f.name for f in stray)


def _describe(path: Path, name: str) -> dict[str, Any]:
    f = path / name
    return {"name": name, "bytes": f.stat().st_size, "sha256": file_sha256(f)}


def describe_files(path: Path, names: dict[str, str]) -> dict[str, dict[str, Any]]:
    """role -> name, size and sha256 of each file in ``path``, with the external data of ONNX files."""
    files = {}
    for role, name in names.items():
        entry = _describe(path, name)
        if name.endswith(".onnx"):
            entry["external_data"] = [_describe(path, data) for data in external_data_files(path / name)]
        files[role] = entry
    return files


def write_model_json(path: Path, meta: dict[str, Any]) -> None:
    write_text_atomic(path / MODEL_JSON, json.dumps(meta, indent=2))


def base_meta(preset: Preset, fingerprint: str) -> dict[str, Any]:
    return {
        **_FORMAT.header(),
        "icpd_version": icpd.__version__,
        "preset": preset.to_dict(),
        "fingerprint": fingerprint,
        "normalization": {"mean": list(preset.mean), "std": list(preset.std), "scale": "0..1 (uint8 / 255)"},
        "image_size": preset.image_size,
    }
