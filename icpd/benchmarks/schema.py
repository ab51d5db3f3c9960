"""The bench result JSON format (``schema_version`` 1): build, validate, load, dump.

A document::

    {
      "schema_version": 1,
      "created_utc": "2025-01-31T12:00:00Z",      # optional
      "icpd_version": "0.1.0",                    # optional
      "random_weights": false,                    # optional; true means latency only
      "environment": {...},                       # env.collect_environment()
      "results": [
        {
          "scenario": "5shot-512", "backend": "onnxruntime-cpu", "precision": "fp32",
          "stage": "end_to_end", "batch": 1, "shots": 5, "classes": 1,
          "units": "ms",
          "samples": [12.1, 12.3, ...],           # raw latencies, one per iteration
          "summary": {"n": 30, "median": 12.2, ...},   # stats.Summary.to_dict()
          "variant": "candidate"                  # optional, A/B documents only
        }
      ]
    }

Extra keys are allowed (readers ignore them); required keys and the types of known keys are
checked by :func:`validate`, which names the JSON path of the first problem.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from icpd.benchmarks.stats import Summary, summarize
from icpd.benchmarks.timer import END_TO_END, TimingResult
from icpd.io.atomic import write_text_atomic

__all__ = [
    "KEY_FIELDS",
    "SCHEMA_VERSION",
    "dump",
    "load",
    "make_document",
    "make_result",
    "results_from_timing",
    "validate",
]

SCHEMA_VERSION = 1
KEY_FIELDS = ("scenario", "backend", "precision", "stage", "batch", "shots", "classes")  # identify a result
_STR_FIELDS = ("scenario", "backend", "precision", "stage")
_INT_FIELDS = ("batch", "shots", "classes")
_SUMMARY_FIELDS = tuple(f.name for f in fields(Summary))


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _fail(path: str, expected: str, value: Any) -> None:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise ValueError(
        f"invalid bench result at {path}: expected {expected}, got {shown} ({_type_name(value)})"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _check_samples(value: Any, path: str, *, required: bool) -> None:
    if value is None and not required:
        return
    if not isinstance(value, list) or (required and not value):
        _fail(path, "a non-empty list of latencies in ms", value)
    for i, sample in enumerate(value):
        if not _is_number(sample) or sample < 0:
            _fail(f"{path}[{i}]", "a finite latency >= 0 in ms", sample)


def _check_summary(value: Any, path: str, n_samples: int) -> None:
    if not isinstance(value, dict):
        _fail(path, "an object with " + ", ".join(_SUMMARY_FIELDS), value)
    for name in _SUMMARY_FIELDS:
        if name not in value:
            raise ValueError(f"invalid bench result at {path}.{name}: missing required field")
        item = value[name]
        if name == "n":
            if not _is_int(item) or item != n_samples:
                _fail(f"{path}.n", f"the number of samples ({n_samples})", item)
        elif not _is_number(item):
            _fail(f"{path}.{name}", "a finite number", item)


def _check_result(result: Any, path: str) -> None:
    if not isinstance(result, dict):
        _fail(path, "an object", result)
    for name in (*KEY_FIELDS, "units", "samples", "summary"):
        if name not in result:
            raise ValueError(f"invalid bench result at {path}.{name}: missing required field")
    for name in _STR_FIELDS:
        if not isinstance(result[name], str) or not result[name]:
            _fail(f"{path}.{name}", "a non-empty string", result[name])
    for name in _INT_FIELDS:
        if not _is_int(result[name]) or result[name] < 1:
            _fail(f"{path}.{name}", "an integer >= 1", result[name])
    if result["units"] != "ms":
        _fail(f"{path}.units", "'ms'", result["units"])
    _check_samples(result["samples"], f"{path}.samples", required=True)
    _check_summary(result["summary"], f"{path}.summary", len(result["samples"]))
    _check_samples(result.get("gpu_samples"), f"{path}.gpu_samples", required=False)
    if "variant" in result and (not isinstance(result["variant"], str) or not result["variant"]):
        _fail(f"{path}.variant", "a non-empty string", result["variant"])
    for name in ("peak_rss_bytes", "peak_cuda_bytes"):
        if result.get(name) is not None and (not _is_int(result[name]) or result[name] < 0):
            _fail(f"{path}.{name}", "an integer >= 0 or null", result[name])


def validate(doc: Any) -> None:
    """Raise ``ValueError`` naming the JSON path (``$.results[2].batch``) of the first problem.

    A document written by a newer icpd (higher ``schema_version``) is refused with a message
    saying to upgrade.
    """
    if not isinstance(doc, dict):
        _fail("$", "a JSON object", doc)
    if "schema_version" not in doc:
        raise ValueError("invalid bench result at $.schema_version: missing required field")
    version = doc["schema_version"]
    if not _is_int(version) or version < 1:
        _fail("$.schema_version", "an integer >= 1", version)
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"invalid bench result at $.schema_version: version {version} was written by a newer "
            f"icpd; this icpd reads schema_version <= {SCHEMA_VERSION}. Upgrade icpd "
            "(pip install -U icpd) to read it."
        )
    for name, check, expected in (
        ("created_utc", lambda v: isinstance(v, str), "a string"),
        ("icpd_version", lambda v: isinstance(v, str), "a string"),
        ("random_weights", lambda v: isinstance(v, bool), "true or false"),
    ):
        if name in doc and not check(doc[name]):
            _fail(f"$.{name}", expected, doc[name])
    for name, kind, expected in (("environment", dict, "an object"), ("results", list, "a list")):
        if name not in doc:
            raise ValueError(f"invalid bench result at $.{name}: missing required field")
        if not isinstance(doc[name], kind):
            _fail(f"$.{name}", expected, doc[name])
    for i, result in enumerate(doc["results"]):
        _check_result(result, f"$.results[{i}]")


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a bench result file; errors name the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{path} is not a JSON bench result ({exc}); pass a file written by `icpd bench --json`"
        ) from None
    try:
        validate(doc)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return doc


def dump(doc: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Validate ``doc`` and write it atomically (temporary file in the same folder + ``os.replace``).

    A reader never sees a half-written file, and an invalid document never reaches disk.
    """
    validate(doc)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")


