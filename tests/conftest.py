"""Shared fixtures. The reference data lives in ``../shared/reference`` beside the repository
(override with ICPD_REFERENCE_DIR)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    return Path(os.environ.get("ICPD_REFERENCE_DIR", REPO.parent / "shared" / "reference"))


@pytest.fixture(scope="session")
def reference() -> Path:
    d = reference_dir()
    if not (d / "parity.py").is_file():
        pytest.skip(f"reference data not found at {d} (set ICPD_REFERENCE_DIR)")
    return d


@pytest.fixture(scope="session")
def parity_module(reference: Path):
    spec = importlib.util.spec_from_file_location("icpd_reference_parity", reference / "parity.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def tiny_model():
    from icpd.model.checkpoint import seeded_model

    return seeded_model("tiny", seed=0)


def tiny_inputs(batch: int = 1, shots: int = 1, seed: int = 0):
    """Normalised query (B,3,128,128), supports (B,K,3,128,128), binary masks, embeddings (B,15,32)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, 3, 128, 128, generator=g)
    s = torch.randn(batch, shots, 3, 128, 128, generator=g)
    m = torch.zeros(batch, shots, 128, 128)
    for b in range(batch):
        for k in range(shots):
            y, x = torch.randint(10, 80, (2,), generator=g).tolist()
            h, w = torch.randint(12, 40, (2,), generator=g).tolist()
            m[b, k, y : y + h, x : x + w] = 1
    e = torch.randn(batch, 15, 32, generator=g)
    return q, s, m, e


def pytest_collection_modifyitems(config, items):
    """Skip `gpu` tests without a CUDA device and `trt` tests without TensorRT, saying why."""
    has_cuda = torch.cuda.is_available()
    has_trt = importlib.util.find_spec("tensorrt") is not None
    for item in items:
        if item.get_closest_marker("gpu") is not None and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs an NVIDIA GPU: torch.cuda.is_available() is False here"))
        if item.get_closest_marker("trt") is not None and not has_trt:
            item.add_marker(pytest.mark.skip(
                reason="needs the TensorRT Python libraries (not installable on this machine)"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_model):
    """The tiny model exported once per test session (standard ONNX rank prior, self-checked)."""
    from icpd.export.onnx import export_model

    return export_model(tiny_model, tmp_path_factory.mktemp("export") / "tiny", validation_runs=2).path


@pytest.fixture(scope="session")
def tiny_embeddings():
    """(15, 32) class embeddings, target first."""
    import numpy as np

    return np.random.default_rng(1).standard_normal((15, 32)).astype(np.float32)
