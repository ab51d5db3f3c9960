"""`icpd bench --precision fp32,int8` (both timed in the same rounds) and `icpd bench compare`'s
refusal of results that are not comparable (issue 12: tiny vs paper reported 50 "regressions")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from icpd.benchmarks.compare import compare, incomparable, verdict_line
from icpd.benchmarks.precision import int8_kept_text
from icpd.benchmarks.schema import dump, make_document, make_result
from icpd.benchmarks.subjects import kept_fp32_blocks
from icpd.cli import app

runner = CliRunner()
MACHINE = {"cpu_model": "AMD EPYC 7B13", "cpu_cores_usable": 2, "gpus": None, "jetson_power_mode": None}


def _doc(preset: str = "tiny", scale: float = 1.0, scenario: str = "cached", env: dict | None = None, n: int = 20):
    rng = np.random.default_rng(0)
    results = [make_result(scenario=scenario, backend="ort-cpu", precision="fp32", stage=stage, batch=1, shots=1,
                           classes=1, samples_ms=(base * scale * rng.lognormal(0.0, 0.03, n)).tolist())
               for stage, base in (("encoder", 10.0), ("end_to_end", 12.0))]
    doc = make_document(results, environment=env if env is not None else MACHINE)
    doc["model"] = {"preset": preset, "path": "x", "exported_s": None}
    return doc


def test_compare_refuses_other_preset_scenarios_or_machine_unless_forced(tmp_path):
    base = dump(_doc("tiny"), tmp_path / "tiny.json")
    paper = dump(_doc("paper", scale=30.0), tmp_path / "paper.json")
    res = runner.invoke(app, ["bench", "compare", str(base), str(paper)])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "presets differ: baseline tiny, candidate paper" in res.output
    assert "--force" in res.output and "Traceback" not in res.output
    forced = runner.invoke(app, ["bench", "compare", str(base), str(paper), "--force"])
    assert forced.exit_code == 1, forced.output  # compared anyway: 30x slower is a regression, and says so
    assert "compared anyway" in forced.output and "presets differ" in forced.output

    other = _doc("tiny", scenario="uncached")
    assert any("scenarios differ" in p and "only in the candidate: uncached b1 s1 c1" in p
               for p in incomparable(_doc(), other))
    moved = _doc(env={**MACHINE, "cpu_model": "Intel Xeon", "cpu_cores_usable": 8})
    problems = incomparable(_doc(), moved)
    assert any("cpu_model" in p for p in problems) and any("cpu_cores_usable" in p for p in problems)
    no_vnni = _doc(env={**MACHINE, "cpu_int8_flags": ["avx2"]})  # the same "AMD EPYC" without VNNI
    assert incomparable(_doc(env={**MACHINE, "cpu_int8_flags": ["avx2", "avx512_vnni"]}), no_vnni) == [
        "environments differ: cpu_int8_flags ['avx2', 'avx512_vnni'] vs ['avx2']"]
    assert incomparable(_doc(), no_vnni) == []  # a document from before the flags were recorded: comparable
    assert incomparable(_doc(), _doc(scale=2.0)) == []  # same preset, scenarios, machine: comparable
    assert incomparable(_doc(env={}), _doc()) == []  # a document without an environment is not refused for it


def test_verdict_line_names_the_regressed_benchmarks(tmp_path):
    result = compare(_doc(), _doc(scale=1.3), 0.10, 0.01)
    line = verdict_line(result)
    assert line.startswith("2 significant regression(s): ")
    assert "cached/ort-cpu/fp32/encoder/b1-s1-c1 (x1.30)" in line and "cached/ort-cpu/fp32/end_to_end/b1-s1-c1" in line
    assert verdict_line(compare(_doc(), _doc(), 0.10, 0.01)) == "no significant regression"
    res = runner.invoke(app, ["bench", "compare", str(dump(_doc(), tmp_path / "a.json")),
                              str(dump(_doc(scale=1.3), tmp_path / "b.json"))])
    assert res.exit_code == 1 and "regression(s): cached/ort-cpu/fp32/encoder" in res.output.replace("\n", "")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory, tiny_model_dir):
    """The session's tiny export where `icpd bench --quick` looks for it (see test_bench_cli)."""
    from icpd.artifacts.model_dir import ModelDir

    root = tmp_path_factory.mktemp("bench-cache-int8")
    shutil.copytree(tiny_model_dir, root / f"tiny-{ModelDir.open(tiny_model_dir).fingerprint[:12]}")
    return root


