"""The exported model directory: ``model.json`` plus the files it lists, checked on every open.

```
MODEL_DIR/
  model.json          preset, normalisation, I/O names and shapes, opset, versions, fingerprint, files
  preprocess.onnx     pixels (B,H,W,3) uint8 -> images (B,3,S,S) float32
  encoder.onnx (+ encoder.onnx.data)
  matcher.onnx (+ matcher.onnx.data)
  model.safetensors   the weights (the torch backend runs from these); absent from a runtime-only
                      dir (``icpd export --runtime-only``, ``"runtime_only": true``), which ONNX
                      Runtime and TensorRT run and the torch backend refuses
```

``model.json["files"]`` (format version 2) lists every file with its size and sha256, the ONNX
graphs' external data (``.onnx.data``, where the weights are) included:
``{role: {"name", "bytes", "sha256", ["sample_sha256"], "external_data": [{"name", "bytes", "sha256",
["sample_sha256"]}]}}``. :meth:`ModelDir.open` checks, on every open:

* ``model.json`` against its whole schema (:mod:`icpd.artifacts.model_schema`: every key, nested preset
  fields included, with its type and range; no unknown keys; each file entry a plain file name, a
  size and a sha256): an edited or truncated one is refused by key path, value and expected type;
* every listed file exists with its recorded size (a truncated or half-copied file);
* the ONNX graphs (``*.onnx``, kilobytes to a few MB: the weights live in ``.onnx.data``) by
  their full sha256: a graph replaced by another model's is refused;
* the weight files (``.onnx.data``, ``model.safetensors``) by ``sample_sha256`` where model.json
  has it: a sha256 over 16 blocks of 64 KiB spread over the file (1 MiB read, whatever the
  size), so another model's weights of the same size are refused too. A flipped byte between
  the blocks is only seen by the full check: ``verify=True`` (``icpd validate``) hashes every byte.

Version 1 dirs recorded neither for the external data: they are refused with "re-run icpd export".
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
from icpd.artifacts.formats import ArtifactFormat, read_json
from icpd.artifacts.model_schema import check_model_meta
from icpd.config import Preset, RankPriorForm
from icpd.errors import ParamMessage, arg
from icpd.io.atomic import write_text_atomic

MODEL_FORMAT = "icpd-model"
MODEL_FORMAT_VERSION = 2  # 2: sizes and hashes of every file, external data included
MODEL_JSON = "model.json"
_FORMAT = ArtifactFormat(MODEL_FORMAT, MODEL_FORMAT_VERSION, "model description", "re-run `icpd export`",
                         min_version=2, required=("preset", "fingerprint", "files"))


# every model dir has these files (a runtime-only one: not weights)
ROLES = ("preprocess", "encoder", "matcher", "weights")
RUNTIME_ROLES = ROLES[:3]  # what ONNX Runtime and TensorRT read
SAMPLE_BLOCKS, SAMPLE_BLOCK_BYTES = 16, 1 << 16  # sample_sha256: 1 MiB read per file


class ModelDirError(ParamMessage, ValueError):
    """A model directory that is incomplete, altered, or from an older or newer icpd."""


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sample_sha256(path: Path) -> str:
    """sha256 over the size and ``SAMPLE_BLOCKS`` blocks of ``SAMPLE_BLOCK_BYTES`` evenly spread over
    ``path`` (first and last included; the whole file when it is smaller): a cheap fingerprint
    that tells two weight files of the same size apart."""
    size = path.stat().st_size
    h = hashlib.sha256(f"{size}|".encode())
    with path.open("rb") as fh:
        if size <= SAMPLE_BLOCKS * SAMPLE_BLOCK_BYTES:
            h.update(fh.read())
        else:
            step = (size - SAMPLE_BLOCK_BYTES) / (SAMPLE_BLOCKS - 1)
            for i in range(SAMPLE_BLOCKS):
                fh.seek(round(i * step))
                h.update(fh.read(SAMPLE_BLOCK_BYTES))
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

    @property
    def rank_prior(self) -> RankPriorForm:
        """The form the matcher's rank prior was exported in (model.json ``rank_prior``, old names read
        by :meth:`RankPriorForm.parse`; topk when absent)."""
        return RankPriorForm.parse(self.meta.get("rank_prior", RankPriorForm.TOPK))

    @property
    def runtime_only(self) -> bool:
        """Exported with ``--runtime-only``: no PyTorch weights (``model.safetensors``)."""
        return bool(self.meta.get("runtime_only", False))

    def file(self, role: str) -> Path:
        """The main file of ``role`` (preprocess, encoder, matcher, weights).

        Raises:
            ModelDirError: ``weights`` of a runtime-only dir (the message says how to get them).
        """
        if role == "weights" and self.runtime_only:
            runtime_only = arg("runtime_only", True)
            raise ModelDirError(f"model dir {self.path} is runtime-only (exported with {runtime_only}): it "
                                "has no model.safetensors, the PyTorch weights; export without "
                                f"{runtime_only} to get them, or use the ONNX Runtime or TensorRT backend "
                                f"({arg('backend', 'ort')})", param="backend")
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
        check_model_meta(meta, path / MODEL_JSON, ModelDirError, fmt.fix)
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
    if (verify or name.endswith(".onnx")) and file_sha256(f) != item["sha256"]:
        raise ModelDirError(f"model dir {root}: {name} ({role}) does not match its sha256 in model.json "
                            f"(altered, corrupt, or another model's); {hint}")
    if not verify and "sample_sha256" in item and sample_sha256(f) != item["sample_sha256"]:
        raise ModelDirError(f"model dir {root}: {name} ({role}) does not match its sample_sha256 in model.json "
                            f"(altered, or another model's weights); {hint}")


def check_replaceable(out: str | os.PathLike[str], param: str = "out") -> None:
    """Refuse to replace (``force``) a folder that is neither empty nor an icpd model dir; ``param``:
    the caller's parameter that named ``out`` (for the message).

    A model dir here is a folder whose ``model.json`` says ``"format": "icpd-model"`` (any
    version: an old export may be replaced) and that holds nothing but model.json, the files it
    lists and model-dir files (``*.onnx``, ``*.onnx.data``, ``*.safetensors``): anything else
    someone put there would be deleted with it.

    Raises:
        ModelDirError: ``out`` is a file, or a folder with other content; the message lists some of it.
    """
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise ModelDirError(f"{arg(param, out)}: is a file, not a folder; {arg('force', True)} only "
                            f"replaces a model dir. Choose another {arg(param)} or remove the file yourself")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    try:
        meta = json.loads((out / MODEL_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise ModelDirError(f"{arg(param, out)}: holds {shown} and is not an icpd model dir (no {MODEL_JSON} "
                            f"of an export); {arg('force', True)} only replaces a model dir or an empty "
                            f"folder. Choose another {arg(param)}, or empty it yourself")
    files = meta.get("files") if isinstance(meta.get("files"), dict) else {}
    listed = {MODEL_JSON}
    for entry in files.values():
        items = [entry, *entry.get("external_data", [])] if isinstance(entry, dict) else []
        listed.update(str(i.get("name")) for i in items if isinstance(i, dict))
    foreign = [n for n in entries if n not in listed and not n.endswith((".onnx", ".onnx.data", ".safetensors"))]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ModelDirError(f"{arg(param, out)}: is a model dir but also holds {shown}, which "
                            f"{arg('force', True)} would delete. Move them out first, or choose another "
                            f"{arg(param)}")


def external_data_files(onnx_path: Path) -> list[str]:
    """Names of the external data files an ONNX model reads (its initialisers' ``location``s), sorted."""
    import onnx

    names: set[str] = set()

    def walk(graph: Any) -> None:
        tensors = list(graph.initializer)
        for node in graph.node:
            for a in node.attribute:
                if a.type in (onnx.AttributeProto.TENSOR, onnx.AttributeProto.TENSORS):
                    tensors.extend([a.t, *a.tensors])
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
    entry = {"name": name, "bytes": f.stat().st_size, "sha256": file_sha256(f)}
    if not name.endswith(".onnx"):  # graphs are hashed in full on every open; weights by sample
        entry["sample_sha256"] = sample_sha256(f)
    return entry


def describe_files(path: Path, names: dict[str, str]) -> dict[str, dict[str, Any]]:
    """role -> name, size and sha256 of each file in ``path``, with the external data of ONNX files."""
    files = {}
    for role, name in names.items():
        entry = _describe(path, name)
        if name.endswith(".onnx"):
            entry["external_data"] = [_describe(path, data) for data in external_data_files(path / name)]
        files[role] = entry
    return files


def write_runtime_only(src: str | os.PathLike[str], out: str | os.PathLike[str], *, force: bool = False) -> ModelDir:
    """Make a runtime-only copy of the model dir ``src`` at ``out``: every file but the PyTorch
    weights (hard links where ``out`` is on the same file system, else copies), model.json with
    ``"runtime_only": true`` and no ``files.weights``; ``src`` is left as it is.

    Raises:
        ModelDirError: ``src`` is not a valid model dir, or ``out`` may not be replaced (``force``).
    """
    import shutil

    from icpd.io.atomic import atomic_dir

    md = ModelDir.open(src)
    out = Path(out)
    if not force and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelDirError(f"{arg('out', out)}: exists and is not empty; "
                            f"pass {arg('force', True)} to replace it or choose another folder")
    check_replaceable(out)
    with atomic_dir(out, replace=force) as work:
        for role in RUNTIME_ROLES:
            for f in md.role_files(role):
                try:
                    os.link(f, work / f.name)
                except OSError:
                    shutil.copy2(f, work / f.name)
        meta = json.loads(json.dumps(md.meta))
        meta["files"].pop("weights", None)
        meta["runtime_only"] = True
        write_model_json(work, meta)
    return ModelDir.open(out)


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
