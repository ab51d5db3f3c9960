"""The scenario runner behind `icpd bench`: stages, support re-encoding, shapes, ratios, the export cache.

Timings on the shared CI machine are noise: nothing here asserts on a duration, only on what was
run (call counts, stage names, iteration counts) and on arithmetic.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter, defaultdict

import numpy as np
import pytest

from icpd.benchmarks import latency, queries
from icpd.benchmarks.report import RANDOM_WEIGHTS_NOTE
from icpd.benchmarks.schema import make_document, make_result, validate
from icpd.benchmarks.timer import END_TO_END

QUERY_STAGES = {"preprocessing", "encoder", "matcher", "postprocessing", END_TO_END}


@pytest.fixture(scope="module")
def counted_run(tiny_model_dir):
    """One small run on ORT, counting backend calls per scenario (images per encoder call)."""
    from icpd.runtime.backends.ort import OrtBackend

    calls: dict[str, list[tuple[str, int]]] = defaultdict(list)
    current = ["setup"]
    encode, match = OrtBackend.encode, OrtBackend.match

    def counting_encode(self, images):
        shape = images.shape() if callable(images.shape) else images.shape  # an OrtValue or an array
        calls[current[0]].append(("encode", shape[0]))
        return encode(self, images)

    def counting_match(self, features, support, outputs):
        calls[current[0]].append(("match", 1))
        return match(self, features, support, outputs)

    def on_step(text: str, done: int, total: int) -> None:
        current[0] = text.split(": ", 1)[-1]

    config = latency.BenchConfig(model_dir=tiny_model_dir, backends="ort", shots=(2,), batch=(2,), classes=2,
                                 iterations=2, duration_s=0.0, warmup_s=0.0, rounds=0)  # one scenario at a time
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(OrtBackend, "encode", counting_encode)
        mp.setattr(OrtBackend, "match", counting_match)
        doc = latency.run_benchmark(config, on_step=on_step)
    return doc, calls


def _results(doc, scenario):
    return {r["stage"]: r for r in doc["results"] if r["scenario"] == scenario}


def test_document_is_valid_and_has_every_scenario_with_its_stages(counted_run):
    doc, _ = counted_run
    validate(doc)
    assert not doc["random_weights"]  # an exported dir without the random-weights source
    assert {r["backend"] for r in doc["results"]} == {"ort-cpu"}
    assert set(_results(doc, "uncached")) == QUERY_STAGES | {"support_encoding"}
    for scenario in ("cached", "classes", "batch"):
        assert set(_results(doc, scenario)) == QUERY_STAGES, scenario
    for r in doc["results"]:
        assert r["summary"]["n"] == 2 and r["warmup_iters"] >= 1 and r["peak_rss_bytes"] > 0


def test_uncached_scenario_reencodes_the_supports_every_call(counted_run):
    doc, calls = counted_run
    by_scenario = {r["description"]: r for r in doc["results"] if r["stage"] == END_TO_END}
    uncached = next(d for d in by_scenario if d.startswith("full episode"))
    cached = next(d for d in by_scenario if d.startswith("cached 2-shot"))
    runs = {d: by_scenario[d]["warmup_iters"] + by_scenario[d]["summary"]["n"] for d in (uncached, cached)}
    # per call: the 2 supports in one encoder pass, then the query; the cached path encodes the query only
    assert Counter(calls[uncached]) == {("encode", 2): runs[uncached], ("encode", 1): runs[uncached],
                                        ("match", 1): runs[uncached]}
    setup = 1  # the cached supports are encoded once, before timing starts
    assert Counter(calls[cached]) == {("encode", 2): setup, ("encode", 1): runs[cached], ("match", 1): runs[cached]}


def test_classes_and_batch_scenarios_have_their_shapes(counted_run):
    doc, calls = counted_run
    classes = _results(doc, "classes")[END_TO_END]
    assert (classes["batch"], classes["shots"], classes["classes"]) == (1, 1, 2)
    runs = classes["warmup_iters"] + classes["summary"]["n"]
    assert Counter(calls[classes["description"]])[("match", 1)] == 2 * runs  # one matcher pass per class
    batch = _results(doc, "batch")[END_TO_END]
    assert (batch["batch"], batch["shots"], batch["classes"]) == (2, 1, 1)
    assert batch["summary"]["throughput"] == pytest.approx(2000.0 / batch["summary"]["median"])  # tiles/s
    names = {r["name"] for r in doc["ratios"]}
    assert {"cached vs uncached 2-shot: speed-up", "2 classes in one call vs 2 single-class calls: speed-up",
            "matcher / encoder time, cached 2-shot"} <= names


def test_interleaved_run_measures_every_scenario_in_every_round(tiny_model_dir):
    config = latency.BenchConfig(model_dir=tiny_model_dir, backends="ort", shots=(1,), batch=(2,), classes=2,
                                 warmup_s=0.0, rounds=3)
    doc = latency.run_benchmark(config)
    validate(doc)
    e2e = [r for r in doc["results"] if r["stage"] == END_TO_END]
    assert {r["scenario"] for r in e2e} == {"uncached", "cached", "classes", "batch"}
    assert all(r["summary"]["n"] == 3 and r["stop_reason"] == "rounds" and r["warmup_iters"] >= 1 for r in e2e)
    assert all(r["summary"]["n"] == 3 for r in doc["results"])  # every stage of every scenario, once per round
    assert {r["name"] for r in doc["ratios"]} >= {"cached vs uncached 1-shot: speed-up"}


def test_run_query_is_predict_with_its_stages_timed(tiny_model_dir):
    """The bench times Predictor.predict itself: same labels, and one timed stage per step (one matcher
    entry per class) in the predict's own stage names."""
    from icpd.benchmarks.timer import StageTimer
    from icpd.runtime.predictor import STAGES, Predictor

    p = Predictor.load(tiny_model_dir, backend="ort")
    inputs = queries.inputs_for(p, pool=4)
    supports = [inputs.support(p, shots=1, cls=c) for c in range(2)]
    images = inputs.query(2)
    for s in supports:
        p.add_support(s)
    entered = []

    class Recording(StageTimer):
        def stage(self, name):
            entered.append(name)
            return super().stage(name)

    timer = Recording()
    timer.begin_iteration()
    labels = latency.run_query(p, images, supports, timer)
    timer.end_iteration()
    np.testing.assert_array_equal(labels, p.predict(images).labels)
    assert entered == ["preprocessing", "encoder", "matcher", "matcher", "postprocessing"]
    assert set(timer.samples_ms) == set(STAGES)
    np.testing.assert_array_equal(latency.run_query(p, images), labels)  # the predictor's own classes


