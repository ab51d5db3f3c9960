"""``icpd bench --precision fp32,int8``: the same network at several precisions, timed side by side.

The FP32 model dir (exported, or the one given) is the reference; an INT8 dir is quantized from it
once (:func:`icpd.export.quantize.convert_model_dir_int8`, the export's default options) into the
bench cache and reused while the FP32 dir and those options are unchanged. :func:`run_benchmark
<icpd.benchmarks.latency.run_benchmark>` then interleaves every (precision, scenario) of a backend
in the same rounds, so a drift of a busy machine reaches both precisions alike, and
:func:`precision_ratios` adds the INT8 / FP32 speed-ups of the encoder stage and the end-to-end
query. INT8 runs on ONNX Runtime on the CPU only (the torch backend would run the FP32 weights).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icpd.errors import ParamError, arg

if TYPE_CHECKING:
    from icpd.benchmarks.subjects import BackendSpec, ModelInfo

PRECISIONS = ("fp32", "int8")  # what --precision may list here (fp16 dirs are for TensorRT: `icpd build`)


def parse_precisions(text: str | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"fp32,int8"`` -> ``("fp32", "int8")``; None or empty: ``()`` (the model dir's own precision).

    Raises:
        ParamError: an unknown or repeated precision (named as ``BenchConfig.precisions``).
    """
    if text is None:
        return ()
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    bad = [t for t in items if t not in PRECISIONS]
    if bad:
        raise ParamError(f"{arg('precisions', ','.join(items))}: unknown {', '.join(bad)}; "
                         f"choose from {', '.join(PRECISIONS)}")
    if len(set(items)) != len(items):
        raise ParamError(f"{arg('precisions', ','.join(items))}: a precision is listed twice")
    return tuple(items)


def check_backends(precisions: tuple[str, ...], specs: list[BackendSpec]) -> None:
    """INT8 dirs run on ONNX Runtime (CPU) only: refuse another backend with them."""
    if "int8" in precisions:
        other = [s.name for s in specs if (s.backend, s.device) != ("ort", "cpu")]
        if other:
            raise ParamError(f"{arg('precisions', 'int8')} runs on ONNX Runtime on the CPU only; "
                             f"{arg('backends', ','.join(other))} cannot run it (use "
                             f"{arg('backends', 'ort-cpu')})", param="backends")


def prepare_precisions(model: ModelInfo, precisions: tuple[str, ...], cache_dir: str | Path | None,
                       on_step: Callable[[str], None] | None = None) -> dict[str, ModelInfo]:
    """precision -> the model dir to time at it: ``model`` itself for its own precision, an INT8
    dir quantized from it (into ``cache_dir``, reused when current) for ``int8``.

    Raises:
        ParamError: a precision other than the model's own that cannot be made from it.
    """
    from icpd.benchmarks.subjects import default_cache_dir, model_info

    note = on_step or (lambda _: None)
    out: dict[str, ModelInfo] = {}
    for p in precisions or (model.precision,):
        if p == model.precision:
            out[p] = model
            continue
        if (p, model.precision) != ("int8", "fp32"):
            raise ParamError(f"{arg('precisions', p)}: cannot be made from the {model.precision} model dir "
                             f"{model.path}; give an FP32 model dir (or none)")
        out[p] = _int8_dir(model, Path(cache_dir or default_cache_dir()), note)
        out[p] = model_info(out[p].path, model.random_weights, out[p].exported_s)
    return out


def _int8_dir(model: ModelInfo, cache: Path, note: Callable[[str], None]) -> ModelInfo:
    from icpd.artifacts.model_dir import ModelDir, ModelDirError
    from icpd.benchmarks.subjects import model_info
    from icpd.export.quantize import DEFAULT_OPTIONS, convert_model_dir_int8, int8_fingerprint
    from icpd.io.outputs import claim_output

    path = cache / f"{model.preset}-{model.fingerprint[:12]}-int8"
    # shared cache: another run quantizing into it is waited for (one note), then its dir reused
    with claim_output(path, "bench", folder=True, renamed=True, wait=True, on_wait=note):
        with contextlib.suppress(ModelDirError):  # reuse: same FP32 weights, same options
            if ModelDir.open(path).fingerprint == int8_fingerprint(model.fingerprint, DEFAULT_OPTIONS):
                return model_info(path, model.random_weights)
        note(f"quantizing {model.path.name} to INT8 into {path} (once; later runs reuse it)")
        t0 = time.perf_counter()
        convert_model_dir_int8(model.path, path, DEFAULT_OPTIONS, force=True)
        return model_info(path, model.random_weights, exported_s=time.perf_counter() - t0)


def precision_ratios(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """INT8 vs FP32 speed-ups (> 1: INT8 faster) per backend and cached scenario, from the medians of
    the same interleaved run: the encoder stage and the end-to-end query."""
    med: dict[tuple[str, str, str, int, int, int, str], float] = {}
    for r in doc["results"]:
        key = (r["backend"], r["precision"], r["scenario"], r["batch"], r["shots"], r["classes"], r["stage"])
        med[key] = float(r["summary"]["median"])
    out = []
    for (be, prec, sc, b, k, c, stage), fp32 in sorted(med.items()):
        if prec != "fp32" or sc != "cached" or stage not in ("encoder", "end_to_end"):
            continue
        int8 = med.get((be, "int8", sc, b, k, c, stage))
        if int8:
            what = "encoder" if stage == "encoder" else f"cached {k}-shot query"
            out.append({"name": f"INT8 vs FP32 {what}: speed-up", "backend": be, "value": fp32 / int8,
                        "detail": f"FP32 {stage} median / INT8 {stage} median (cached {k}-shot, one "
                                  "interleaved run); " + int8_kept_text(doc)})
    return out


def int8_kept_text(doc: dict[str, Any]) -> str:
    """What the timed INT8 dir kept in FP32, in words: ``"full INT8 (no block kept FP32)"`` or
    ``"INT8 with 2 block(s) kept FP32: a, b"`` (from the run's ``models.int8.kept_fp32``)."""
    kept = (doc.get("models") or {}).get("int8", {}).get("kept_fp32") or []
    if not kept:
        return "full INT8 (no block kept FP32)"
    return f"INT8 with {len(kept)} block(s) kept FP32: {', '.join(kept)}"
