"""Headline ratios of a bench document: what ``icpd bench`` prints under its table and stores in ``ratios``.

Computed from the end-to-end and stage medians the timing harness (:mod:`icpd.benchmarks.latency`)
recorded: cache vs no cache, one call vs N classes, batching, matcher vs encoder, ORT vs torch.
"""

from __future__ import annotations

from typing import Any

from icpd.benchmarks.subjects import BACKENDS
from icpd.benchmarks.timer import END_TO_END

__all__ = ["compute_ratios"]


def _median(doc: dict[str, Any], backend: str, scenario: str, stage: str = END_TO_END, *,
            batch: int = 1, shots: int = 1, classes: int = 1) -> float | None:
    for r in doc["results"]:
        if (r["backend"], r["scenario"], r["stage"], r["batch"], r["shots"], r["classes"]) == (
                backend, scenario, stage, batch, shots, classes):
            return float(r["summary"]["median"])
    return None


def compute_ratios(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The headline ratios of a bench document, from end-to-end and stage medians.

    Each entry: ``name``, ``backend``, ``value``, ``detail`` (how it was computed). Speed-ups
    are > 1 when the deployed way (cache, one call, batching, ORT) is faster.
    """
    out: list[dict[str, Any]] = []

    def add(name: str, backend: str, num: float | None, den: float | None, detail: str) -> None:
        if num is not None and den:
            out.append({"name": name, "backend": backend, "value": num / den, "detail": detail})

    results = doc["results"]
    backends = list(dict.fromkeys(r["backend"] for r in results))
    shots = sorted({r["shots"] for r in results if r["scenario"] in ("cached", "uncached")})
    for be in backends:
        one = _median(doc, be, "cached")
        for k in shots:
            add(f"cached vs uncached {k}-shot: speed-up", be, _median(doc, be, "uncached", shots=k),
                _median(doc, be, "cached", shots=k), "uncached end-to-end median / cached end-to-end median")
        for n in sorted({r["classes"] for r in results if r["scenario"] == "classes"}):
            add(f"{n} classes in one call vs {n} single-class calls: speed-up", be, None if one is None else n * one,
                _median(doc, be, "classes", classes=n),
                f"{n} x cached 1-shot end-to-end median / {n}-classes end-to-end median")
        for b in sorted({r["batch"] for r in results if r["scenario"] == "batch"}):
            med = _median(doc, be, "batch", batch=b)
            add(f"batch {b} vs batch 1, per tile: speed-up", be, one, None if med is None else med / b,
                f"cached 1-shot median / (batch-{b} median / {b})")
        for k in shots:
            add(f"matcher / encoder time, cached {k}-shot", be, _median(doc, be, "cached", "matcher", shots=k),
                _median(doc, be, "cached", "encoder", shots=k), "matcher stage median / encoder stage median")
    for be in backends:  # the deployed query vs the network's own full episode, in PyTorch on the same device
        spec = BACKENDS.get(be)
        if spec is None or spec.backend == "torch":
            continue
        dev = spec.device
        for k in shots:
            add(f"cached {k}-shot vs the PyTorch network's uncached episode: speed-up", f"{be} / torch-{dev}",
                _median(doc, f"torch-{dev}", "uncached", shots=k), _median(doc, be, "cached", shots=k),
                f"torch-{dev} uncached end-to-end median / {be} cached end-to-end median (backends run one after "
                "the other: a drift of the machine between them is not cancelled)")
    for dev in ("cpu", "cuda"):
        add(f"ORT vs torch encoder ({dev}): speed-up", f"ort-{dev} / torch-{dev}",
            _median(doc, f"torch-{dev}", "cached", "encoder"), _median(doc, f"ort-{dev}", "cached", "encoder"),
            "torch encoder stage median / ORT encoder stage median (cached 1-shot)")
    return out