def make_result(
    *,
    scenario: str,
    backend: str,
    precision: str,
    stage: str,
    batch: int,
    shots: int,
    classes: int,
    samples_ms: Sequence[float],
    items_per_iter: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One result entry with its summary; throughput counts ``items_per_iter`` (default: batch).

    ``extra`` keys (``variant``, ``gpu_samples``, ``peak_rss_bytes``, ...) are copied in.
    """
    samples = [float(s) for s in samples_ms]
    summary = summarize(samples, items_per_iter=items_per_iter or batch)
    result = {
        "scenario": scenario,
        "backend": backend,
        "precision": precision,
        "stage": stage,
        "batch": batch,
        "shots": shots,
        "classes": classes,
        "units": "ms",
        "samples": samples,
        "summary": summary.to_dict(),
    }
    result.update(extra)
    return result


def results_from_timing(
    timing: TimingResult,
    *,
    scenario: str,
    backend: str,
    precision: str,
    batch: int,
    shots: int,
    classes: int,
    **extra: Any,
) -> list[dict[str, Any]]:
    """One result per stage of a :class:`~icpd.benchmarks.timer.TimingResult` (end to end included).

    Memory peaks and warm-up counts go on every entry; CUDA-event samples on the end-to-end one.
    """
    common = {"scenario": scenario, "backend": backend, "precision": precision}
    common.update(batch=batch, shots=shots, classes=classes)
    out = []
    for stage, samples in timing.stage_samples_ms.items():
        more: dict[str, Any] = {
            "peak_rss_bytes": timing.peak_rss_bytes,
            "peak_cuda_bytes": timing.peak_cuda_bytes,
            "warmup_iters": timing.warmup_iters,
            "stop_reason": timing.stop_reason,
        }
        if stage == END_TO_END and timing.gpu_samples_ms is not None:
            more["gpu_samples"] = list(timing.gpu_samples_ms)
        out.append(make_result(stage=stage, samples_ms=samples, **common, **more, **extra))
    return out


def make_document(
    results: Sequence[Mapping[str, Any]],
    *,
    environment: Mapping[str, Any] | None = None,
    random_weights: bool = False,
) -> dict[str, Any]:
    """A complete, valid document; ``environment`` defaults to ``collect_environment()``."""
    from icpd import __version__
    from icpd.benchmarks.env import collect_environment

    doc = {
        "schema_version": SCHEMA_VERSION,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "icpd_version": __version__,
        "random_weights": random_weights,
        "environment": dict(environment) if environment is not None else collect_environment(),
        "results": [dict(r) for r in results],
    }
    validate(doc)
    return doc
