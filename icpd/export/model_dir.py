"""The exported model directory: ``model.json`` plus the files it lists, verified on load.

```
MODEL_DIR/
  model.json          preset, normalisation, I/O names and shapes, opset, versions, fingerprint, file hashes
  preprocess.onnx     pixels (B,H,W,3) uint8 -> images (B,3,S,S) float32
  encoder.onnx (+ encoder.onnx.data)
  matcher.onnx
  model.safetensors   the weights (the torch backend runs from these)
```
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import icpd
from icpd.config import Preset

MODEL_FORMAT = "icpd-model"
MODEL_FORMAT_VERSION = 1


class ModelDirError(ValueError):
    """A model directory that is incomplete, altered, or from a newer icpd."""


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
        return self.path / self.meta["files"][role]["name"]

    @classmethod
    def open(cls, path: str | os.PathLike[str], verify_hashes: bool = False) -> ModelDir:
        """Read and check ``model.json``; every listed file must exist (and match its hash when asked)."""
        path = Path(path)
        meta_path = path / "model.json"
        if not path.is_dir():
            raise ModelDirError(f"model dir {path}: not a directory; create one with `icpd export`")
        if not meta_path.is_file():
            raise ModelDirError(f"model dir {path}: model.json is missing; re-run `icpd export --out {path}`")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise ModelDirError(f"{meta_path}: not valid JSON ({e}); re-run `icpd export`") from e
        if meta.get("format") != MODEL_FORMAT:
            raise ModelDirError(f"{meta_path}: not an icpd model description (format {meta.get('format')!r})")
        if int(meta.get("format_version", 0)) > MODEL_FORMAT_VERSION:
            raise ModelDirError(
                f"{meta_path}: format version {meta['format_version']} is newer than this icpd supports "
                f"({MODEL_FORMAT_VERSION}); upgrade icpd"
            )
        for role, entry in meta.get("files", {}).items():
            for name in [entry["name"], *entry.get("external_data", [])]:
                f = path / name
                if not f.is_file():
                    raise ModelDirError(
                        f"model dir {path}: {name} ({role}) is missing; copy the whole directory or re-run `icpd export`"
                    )
            if verify_hashes and file_sha256(path / entry["name"]) != entry["sha256"]:
                raise ModelDirError(f"model dir {path}: {entry['name']} does not match its hash in model.json (altered or corrupt)")
        return cls(path, meta)


def describe_files(path: Path, names: dict[str, str]) -> dict[str, dict[str, Any]]:
    files = {}
    for role, name in names.items():
        entry: dict[str, Any] = {"name": name, "sha256": file_sha256(path / name)}
        data = path / f"{name}.data"
        if data.is_file():
            entry["external_data"] = [data.name]
        files[role] = entry
    return files


def write_model_json(path: Path, meta: dict[str, Any]) -> None:
    tmp = path / "model.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, path / "model.json")


def base_meta(preset: Preset, fingerprint: str) -> dict[str, Any]:
    return {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "icpd_version": icpd.__version__,
        "preset": preset.to_dict(),
        "fingerprint": fingerprint,
        "normalization": {"mean": list(preset.mean), "std": list(preset.std), "scale": "0..1 (uint8 / 255)"},
        "image_size": preset.image_size,
    }
