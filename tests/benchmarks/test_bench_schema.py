"""The bench result JSON format: validation names the JSON path, files round-trip atomically."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from icpd.benchmarks.schema import SCHEMA_VERSION, dump, load, make_document, make_result, results_from_timing
from icpd.benchmarks.timer import END_TO_END, TimingResult

ENV = {"cpu_model": "test cpu", "cpu_cores": 2, "gpus": None}


def valid_doc() -> dict[str, Any]:
    results = [
        make_result(
            scenario="1shot-256", backend="onnxruntime-cpu", precision="fp32", stage=stage,
            batch=2, shots=1, classes=1, samples_ms=[10.0 + i for i in range(5)],
        )
        for stage in ("encoder", END_TO_END)
    ]  # fmt: skip
    return make_document(results, environment=ENV, random_weights=True)


def test_valid_document_passes_and_has_expected_shape() -> None:
    doc = valid_doc()  # make_document validates
    assert doc["schema_version"] == SCHEMA_VERSION == 1
    r = doc["results"][0]
    assert r["units"] == "ms" and r["samples"] == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert r["summary"]["median"] == 12.0 and r["summary"]["n"] == 5
    assert r["summary"]["throughput"] == pytest.approx(2 * 1000 / 12.0)  # batch 2 per iteration


def mutate(path: tuple, value: Any = ..., delete: bool = False) -> dict[str, Any]:
    doc = copy.deepcopy(valid_doc())
    target = doc
    for step in path[:-1]:
        target = target[step]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "delete", "expected"),
    [
        (("results", 0, "backend"), None, True, r"\$\.results\[0\]\.backend: missing"),
        (("environment",), None, True, r"\$\.environment: missing"),
        (("results", 1, "summary", "p99"), None, True, r"\$\.results\[1\]\.summary\.p99: missing"),
        (
            ("results", 1, "batch"),
            "4",
            False,
            r"\$\.results\[1\]\.batch: expected an integer >= 1, got '4' \(str\)",
        ),
        (("results", 0, "batch"), True, False, r"\$\.results\[0\]\.batch"),
        (("results", 0, "shots"), 0, False, r"\$\.results\[0\]\.shots"),
        (("results", 0, "units"), "s", False, r"\$\.results\[0\]\.units: expected 'ms'"),
        (("results", 0, "samples", 3), "fast", False, r"\$\.results\[0\]\.samples\[3\]"),
        (("results", 0, "samples"), [], False, r"\$\.results\[0\]\.samples: expected a non-empty list"),
        (
            ("results", 0, "summary", "n"),
            4,
            False,
            r"\$\.results\[0\]\.summary\.n: expected the number of samples",
        ),
        (("results", 0, "summary", "median"), float("nan"), False, r"\$\.results\[0\]\.summary\.median"),
        (("results",), {}, False, r"\$\.results: expected a list"),
        (("random_weights",), "yes", False, r"\$\.random_weights: expected true or false"),
        (("schema_version",), "1", False, r"\$\.schema_version: expected an integer"),
    ],
)
def test_invalid_documents_name_the_path(path: tuple, value: Any, delete: bool, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        dump(mutate(path, value, delete), os.devnull)  # dump validates before writing


def test_newer_schema_version_asks_to_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "future.json"
    path.write_text(json.dumps(mutate(("schema_version",), SCHEMA_VERSION + 1)))
    with pytest.raises(ValueError, match=r"future\.json.*\$\.schema_version.*newer icpd.*[Uu]pgrade icpd"):
        load(path)


@pytest.mark.parametrize("content", [b"not json {", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_non_json_file_is_refused_with_its_name(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bench.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"bench\.txt is not a JSON bench result"):
        load(path)


def test_load_names_file_and_path_for_invalid_content(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(mutate(("results", 0, "stage"), 3)))
    with pytest.raises(ValueError, match=r"broken\.json: .*\$\.results\[0\]\.stage"):
        load(path)


def test_dump_load_roundtrip_is_atomic(tmp_path: Path) -> None:
    doc = valid_doc()
    path = dump(doc, tmp_path / "sub" / "bench.json")
    assert load(path) == doc
    assert [p.name for p in path.parent.iterdir()] == ["bench.json"]  # no temporary file left


def test_invalid_dump_leaves_existing_file_untouched(tmp_path: Path) -> None:
    path = dump(valid_doc(), tmp_path / "bench.json")
    before = path.read_bytes()
    with pytest.raises(ValueError):
        dump(mutate(("results", 0, "batch"), -1), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]


def test_dump_failure_mid_write_removes_temporary(tmp_path: Path) -> None:
    doc = valid_doc()
    doc["extra"] = {1, 2}  # extra keys are not validated, but a set is not JSON
    with pytest.raises(TypeError):
        dump(doc, tmp_path / "bench.json")
    assert list(tmp_path.iterdir()) == []


def test_results_from_timing_one_entry_per_stage() -> None:
    timing = TimingResult(
        samples_ms=[3.0, 4.0],
        stage_samples_ms={"encoder": [1.0, 2.0], END_TO_END: [3.0, 4.0]},
        gpu_samples_ms=[2.5, 3.5],
        warmup_iters=2,
        stop_reason="min_reached",
        peak_rss_bytes=123,
    )
    results = results_from_timing(
        timing,
        scenario="s",
        backend="torch",
        precision="fp16",
        batch=1,
        shots=5,
        classes=2,
        variant="candidate",
    )
    assert [r["stage"] for r in results] == ["encoder", END_TO_END]
    assert results[1]["gpu_samples"] == [2.5, 3.5] and "gpu_samples" not in results[0]
    assert all(r["variant"] == "candidate" and r["peak_rss_bytes"] == 123 for r in results)
    make_document(results, environment=ENV)  # valid