def test_bench_fp32_and_int8_side_by_side_in_one_interleaved_run(cache_dir, tmp_path):
    out = tmp_path / "b.json"
    args = ["bench", "--quick", "--cache-dir", str(cache_dir), "--precision", "fp32,int8", "--shots", "1",
            "--batch", "2", "--classes", "1", "--rounds", "2", "--warmup", "0", "--json", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["precision"] == "fp32,int8" and set(doc["models"]) == {"fp32", "int8"}
    assert {r["backend"] for r in doc["results"]} == {"ort-cpu"}  # auto backends: INT8 runs on ORT (CPU) only
    cached = {(r["precision"], r["stage"]) for r in doc["results"] if r["scenario"] == "cached"}
    assert {("fp32", "encoder"), ("int8", "encoder"), ("fp32", "end_to_end"), ("int8", "end_to_end")} <= cached
    assert all(r["summary"]["n"] == 2 for r in doc["results"])  # the same 2 rounds for both precisions
    names = {r["name"] for r in doc["ratios"]}
    assert {"INT8 vs FP32 encoder: speed-up", "INT8 vs FP32 cached 1-shot query: speed-up"} <= names
    assert "round 2/2" in res.output  # progress inside the interleaved rounds
    int8_dir = doc["models"]["int8"]["path"]
    kept = kept_fp32_blocks(json.loads((Path(int8_dir) / "model.json").read_text()))
    assert doc["models"]["int8"]["kept_fp32"] == list(kept)  # what the INT8 figures are of, from its model.json
    assert all(r["detail"].endswith(int8_kept_text(doc)) for r in doc["ratios"] if r["name"].startswith("INT8"))
    assert f"INT8 model dir {int8_dir}: {int8_kept_text(doc)}" in res.output
    fp32_doc = json.loads((tmp_path / "b.json").read_text())
    assert fp32_doc["models"]["fp32"]["fingerprint"] != doc["models"]["int8"]["fingerprint"]
    again = runner.invoke(app, [*args, "--json", str(tmp_path / "c.json")])
    assert again.exit_code == 0 and "quantizing" not in again.output  # the INT8 dir is reused
    assert json.loads((tmp_path / "c.json").read_text())["models"]["int8"]["path"] == int8_dir

    bad = runner.invoke(app, ["bench", "--quick", "--cache-dir", str(cache_dir), "--precision", "int8",
                              "--backends", "torch", "--device", "cpu"])
    assert bad.exit_code == 2 and "ONNX Runtime on the CPU only" in bad.output
    bad = runner.invoke(app, ["bench", "--quick", "--cache-dir", str(cache_dir), "--precision", "fp32,int4"])
    assert bad.exit_code == 2 and "unknown int4" in bad.output


def test_the_int8_figures_say_which_blocks_stayed_fp32():
    """An INT8 dir made by mixed precision keeps blocks in FP32 (model.json int8.mixed_precision): the
    bench's INT8 ratios say which, in the order chosen, or that the dir is full INT8."""
    meta = {"int8": {"mixed_precision": {"fp32_blocks": [
        {"block": "clip.proj", "nodes": ["/proj/MatMul"], "why": "sensitivity"},
        {"block": "clip.block0.attn", "nodes": ["/b0/q", "/b0/k"], "why": "--int8-exclude"}]}}}
    assert kept_fp32_blocks(meta) == ("clip.proj", "clip.block0.attn")
    assert kept_fp32_blocks({"int8": {"encoder": {}}}) == () and kept_fp32_blocks({}) == ()
    doc = {"models": {"fp32": {"path": "a"}, "int8": {"path": "b", "kept_fp32": list(kept_fp32_blocks(meta))}}}
    assert int8_kept_text(doc) == "INT8 with 2 block(s) kept FP32: clip.proj, clip.block0.attn"
    doc["models"]["int8"]["kept_fp32"] = []
    assert int8_kept_text(doc) == "full INT8 (no block kept FP32)"
