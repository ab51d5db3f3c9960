"""Latency scenarios over an exported model: what ``icpd bench`` and ``icpd bench ab`` run.

Scenarios (timed per backend, stages apart; by default interleaved in rounds with
:func:`~icpd.benchmarks.timer.measure_rounds`, so a drift of a busy machine reaches all of them
alike; with ``rounds=0`` one after the other with :func:`~icpd.benchmarks.timer.measure`):

- ``uncached``: the full episode as the authors' code runs it: every iteration encodes the K
  support images (``Predictor.encode_support``) *and* the query, then matches (K = 1, 5);
- ``cached``: the deployed path: supports encoded once beforehand, each iteration runs the query
  only (one encoder pass, one matcher pass) (K = 1, 5);
- ``classes``: N classes (one cached 1-shot support each) answered from one query encoding;
  compared (:mod:`~icpd.benchmarks.ratios`) with N separate single-class calls, i.e. N x the
  ``cached`` 1-shot median (exactly those calls, so they are not timed again: on the paper model
  that would cost N more encoder passes per sample and blow the 5-minute budget of the default run);
- ``batch``: B query tiles per call (cached 1-shot); throughput counts tiles.

Stages: ``support_encoding`` (uncached only: encoding and uploading the supports),
``preprocessing``, ``encoder``, ``matcher``, ``postprocessing`` (two-class softmax + label merge)
and ``end_to_end``. The query (:mod:`~icpd.benchmarks.queries`) is
:meth:`~icpd.runtime.predictor.Predictor.predict` itself, its stages timed through its ``timer`` (the same
names); nothing here re-implements it.

Peak RSS is reset before each scenario where Linux allows it (``/proc/self/clear_refs``), so it
is the peak of that scenario (model weights included), not of the export that came before.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import icpd
from icpd.benchmarks.queries import THRESHOLD, inputs_for, query_step, run_query, session
from icpd.benchmarks.ratios import compute_ratios
from icpd.benchmarks.report import RANDOM_WEIGHTS_NOTE
from icpd.benchmarks.schema import make_document, make_result, results_from_timing
from icpd.benchmarks.stats import Summary, high_variance
from icpd.benchmarks.subjects import (  # re-exported: backends and the model identity (shared with precision.py)
    BACKENDS,
    BackendSpec,
    ModelInfo,
    available_backends,
    default_cache_dir,
    model_info,
    parse_backends,
)
from icpd.benchmarks.timer import END_TO_END, StageTimer, TimingConfig, TimingResult, measure, measure_rounds

if TYPE_CHECKING:
    from icpd.runtime.predictor import Predictor

__all__ = [
    "BACKENDS",
    "ABConfig",
    "BackendSpec",
    "BenchConfig",
    "ModelInfo",
    "Scenario",
    "available_backends",
    "compute_ratios",
    "default_cache_dir",
    "parse_backends",
    "plan_scenarios",
    "prepare_model",
    "query_step",
    "run_benchmark",
    "run_model_ab",
    "run_query",
]

STAGES = ("support_encoding", "preprocessing", "encoder", "matcher", "postprocessing")
OnStep = Callable[[str, int, int], None]  # (description, steps done, steps in total)


def prepare_model(
    preset: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    model_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> ModelInfo:
    """An exported model to time: ``model_dir`` as is, else the checkpoint (or seeded random
    weights of ``preset``) exported once into ``cache_dir/<preset>-<fingerprint[:12]>`` and reused."""
    from icpd.artifacts.model_dir import ModelDirError

    note = on_step or (lambda _: None)
    if model_dir is not None:
        if checkpoint is not None:
            from icpd.errors import ParamError, arg

            raise ParamError(f"give {arg('model_dir')} or {arg('checkpoint')}, not both")
        return model_info(Path(model_dir), random_weights=False)
    from icpd.export.onnx import export_model
    from icpd.io.outputs import check_output, claim_output
    from icpd.model.checkpoint import load_checkpoint, model_fingerprint, seeded_model

    check_output(Path(cache_dir or default_cache_dir()), folder=True)  # before the model is built
    note("building the model" + ("" if checkpoint else f" ({RANDOM_WEIGHTS_NOTE})"))
    if checkpoint is not None:
        model, source = load_checkpoint(checkpoint, preset=preset), Path(checkpoint).name
    else:
        model, source = seeded_model(preset or "paper", seed=0), RANDOM_WEIGHTS_NOTE
    fingerprint = model_fingerprint(model)
    path = Path(cache_dir or default_cache_dir()) / f"{model.preset.name}-{fingerprint[:12]}"
    from icpd.artifacts.model_dir import ModelDir
    from icpd.export.onnx import GRAPH_VERSION

    # the cache is shared by design: a run exporting into it is waited for (one note), then its export reused
    with claim_output(path, "bench", folder=True, renamed=True, wait=True, on_wait=note):
        with contextlib.suppress(ModelDirError):
            info = model_info(path, random_weights=checkpoint is None)
            meta = ModelDir.open(path).meta
            fresh = meta.get("graph_version") == GRAPH_VERSION and meta.get("icpd_version") == icpd.__version__
            if info.fingerprint == fingerprint and fresh:  # same weights, exported by this icpd's graphs
                return info
        note(f"exporting to {path} (once; later runs reuse it)")
        t0 = time.perf_counter()
        export_model(model, path, validation_runs=1, force=True, source=source, lock=False)  # claimed above
        return model_info(path, random_weights=checkpoint is None, exported_s=time.perf_counter() - t0)


# -- scenarios ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    name: str  # "uncached", "cached", "classes" or "batch"
    batch: int  # query tiles per call
    shots: int  # support images per class
    classes: int  # classes answered per call
    description: str

    @property
    def label(self) -> str:
        return f"{self.name} b{self.batch} s{self.shots} c{self.classes}"


def plan_scenarios(shots: tuple[int, ...], batches: tuple[int, ...], classes: int) -> list[Scenario]:
    """The scenario list. Cached 1-shot is always there when the classes or batch scenario is: it
    is what their ratios compare with."""
    out = [Scenario("uncached", 1, k, 1,
                    f"full episode, no cache (the authors' way): {k} support(s) + query encoded per call")
           for k in shots]
    baseline = {1} if classes > 1 or any(b > 1 for b in batches) else set()
    out += [Scenario("cached", 1, k, 1, f"cached {k}-shot support: query only") for k in sorted({*shots, *baseline})]
    if classes > 1:
        out.append(Scenario("classes", 1, 1, classes, f"{classes} classes (cached 1-shot) from one query encoding"))
    out += [Scenario("batch", b, 1, 1, f"batch of {b} tiles, cached 1-shot support") for b in batches if b > 1]
    return out


def _scenario_step(predictor: Predictor, sc: Scenario, stages: StageTimer, seed: int) -> Callable[[], Any]:
    if sc.name != "uncached":
        return query_step(predictor, sc.shots, sc.batch, sc.classes, stages, seed)
    inputs = inputs_for(predictor, sc.shots + sc.batch, seed)
    images = inputs.query(sc.batch)
    pixels, masks = list(inputs.pixels[: sc.shots]), inputs.masks[: sc.shots]

    def episode() -> np.ndarray:
        with stages.stage("support_encoding"):  # re-encodes (and uploads) the K supports every call
            s = session(predictor, [predictor.encode_support(pixels, masks, "class0", inputs.embeddings)])
        return s.predict(images, THRESHOLD, timer=stages).labels

    return episode


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS (Linux ``clear_refs`` 5); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _device_hooks(spec: BackendSpec) -> dict[str, Any]:
    """measure() keywords: torch on CUDA and TensorRT get a sync (their images and features stay on
    the GPU between stages, queued), torch also CUDA events and peak device memory."""
    if spec.device.startswith("cuda") and spec.backend in ("torch", "trt"):
        import torch

        if spec.backend == "trt":
            return {"sync": torch.cuda.synchronize}
        return {"sync": torch.cuda.synchronize, "device": spec.device, "cuda_events": True}
    return {}  # ONNX Runtime: each run is finished when it returns


# -- icpd bench --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchConfig:
    """What ``icpd bench`` runs. Times in seconds."""

    preset: str | None = None  # None: paper, or tiny with quick
    checkpoint: Path | None = None  # trained weights; None: seeded random weights (latency only)
    model_dir: Path | None = None  # an exported model dir, used as is
    cache_dir: Path | None = None  # where exports are kept; None: default_cache_dir()
    backends: str | tuple[str, ...] = "auto"  # "auto" or names from BACKENDS
    shots: tuple[int, ...] = (1, 5)  # shots of the uncached and cached scenarios
    batch: tuple[int, ...] = (2,)  # tile batch sizes of the batch scenario (B > 1)
    classes: int = 5  # N of the N-classes scenario (1: skip it)
    duration_s: float | None = None  # measure each scenario at least this long (None: 4 s, quick 0.3 s)
    iterations: int | None = None  # ... and at least this many iterations (None: 3, quick 5)
    warmup_s: float | None = None  # warm-up per scenario, at least one call (None: 1 s, quick 0.2 s)
    quick: bool = False  # tiny preset and short budgets: a smoke run in seconds
    threads: int | None = None  # CPU threads per backend (None: the backend's default)
    seed: int = 0  # synthetic inputs
    rounds: int = 5  # > 0: a backend's scenarios interleaved, this many rounds (measure_rounds); 0: one after the other
    # e.g. ("fp32", "int8"): timed side by side (icpd.benchmarks.precision); (): the model's own
    precisions: tuple[str, ...] = ()

    def timing(self) -> TimingConfig:
        duration = self.duration_s if self.duration_s is not None else (0.3 if self.quick else 4.0)
        iters = self.iterations if self.iterations is not None else (5 if self.quick else 3)
        warmup = self.warmup_s if self.warmup_s is not None else (0.2 if self.quick else 1.0)
        # max_time only guards against a stuck machine: min_iters wins below it
        return TimingConfig(warmup_s=warmup, min_iters=iters, min_time_s=duration,
                            max_iters=max(iters, 10_000), max_time_s=max(120.0, 10 * duration))


def run_benchmark(config: BenchConfig, on_step: OnStep | None = None) -> dict[str, Any]:
    """Prepare the model, time every scenario on every backend; return a bench document
    (``schema.validate``-valid) with ``ratios``, ``warnings``, ``weights`` and ``wall_s`` added."""
    from icpd.benchmarks.precision import check_backends, precision_ratios, prepare_precisions
    from icpd.runtime.predictor import Predictor

    t0 = time.perf_counter()
    specs = parse_backends(config.backends)
    check_backends(config.precisions, specs)
    scenarios = plan_scenarios(config.shots, config.batch, config.classes)
    n_prec = max(1, len(config.precisions))
    total = 1 + len(specs) * n_prec * (1 + len(scenarios))
    done = 0

    def step(text: str) -> None:
        if on_step is not None:
            on_step(text, done, total)

    preset = config.preset or ("tiny" if config.quick and config.checkpoint is None else None)
    model = prepare_model(preset, config.checkpoint, config.model_dir, config.cache_dir, step)
    models = prepare_precisions(model, config.precisions, config.cache_dir, step)
    done += 1
    timing = config.timing()
    results: list[dict[str, Any]] = []
    warnings: list[str] = []
    for spec in specs:
        predictors = {}
        for prec, info in models.items():
            step(f"{spec.name}: loading {info.path.name} ({prec})")
            predictors[prec] = Predictor.load(info.path, backend=spec.backend, device=spec.device,
                                              threads=config.threads)
            done += 1
        hooks = _device_hooks(spec)
        plan = [(prec, sc) for prec in predictors for sc in scenarios]
        timed_all: list[tuple[str, Scenario, TimingResult, bool]] = []
        if config.rounds > 0:  # interleaved: every scenario (and precision) sees the same drifts of the machine
            what = f"{len(plan)} scenarios" + (f" ({' and '.join(predictors)})" if len(predictors) > 1 else "")
            step(f"{spec.name}: {what} interleaved, warming up")
            timers = [StageTimer(sync=hooks.get("sync")) for _ in plan]
            fns = [_scenario_step(predictors[prec], sc, t, config.seed) for (prec, sc), t in zip(plan, timers)]

            def progress(r: int, n: int, spec: BackendSpec = spec, what: str = what) -> None:
                # a line per round: never minutes without a word
                step(f"{spec.name}: {what} interleaved, round {r}/{n}")

            rounds = measure_rounds(fns, config.rounds, warmup_s=timing.warmup_s, stages=timers,
                                    sync=hooks.get("sync"), seed=config.seed, on_round=progress)
            timed_all = [(prec, sc, timed, False) for (prec, sc), timed in zip(plan, rounds)]
            done += len(plan)
        else:
            for prec, sc in plan:
                step(f"{spec.name}: {sc.description}" + (f" ({prec})" if len(predictors) > 1 else ""))
                stages = StageTimer(sync=hooks.get("sync"))
                fns = [_scenario_step(predictors[prec], sc, stages, config.seed)]
                scoped = _reset_peak_rss()
                timed_all.append((prec, sc, measure(fns[0], timing, stages=stages, **hooks), scoped))
                done += 1
        for prec, sc, timed, scoped in timed_all:
            entries = results_from_timing(timed, scenario=sc.name, backend=spec.name, precision=prec,
                                          batch=sc.batch, shots=sc.shots, classes=sc.classes,
                                          description=sc.description,
                                          peak_rss_scope="scenario" if scoped else "process")
            results += entries
            e2e = Summary.from_dict(entries[-1]["summary"])
            if (warning := high_variance(e2e)) is not None:
                warnings.append(f"{spec.name} / {sc.label}: {warning}")
        del predictors, fns  # free this backend's models before the next one loads
        gc.collect()
    step("done")
    doc = make_document(results, random_weights=model.random_weights)
    doc.update(
        weights={"origin": model.weights, "random": model.random_weights, "fingerprint": model.fingerprint},
        model={"preset": model.preset, "path": str(model.path), "exported_s": model.exported_s},
        precision=",".join(models),
        models={prec: {"path": str(info.path), "fingerprint": info.fingerprint, "prepared_s": info.exported_s,
                       **({"kept_fp32": list(info.kept_fp32)} if prec == "int8" else {})}
                for prec, info in models.items()},
        config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        timing=asdict(timing),
        scenarios={sc.label: sc.description for sc in scenarios},
        warnings=warnings,
    )
    doc["ratios"] = compute_ratios(doc) + precision_ratios(doc)
    doc["wall_s"] = time.perf_counter() - t0
    return doc


# -- icpd bench ab -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ABConfig:
    """What ``icpd bench ab`` runs: the cached-support query of two models, interleaved."""

    backend: str = "ort-cpu"  # one name from BACKENDS (or an alias: ort, torch)
    rounds: int = 30  # measured rounds; each runs A and B once, in a seeded random order
    warmup_rounds: int = 2
    shots: int = 1
    batch: int = 1
    threads: int | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # copied into the document's "ab" block


def run_model_ab(baseline_dir: str | os.PathLike[str], candidate_dir: str | os.PathLike[str],
                 config: ABConfig = ABConfig()) -> dict[str, Any]:
    """Time two model dirs interleaved in this process (``ab.run_ab``); a document whose
    results carry ``variant`` ``baseline`` / ``candidate`` (``compare.split_variants`` splits it)."""
    from icpd.benchmarks.ab import run_ab
    from icpd.runtime.predictor import Predictor

    (spec,) = parse_backends(config.backend)
    infos = [model_info(Path(d), random_weights=False) for d in (baseline_dir, candidate_dir)]
    steps = [
        query_step(Predictor.load(i.path, backend=spec.backend, device=spec.device, threads=config.threads),
                   config.shots, config.batch, seed=config.seed)
        for i in infos
    ]
    sync = _device_hooks(spec).get("sync")
    ab = run_ab(steps[0], steps[1], config.rounds, warmup_rounds=config.warmup_rounds, seed=config.seed, sync=sync)
    results = [
        make_result(scenario="cached", backend=spec.name, precision=info.precision, stage=END_TO_END,
                    batch=config.batch, shots=config.shots, classes=1, samples_ms=samples, variant=variant,
                    model_dir=str(info.path), fingerprint=info.fingerprint, weights=info.weights)
        for variant, info, samples in (("baseline", infos[0], ab.a_ms), ("candidate", infos[1], ab.b_ms))
    ]
    doc = make_document(results, random_weights=any(i.random_weights for i in infos))
    doc["ab"] = {"rounds": config.rounds, "warmup_rounds": config.warmup_rounds, "order": ab.order,
                 "backend": spec.name, "seed": config.seed, **config.extra}
    return doc
