"""`icpd bench`, `icpd bench compare` and `icpd bench ab`: in-process (CliRunner) and once as a subprocess."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from icpd.benchmarks.report import RANDOM_WEIGHTS_NOTE
from icpd.benchmarks.schema import dump, load, make_document, make_result, validate
from icpd.cli import app

runner = CliRunner()
SMALL = ["--backends", "ort", "--shots", "1", "--batch", "2", "--classes", "2",
         "--iterations", "3", "--duration", "0", "--warmup", "0"]  # the --quick scenarios, fewer of them


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory, tiny_model_dir):
    """A bench cache holding the session's tiny export where `icpd bench --quick` looks for it
    (seeded tiny weights: same fingerprint), so the CLI reuses it instead of exporting again."""
    from icpd.artifacts.model_dir import ModelDir

    root = tmp_path_factory.mktemp("bench-cache")
    shutil.copytree(tiny_model_dir, root / f"tiny-{ModelDir.open(tiny_model_dir).fingerprint[:12]}")
    return root


def test_bench_quick_as_a_subprocess_writes_json_and_report(cache_dir, tmp_path):
    exe = shutil.which("icpd")
    cmd = [exe] if exe else [sys.executable, "-c", "from icpd.cli import app; app()"]
    out_json, report = tmp_path / "x.json", tmp_path / "R"
    proc = subprocess.run([*cmd, "bench", "--quick", "--json", str(out_json), "--report", str(report),
                           "--cache-dir", str(cache_dir), *SMALL],
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out_json.read_text())
    validate(doc)
    assert doc["random_weights"] is True and doc["weights"]["origin"] == RANDOM_WEIGHTS_NOTE
    assert doc["model"]["preset"] == "tiny" and doc["model"]["exported_s"] is None  # reused, not exported
    assert {r["scenario"] for r in doc["results"]} == {"uncached", "cached", "classes", "batch"}
    assert doc["environment"]["packages"]["onnxruntime"] and doc["precision"] == "fp32"
    text = (report / "report.md").read_text()
    assert RANDOM_WEIGHTS_NOTE in text and "## Ratios" in text
    assert (report / "stages.png").stat().st_size > 0 and len(list(report.glob("latency_*.png"))) == 4
    assert RANDOM_WEIGHTS_NOTE in proc.stdout and "ratios" in proc.stdout
    # before any work: time (with its conditions), memory and disk (issue 20: 11 min, 5.1 GiB, 2.5 GB unannounced)
    before = proc.stderr[: proc.stderr.index("[1/")]
    assert before.startswith("icpd bench: preset tiny (--quick). Measured for `icpd bench --quick"), proc.stderr
    assert "  time: " in before and "peak memory: " in before and f"an earlier export is in {cache_dir}" in before
    # not a terminal: one line per step on stderr, counted, in order (it went 25 min without a line)
    steps = [(int(d), int(t)) for d, t in re.findall(r"^\[(\d+)/(\d+)\] \S", proc.stderr, re.MULTILINE)]
    assert len(steps) >= 4 and len({t for _, t in steps}) == 1, proc.stderr
    assert [d for d, _ in steps] == sorted(d for d, _ in steps) and steps[-1][0] <= steps[-1][1], proc.stderr


def _doc(scale: float = 1.0, n: int = 20):
    rng = np.random.default_rng(0)
    results = [
        make_result(scenario="cached", backend="ort-cpu", precision="fp32", stage=stage, batch=1, shots=1, classes=1,
                    samples_ms=(base * scale * rng.lognormal(0.0, 0.03, n)).tolist())
        for stage, base in (("encoder", 10.0), ("end_to_end", 12.0))
    ]
    return make_document(results, environment={})


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    d = tmp_path_factory.mktemp("docs")
    return {name: dump(_doc(scale), d / f"{name}.json")
            for name, scale in (("base", 1.0), ("same", 1.0), ("slow", 1.3))}


def test_compare_identical_documents_exits_0(docs):
    res = runner.invoke(app, ["bench", "compare", str(docs["base"]), str(docs["same"])])
    assert res.exit_code == 0, res.output
    assert "no significant regression" in res.output


def test_compare_30_percent_slower_exits_1_with_junit_and_report(docs, tmp_path):
    junit, report = tmp_path / "j.xml", tmp_path / "rep"
    res = runner.invoke(app, ["bench", "compare", str(docs["base"]), str(docs["slow"]), "--max-slowdown", "10%",
                              "--alpha", "0.01", "--junit", str(junit), "--report", str(report)])
    assert res.exit_code == 1, res.output
    assert "regression" in res.output
    assert junit.read_text().count("<failure") == 2
    assert "## Verdict" in (report / "report.md").read_text()
    tolerant = runner.invoke(app, ["bench", "compare", str(docs["base"]), str(docs["slow"]), "--max-slowdown", "0.5"])
    assert tolerant.exit_code == 0, tolerant.output  # 30 % is within a 50 % tolerance


def test_compare_errors_exit_2(docs, tmp_path):
    res = runner.invoke(app, ["bench", "compare", str(docs["base"]), str(tmp_path / "missing.json")])
    assert res.exit_code == 2 and "error:" in res.output and "missing.json" in res.output
    res = runner.invoke(app, ["bench", "compare", str(docs["base"]), str(docs["same"]), "--max-slowdown", "10"])
    assert res.exit_code == 2, res.output  # ambiguous: 10 % or 10x?
    res = runner.invoke(app, ["bench", "compare", str(docs["base"])])
    assert res.exit_code == 2 and "variant" in res.output  # not an A/B file


def test_ab_same_model_twice_exits_0_and_its_file_compares(tiny_model_dir, tmp_path):
    ab = tmp_path / "ab.json"
    # a 25 % tolerance: this checks the plumbing on a shared machine; the rule is tested in test_bench_stats
    res = runner.invoke(app, ["bench", "ab", str(tiny_model_dir), str(tiny_model_dir), "--backend", "ort",
                              "--rounds", "10", "--json", str(ab), "--max-slowdown", "25%"])
    assert res.exit_code == 0, res.output
    doc = load(ab)
    assert sorted(r["variant"] for r in doc["results"]) == ["baseline", "candidate"]
    assert all(r["summary"]["n"] == 10 and r["scenario"] == "cached" for r in doc["results"])
    assert len(doc["ab"]["order"]) == 10 and set(doc["ab"]["order"]) <= {"AB", "BA"}
    res = runner.invoke(app, ["bench", "compare", str(ab), "--max-slowdown", "25%"])
    assert res.exit_code == 0, res.output


def test_bench_bad_options_exit_2(tmp_path):
    res = runner.invoke(app, ["bench", "--backends", "ort,tpu", "--cache-dir", str(tmp_path)])
    assert res.exit_code == 2 and "unknown backend 'tpu'" in res.output
    res = runner.invoke(app, ["bench", "--model-dir", str(tmp_path / "nowhere"), "--backends", "ort"])
    assert res.exit_code == 2 and "error:" in res.output


def test_backend_vocabulary_is_backend_plus_device():
    """Issue 10 section 4: one vocabulary, `--backends ort,torch --device cpu|cuda` (the Backend
    enum's values); the old result-style names (ort-cpu ...) keep working."""
    import typer

    from icpd.commands.bench import backend_names

    assert backend_names("auto") == "auto"
    assert backend_names("ort,torch") == ("ort-cpu", "torch-cpu")
    assert backend_names("ort,torch,trt", "cuda") == ("ort-cuda", "torch-cuda", "trt")
    assert backend_names("trt") == ("trt",)
    assert backend_names("ort-cpu,torch-cuda") == ("ort-cpu", "torch-cuda")
    assert backend_names("auto", "cpu") == tuple(n for n in backend_names_available() if n.endswith("-cpu"))
    for bad, device in (("tpu", "auto"), ("trt", "cpu"), ("ort", "gpu"), (",", "auto")):
        with pytest.raises(typer.BadParameter):
            backend_names(bad, device)


def backend_names_available():
    from icpd.benchmarks.latency import available_backends

    return available_backends()


def test_bench_model_option_is_the_model_dir(tmp_path):
    """`--model` means an exported model directory in every command (bench called it --model-dir,
    which stays accepted)."""
    for flag in ("--model", "-m", "--model-dir"):
        res = runner.invoke(app, ["bench", flag, str(tmp_path / "nowhere"), "--backends", "ort", "-q"])
        assert res.exit_code == 2 and "error:" in res.output and "nowhere" in res.output, (flag, res.output)
