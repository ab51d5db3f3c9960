"""Option parsers the ``icpd bench`` commands share: integer lists, slowdown fractions, backend
names, and the claim on the files a run will write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

__all__ = ["backend_names", "claim_outputs", "parse_fraction", "parse_ints"]


def parse_ints(text: str, option: str, minimum: int = 1) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give comma-separated integers, e.g. 1,5", param_hint=option) from None
    if not values or min(values) < minimum:
        raise typer.BadParameter(f"{text!r}: give integers >= {minimum}, e.g. 1,5", param_hint=option)
    return values


def parse_fraction(text: str) -> float:
    """``"10%"`` or ``"0.10"`` -> 0.10 (a bare number >= 1 is refused as ambiguous)."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: write a percentage (10%) or a fraction (0.10)") from None
    if value < 0 or (value >= 1 and not raw.endswith("%")):
        raise typer.BadParameter(f"{text!r}: write a percentage (10%) or a fraction below 1 (0.10)")
    return value


_DEVICES = ("auto", "cpu", "cuda")


def backend_names(backends: str, device: str = "auto") -> str | tuple[str, ...]:
    """``--backends`` (auto, or torch/ort/trt, comma-separated) and ``--device`` (auto, cpu,
    cuda) -> what :class:`icpd.benchmarks.latency.BenchConfig` takes: ``"auto"`` or result names
    such as ``ort-cpu``, ``torch-cuda``, ``trt``. The old spellings (``ort-cpu`` ...) are accepted.

    Raises:
        typer.BadParameter: an unknown backend or device, or trt on the CPU.
    """
    from icpd.benchmarks.subjects import BACKENDS as LABELS
    from icpd.runtime.backends import registry

    if device not in _DEVICES:
        raise typer.BadParameter(f"--device {device!r}: choose auto, cpu or cuda")
    choices = registry.choices()
    if backends.strip() == "auto":
        if device == "auto":
            return "auto"
        from icpd.benchmarks.latency import available_backends

        return tuple(n for n in available_backends() if LABELS[n].device == device)
    names: list[str] = []
    for item in (b.strip() for b in backends.split(",")):
        if not item:
            continue
        try:
            record = registry.info(item)  # a name or an alias (onnxruntime, tensorrt)
        except ValueError:
            if item in LABELS:  # a result label (ort-cpu, torch-cuda): the old spelling, device included
                names.append(item)
                continue
            raise typer.BadParameter(f"unknown backend {item!r}; choose auto or a list of {choices} "
                                     "(with --device cpu|cuda)", param_hint="--backends") from None
        if len(record.devices) == 1:  # trt: CUDA only, labelled by its name
            if device not in ("auto", *record.devices):
                raise typer.BadParameter(f"{record.name} runs on {record.devices[0]}: drop it or pass "
                                         f"--device {record.devices[0]}", param_hint="--backends")
            names.append(record.name)
        else:
            names.append(f"{record.name}-{'cpu' if device == 'auto' else device}")
    if not names:
        raise typer.BadParameter(f"no backend given; use auto or e.g. {choices}", param_hint="--backends")
    return tuple(dict.fromkeys(names))


def claim_outputs(json_path: Path | None, report_dir: Path | None, junit: Path | None = None) -> Any:
    """Hold --json, --report (and --junit) for the run (:func:`icpd.io.outputs.claim_output`): an unwritable one fails
    before the work, and another run writing the same one is refused at once, with its pid."""
    import contextlib

    from icpd.io.outputs import claim_output

    claims = contextlib.ExitStack()
    with claims:
        for path, folder in ((json_path, False), (report_dir, True), (junit, False)):
            if path is not None:
                claims.enter_context(claim_output(path, "bench", folder=folder))
        return claims.pop_all()
