"""Runtime-only model dirs (issue 20, section 5): ``icpd export --runtime-only`` leaves out the PyTorch
weights; the dir is fingerprinted and verified like the others, ONNX Runtime runs it with the same
outputs as the full dir, and the torch backend refuses it with one line."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from icpd.artifacts.model_dir import ModelDir, ModelDirError, file_sha256, write_runtime_only
from icpd.artifacts.support_cache import SupportSet
from icpd.cli import app
from icpd.export.onnx import export_model
from icpd.model.text import ClassEmbeddings, save_class_embeddings
from icpd.runtime.predictor import Predictor

REFUSAL = ("is runtime-only: it has no model.safetensors, the PyTorch weights the torch backend runs from; "
           "export without --runtime-only, or pass --backend ort")


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def runtime_dir(tiny_model, tmp_path_factory):
    return export_model(tiny_model, tmp_path_factory.mktemp("ro") / "tiny-ro", runtime_only=True, validate=False).path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("ro-inputs")
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((15, 32)).astype(np.float32)
    save_class_embeddings(d / "e.safetensors", ClassEmbeddings(emb, tuple(f"c{i}" for i in range(15))))
    cv2.imwrite(str(d / "s.png"), rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    cv2.imwrite(str(d / "q.png"), rng.integers(0, 256, (160, 200, 3), dtype=np.uint8))
    mask = np.zeros((128, 128), np.uint8)
    mask[20:60, 30:70] = 255
    cv2.imwrite(str(d / "m.png"), mask)
    return d


def test_runtime_only_dir_has_no_pytorch_weights_and_verifies(runtime_dir, tiny_model_dir):
    names = {p.name for p in runtime_dir.iterdir()}
    assert "model.safetensors" not in names
    assert names == {p.name for p in tiny_model_dir.iterdir()} - {"model.safetensors"}
    md = ModelDir.open(runtime_dir, verify=True)  # every byte against model.json
    full = ModelDir.open(tiny_model_dir)
    assert md.runtime_only and not full.runtime_only and md.meta["runtime_only"] is True
    assert set(md.meta["files"]) == {"preprocess", "encoder", "matcher"}
    assert md.fingerprint == full.fingerprint  # same weights, same identity
    for name in ("preprocess.onnx", "encoder.onnx", "matcher.onnx"):  # the same graphs as the full export
        assert file_sha256(runtime_dir / name) == file_sha256(tiny_model_dir / name)
    size = sum(p.stat().st_size for p in runtime_dir.iterdir())
    full = sum(p.stat().st_size for p in tiny_model_dir.iterdir())
    assert size < full - (tiny_model_dir / "model.safetensors").stat().st_size + 4096


def test_weights_of_a_runtime_only_dir_are_refused_by_name(runtime_dir):
    with pytest.raises(ModelDirError,
                       match=r"is runtime-only \(exported with runtime_only=True\): it has no model\.safetensors"):
        ModelDir.open(runtime_dir).file("weights")


def test_ort_runs_it_like_the_full_dir(runtime_dir, tiny_model_dir):
    rng = np.random.default_rng(3)
    support, query = rng.integers(0, 256, (128, 128, 3), np.uint8), rng.integers(0, 256, (2, 128, 128, 3), np.uint8)
    mask = np.zeros((128, 128), np.uint8)
    mask[30:90, 20:60] = 1
    emb = rng.standard_normal((15, 32)).astype(np.float32)
    results = []
    for d in (tiny_model_dir, runtime_dir):
        p = Predictor.load(d, backend="ort", threads=1)
        p.add_support(p.encode_support([support], [mask], "ship", emb))
        results.append(p.predict(query, outputs=["logits"]))
    np.testing.assert_array_equal(results[0].outputs["logits"], results[1].outputs["logits"])
    np.testing.assert_array_equal(results[0].labels, results[1].labels)


def test_torch_backend_refuses_with_one_line(runtime_dir):
    with pytest.raises(ValueError) as err:
        Predictor.load(runtime_dir, backend="torch")
    # the library names its parameter (backend=ort); the commands print --backend ort (below)
    assert str(err.value) == f"model dir {runtime_dir} {REFUSAL}".replace("--backend ort", "backend=ort")


def test_a_runtime_only_copy_of_a_full_dir(tiny_model_dir, tmp_path):
    """The library's way to slim an existing full dir (the export flag is the CLI's)."""
    src = tmp_path / "full"
    shutil.copytree(tiny_model_dir, src)
    before = {p.name: file_sha256(p) for p in src.iterdir()}
    md = write_runtime_only(src, tmp_path / "slim")
    assert md.runtime_only and not (tmp_path / "slim" / "model.safetensors").exists()
    ModelDir.open(tmp_path / "slim", verify=True)
    assert {p.name: file_sha256(p) for p in src.iterdir()} == before  # the source is untouched
    with pytest.raises(ModelDirError, match="exists and is not empty; pass force=True"):
        write_runtime_only(src, tmp_path / "slim")


def test_a_runtime_only_dir_that_lost_its_flag_is_refused(runtime_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(runtime_dir, d)
    meta = json.loads((d / "model.json").read_text())
    del meta["runtime_only"]
    (d / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelDirError, match=r"files lacks weights \(model\.safetensors\) but runtime_only is false"):
        ModelDir.open(d)


def _cache_support(model, inputs, out, *extra):
    return CliRunner().invoke(app, ["cache-support", "--model", str(model), "--class-name", "c3", "--class-embeddings",
                                    str(inputs / "e.safetensors"), "--image", str(inputs / "s.png"), "--mask",
                                    str(inputs / "m.png"), "--out", str(out), "-q", *extra])


def test_cli_export_runtime_only_then_cache_support_and_infer(tiny_model_dir, inputs, tmp_path):
    """`icpd export --runtime-only` writes no model.safetensors; cache-support and infer on ONNX Runtime give
    the full dir's outputs; --backend torch is one error line, exit 2."""
    ro = tmp_path / "ro"
    res = CliRunner().invoke(app, ["export", "--random-weights", "--preset", "tiny", "--out", str(ro), "--runtime-only",
                                   "--no-validate", "-q"])
    assert res.exit_code == 0, res.output
    assert f"wrote {ro} (fp32, runtime-only)" in _flat(res.output)
    assert not (ro / "model.safetensors").exists() and ModelDir.open(ro, verify=True).runtime_only
    labels = {}
    for name, d in (("full", tiny_model_dir), ("ro", ro)):
        res = _cache_support(d, inputs, tmp_path / f"{name}.support")
        assert res.exit_code == 0, res.output
        res = CliRunner().invoke(app, ["infer", "--model", str(d), "--support", str(tmp_path / f"{name}.support"),
                                       str(inputs / "q.png"), "--out", str(tmp_path / f"out-{name}"), "-q",
                                       "--threads", "1"])
        assert res.exit_code == 0, res.output
        labels[name] = cv2.imread(str(tmp_path / f"out-{name}" / "q_labels.png"), cv2.IMREAD_UNCHANGED)
    full, slim = SupportSet.load(tmp_path / "full.support"), SupportSet.load(tmp_path / "ro.support")
    assert full.tensors.keys() == slim.tensors.keys()
    for k in full.tensors:
        np.testing.assert_array_equal(full.tensors[k], slim.tensors[k])
    np.testing.assert_array_equal(labels["full"], labels["ro"])
    for args in (["infer", "--model", str(ro), "--support", str(tmp_path / "ro.support"), str(inputs / "q.png"),
                  "--out", str(tmp_path / "out-torch"), "--backend", "torch", "-q"],):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2 and _flat(res.output) == f"error: model dir {ro} {REFUSAL}", res.output
    res = _cache_support(ro, inputs, tmp_path / "torch.support", "--backend", "torch")
    assert res.exit_code == 2 and _flat(res.output) == f"error: model dir {ro} {REFUSAL}", res.output


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_cli_export_runtime_only_at_lower_precision(tmp_path, precision):
    out = tmp_path / precision
    res = CliRunner().invoke(app, ["export", "--random-weights", "--preset", "tiny", "--out", str(out),
                                   "--runtime-only", "--precision", precision, "--no-validate", "-q"])
    assert res.exit_code == 0, res.output
    md = ModelDir.open(out, verify=True)
    assert md.runtime_only and md.meta["precision"] == precision and "weights" not in md.meta["files"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [precision]  # the scratch FP32 export is gone
    assert not (out / "model.safetensors").exists()
    Predictor.load(out, backend="ort", threads=1)


def test_conversions_from_a_runtime_only_dir(runtime_dir, tmp_path):
    """`icpd build --precision fp16` and `bench --precision int8` convert an FP32 dir: a runtime-only one too."""
    from icpd.export.fp16 import convert_model_dir_fp16
    from icpd.export.quantize import DEFAULT_OPTIONS, convert_model_dir_int8

    for md in (convert_model_dir_fp16(runtime_dir, tmp_path / "fp16"),
               convert_model_dir_int8(runtime_dir, tmp_path / "int8", DEFAULT_OPTIONS)):
        assert md.runtime_only and not (md.path / "model.safetensors").exists()
        ModelDir.open(md.path, verify=True)


def test_bench_and_stream_run_it_and_validate_says_why_not(runtime_dir, inputs, tmp_path):
    res = CliRunner().invoke(app, ["bench", "--model", str(runtime_dir), "--quick", "--rounds", "0",
                                   "--iterations", "1", "--duration", "0", "--warmup", "0", "--shots", "1",
                                   "--batch", "2", "--classes", "1",
                                   "--json", str(tmp_path / "b.json"), "-q"])
    assert res.exit_code == 0, res.output  # auto: the backends that need no PyTorch weights
    backends = {r["backend"] for r in json.loads((tmp_path / "b.json").read_text())["results"]}
    assert backends and not any(b.startswith("torch") for b in backends)

    assert _cache_support(runtime_dir, inputs, tmp_path / "s.support").exit_code == 0
    video = tmp_path / "v.mkv"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 10.0, (128, 128))
    for i in range(3):
        writer.write(np.random.default_rng(i).integers(0, 256, (128, 128, 3), dtype=np.uint8))
    writer.release()
    res = CliRunner().invoke(app, ["stream", str(video), "--model", str(runtime_dir),
                                   "--support", str(tmp_path / "s.support"),
                                   "--out", str(tmp_path / "st.mp4"), "--threads", "1", "-q"])
    assert res.exit_code == 0 and "3 of 3 frame(s) segmented" in _flat(res.output), res.output

    res = CliRunner().invoke(app, ["validate", "--model", str(runtime_dir)])
    assert res.exit_code == 2 and _flat(res.output) == (
        f"error: --model {runtime_dir} is runtime-only (no model.safetensors): icpd validate compares against PyTorch; "
        "validate the full export, or export again without --runtime-only"), res.output