def _doc(medians):
    """A document with one result per (backend, scenario, stage, batch, shots, classes) -> median."""
    results = [make_result(scenario=sc, backend=be, precision="fp32", stage=st, batch=b, shots=k, classes=c,
                           samples_ms=[m, m, m]) for (be, sc, st, b, k, c), m in medians.items()]
    return make_document(results, environment={})


def test_compute_ratios_arithmetic():
    e2e = END_TO_END
    doc = _doc({
        ("ort-cpu", "uncached", e2e, 1, 1, 1): 300.0, ("ort-cpu", "cached", e2e, 1, 1, 1): 100.0,
        ("ort-cpu", "cached", "encoder", 1, 1, 1): 80.0, ("ort-cpu", "cached", "matcher", 1, 1, 1): 16.0,
        ("ort-cpu", "classes", e2e, 1, 1, 3): 150.0, ("ort-cpu", "batch", e2e, 4, 1, 1): 320.0,
        ("torch-cpu", "cached", "encoder", 1, 1, 1): 120.0, ("torch-cpu", "uncached", e2e, 1, 1, 1): 500.0,
    })
    got = {(r["name"], r["backend"]): r["value"] for r in latency.compute_ratios(doc)}
    assert got == pytest.approx({
        ("cached vs uncached 1-shot: speed-up", "ort-cpu"): 3.0,
        ("3 classes in one call vs 3 single-class calls: speed-up", "ort-cpu"): 2.0,
        ("batch 4 vs batch 1, per tile: speed-up", "ort-cpu"): 100.0 / 80.0,
        ("matcher / encoder time, cached 1-shot", "ort-cpu"): 0.2,
        ("ORT vs torch encoder (cpu): speed-up", "ort-cpu / torch-cpu"): 1.5,
        ("cached 1-shot vs the PyTorch network's uncached episode: speed-up", "ort-cpu / torch-cpu"): 5.0,
    })


def test_prepare_model_exports_once_into_the_cache_and_reuses_it(tiny_model_dir, tmp_path, monkeypatch):
    import icpd.export.onnx as onnx_export
    from icpd.artifacts.model_dir import ModelDir

    seen = []

    def fake_export(model, out_dir, **kwargs):  # the real export is tested in tests/export
        seen.append(kwargs)
        shutil.copytree(tiny_model_dir, out_dir)

    monkeypatch.setattr(onnx_export, "export_model", fake_export)
    first = latency.prepare_model("tiny", cache_dir=tmp_path)
    again = latency.prepare_model("tiny", cache_dir=tmp_path)
    fingerprint = ModelDir.open(tiny_model_dir).fingerprint
    assert first.path == again.path == tmp_path / f"tiny-{fingerprint[:12]}"
    assert len(seen) == 1 and seen[0]["validation_runs"] == 1 and seen[0]["source"] == RANDOM_WEIGHTS_NOTE
    assert first.exported_s is not None and again.exported_s is None
    assert first.random_weights and again.weights == RANDOM_WEIGHTS_NOTE


def test_parse_backends():
    assert [s.name for s in latency.parse_backends("ort,torch")] == ["ort-cpu", "torch-cpu"]
    assert latency.parse_backends("torch-cuda")[0].device == "cuda"
    assert {s.name for s in latency.parse_backends("auto")} >= {"ort-cpu", "torch-cpu"}
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        latency.parse_backends("ort,tpu")


def test_latency_module_imports_lean():
    code = ("import sys, icpd.benchmarks.latency, icpd.commands.bench\n"
            "print(sorted(m for m in ('torch', 'onnxruntime', 'matplotlib', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout  # heavy libraries load inside the functions that use them
