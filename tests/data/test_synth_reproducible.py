"""Issue 20 §4: `icpd data synth` with the same seed writes the same bytes, every file of it. The
class embeddings differed between runs: safetensors kept their metadata in a hash map whose order
changes with each process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from icpd.io.safetensors_order import sort_metadata


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_for_every_file(tmp_path: Path):
    runs = []
    for i in range(3):  # separate processes: each draws its own hash-map order (3 runs: a chance match ~0.2 %)
        out = tmp_path / f"run{i}"
        proc = subprocess.run([sys.executable, "-c", "from icpd.cli import main; main()", "data", "synth", "--out",
                               str(out), "--tiles", "5", "--size", "64", "--seed", "3", "-q"],
                              capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"wrote {out} ") and proc.stderr == ""  # the result line on stdout, -q: no more
        runs.append(_files(out))
    assert "class_embeddings_tiny.safetensors" in runs[0] and len(runs[0]) > 20
    for other in runs[1:]:
        assert other.keys() == runs[0].keys()
        assert [name for name in runs[0] if other[name] != runs[0][name]] == []


def test_sort_metadata_keeps_tensors_and_metadata(tmp_path: Path):
    path = tmp_path / "t.safetensors"
    tensors = {"embeddings": np.arange(12, dtype=np.float32).reshape(3, 4), "ids": np.arange(3, dtype=np.uint8)}
    meta = {"zeta": "last", "alpha": "first", "mid": "é|ü"}
    save_file(tensors, str(path), metadata=meta)
    size = path.stat().st_size
    sort_metadata(path)
    assert path.stat().st_size == size
    with safe_open(str(path), framework="numpy") as f:
        assert f.metadata() == meta
    got = load_file(str(path))
    assert got.keys() == tensors.keys() and all(np.array_equal(got[k], tensors[k]) for k in tensors)
    header = path.read_bytes()[8:8 + int.from_bytes(path.read_bytes()[:8], "little")]
    assert header.index(b'"alpha"') < header.index(b'"mid"') < header.index(b'"zeta"')
