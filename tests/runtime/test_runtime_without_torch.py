"""A runtime-only install runs exported models without torch (issue 12 section 4).

The runtime-only dependencies are numpy, onnxruntime, opencv, safetensors, typer, rich and tifffile; export,
training and the torch backend come with the ``torch`` extra. torch is installed here, so the
commands run in subprocesses where the ``torch`` extra's modules cannot be found: ``PathFinder`` is
replaced by one that answers "not installed" for them (``import torch`` raises
ModuleNotFoundError and ``importlib.util.find_spec("torch")`` is None, as on an edge host).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image  # label PNGs are palette PNGs: Pillow reads the class ids

# The `torch` extra's modules (pyproject.toml): hidden from the subprocesses below.
HIDDEN = ("torch", "torchvision", "open_clip", "onnx", "onnxscript", "scipy")

NOT_INSTALLED = textwrap.dedent(f"""
    import sys
    from importlib.machinery import PathFinder

    class _NotInstalled(PathFinder):
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name.partition(".")[0] in {HIDDEN!r}:
                return None
            return PathFinder.find_spec(name, path, target)

    sys.meta_path[:] = [_NotInstalled if f is PathFinder else f for f in sys.meta_path]
""")


def icpd_without_torch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``icpd ARGS`` (the console script's ``main``) in a process where the torch extra is missing."""
    code = NOT_INSTALLED + "from icpd.cli import main\nmain()\n"
    return subprocess.run([sys.executable, "-c", code, *args], check=False, capture_output=True, text=True, cwd=cwd,
                          timeout=300)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_embeddings):
    """A support image + mask, a query scene and class embeddings (written without torch's help)."""
    from icpd.model.text import ClassEmbeddings, save_class_embeddings

    d = tmp_path_factory.mktemp("runtime_only")
    rng = np.random.default_rng(4)
    cv2.imwrite(str(d / "s.png"), rng.integers(0, 256, (140, 150, 3), np.uint8))
    mask = np.zeros((140, 150), np.uint8)
    mask[30:80, 40:100] = 255
    cv2.imwrite(str(d / "m.png"), mask)
    cv2.imwrite(str(d / "q.png"), rng.integers(0, 256, (150, 170, 3), np.uint8))
    save_class_embeddings(d / "e.safetensors", ClassEmbeddings(tiny_embeddings, tuple(f"c{i}" for i in range(15))))
    return d


def test_ort_predictor_imports_no_torch(tiny_model_dir):
    """Predictor.load(..., backend="ort"): support encoding and predict() import none of the extra."""
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from icpd.runtime import Predictor

        p = Predictor.load({str(tiny_model_dir)!r}, backend="ort")
        rng = np.random.default_rng(0)
        img = rng.integers(0, 256, (128, 128, 3), np.uint8)
        mask = np.zeros((128, 128), np.uint8)
        mask[20:60, 30:70] = 1
        p.add_support(p.encode_support([img], [mask], "c0", rng.standard_normal((15, 32)).astype(np.float32)))
        pred = p.predict(rng.integers(0, 256, (2, 150, 170, 3), np.uint8))
        print(pred.probs.shape, sorted(m for m in {HIDDEN!r} if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "(2, 1, 128, 128) []", out.stdout + out.stderr  # probs at the model size S


def test_cache_support_infer_and_bench_run_without_torch(tiny_model_dir, inputs, tiny_embeddings):
    """The three runtime commands of a runtime-only install, run as the console script."""
    from icpd.artifacts.support_cache import SupportSet

    res = icpd_without_torch("cache-support", "--model", str(tiny_model_dir), "--class-name", "c3", "--image", "s.png",
                             "--mask", "m.png", "--class-embeddings", "e.safetensors", "--out", "c3.support",
                             cwd=inputs)
    assert res.returncode == 0, res.stderr
    emb = SupportSet.load(inputs / "c3.support").tensors["class_embeddings"]
    assert emb.shape == (15, 32) and np.array_equal(emb[0], tiny_embeddings[3])  # c3's row first, read without torch

    res = icpd_without_torch("infer", "--model", str(tiny_model_dir), "--support", "c3.support", "q.png",
                             "--out", "out", "-q", "--threads", "1", cwd=inputs)
    assert res.returncode == 0, res.stderr
    # --threads sizes the command's one shared ORT pool; sessions do not repeat it (ORT warned once per session)
    assert "global thread pool" not in res.stderr, res.stderr
    labels = np.asarray(Image.open(inputs / "out" / "q_labels.png"))
    assert labels.shape == (150, 170)
    assert json.loads((inputs / "out" / "summary.json").read_text())

    res = icpd_without_torch("bench", "--model", str(tiny_model_dir), "--rounds", "0", "--iterations", "1",
                             "--warmup", "0", "--duration", "0", "--shots", "1", "--json", "bench.json", "-q",
                             cwd=inputs)
    assert res.returncode == 0, res.stderr
    doc = json.loads((inputs / "bench.json").read_text())
    assert {r["backend"] for r in doc["results"]} == {"ort-cpu"}  # no torch backend offered without torch


def test_commands_that_need_torch_say_how_to_install_it(tmp_path):
    """`export` without the torch extra: one error line naming the extra, exit 2; `info` still works."""
    res = icpd_without_torch("export", "--checkpoint", "best.safetensors", "--out", "model", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and res.stderr.count("error:") == 1
    assert "pip install 'icpd[torch]'" in res.stderr and "download.pytorch.org/whl/cpu" in res.stderr
    res = icpd_without_torch("info", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "runtime-only install" in res.stdout and "CPUExecutionProvider" in res.stdout


def test_numpy_support_preparation_matches_torch():
    """The support cache's numpy preparation = the eager model's ``prepare_support_tensors`` (rounding only)."""
    import torch

    from icpd.model.icpd_net import Features, prepare_support_tensors
    from icpd.runtime.support_encoding import prepare_support_arrays

    rng = np.random.default_rng(0)
    b, k = 2, 3  # 6 support images
    layers = [rng.standard_normal((b * k, c, h, h)).astype(np.float32) * 3 for c, h in ((64, 16), (128, 8), (256, 4))]
    clip = rng.standard_normal((b * k, 8, 8, 32)).astype(np.float32)
    masks = (rng.random((b, k, 128, 128)) > 0.6).astype(np.float32)
    masks[0, 0] = 0  # an empty shot stays exactly zero at every level
    got = prepare_support_arrays([*layers, clip], masks)
    ref = prepare_support_tensors(Features.from_list([torch.from_numpy(x) for x in (*layers, clip)]),
                                  torch.from_numpy(masks))
    assert len(got.features) == len(ref.features) == 4
    for f, n, m, rf, rn, rm in zip(got.features, got.norms, got.masks, ref.features, ref.norms, ref.masks):
        np.testing.assert_array_equal(f, rf.numpy())  # a reshape: the same bytes
        # norms: float64 sums here vs PyTorch's float32 cascade: a few ulp (1.2e-7 relative each)
        np.testing.assert_allclose(n, rn.numpy(), rtol=1e-6, atol=0)
        np.testing.assert_allclose(m, rm.numpy(), rtol=0, atol=2e-7)  # bilinear weights in float32, as PyTorch's
        assert np.array_equal(m > 0, rm.numpy() > 0)  # the rank prior's relevance: identical
    assert not got.masks[0][0, 0].any()


def test_runtime_dependencies_leave_torch_to_an_extra():
    """pyproject.toml: the base install is the runtime; torch and the exporter come with `icpd[torch]`,
    which the dev extra (`pip install -e ".[dev]"`, the README's set-up) pulls in."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]

    def names(reqs: list[str]) -> set[str]:
        return {r.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip() for r in reqs}

    assert names(project["dependencies"]) == {"numpy", "onnxruntime", "opencv-python-headless", "safetensors",
                                               "typer", "rich", "tifffile"}
    extras = project["optional-dependencies"]
    assert {"torch", "torchvision", "open_clip_torch", "onnx", "onnxscript"} <= names(extras["torch"])
    assert "icpd[torch]" in extras["dev"]
