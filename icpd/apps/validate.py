"""``icpd validate``: every backend against PyTorch FP32 on the same seeded episodes.

The episodes, error statistics and pass rule are the harness of :mod:`icpd.export.validate`,
shared with the export self-check: a query batch of uint8 images (not of the preset's size, so
the resize is exercised), a support set of K images with rectangle masks, and seeded class
embeddings. Each backend runs them end to end as deployment does (its own preprocess, encoder,
support preparation and matcher); per output (``images``, ``feat_*``, ``logits``,
``query_prior``, ``pyramid_*``) the error statistics against the reference are merged over
episodes (worst max, mean of means), and the argmax masks of the logits are compared
(foreground IoU, pixel agreement).

Pass rule (:func:`icpd.export.validate.judge`, per the backend's precision): FP32 as strict as
the export self-check (errors relative to each output's scale, pixel agreement >= 0.999, mean
foreground IoU >= 0.999); FP16 by its masks (mean foreground IoU >= 0.99), errors reported;
INT8 (an INT8 model dir's ``ort``) by :mod:`icpd.export.pass_rule`, the export self-check's rule
(masks, query prior, rank prior; encoder cosine as a guard). The torch backend of an INT8 dir runs its FP32
weights.
The model dir is verified first (every file's sha256 against model.json).
TODO(dataset): add the mIoU of each backend on an iSAID-5i/DLRSD-5i fold next to the reference's
(needs the datasets, which this check must run without).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from icpd.artifacts.model_dir import ModelDir
from icpd.config import Precision
from icpd.errors import ParamError, arg
from icpd.export.validate import TOLERANCES, Comparison, Episode, ErrorStats, seeded_episodes
from icpd.export.wrappers import MATCHER_OUTPUTS_ALL, encoder_output_names
from icpd.io.atomic import write_text_atomic
from icpd.runtime.backends.registry import choices as backend_choices
from icpd.runtime.backends.registry import names as backend_names
from icpd.runtime.backends.registry import resolve as resolve_backend

# minimum mean foreground IoU vs the FP32 reference, per precision (part of the pass rule)
IOU_RULE = {p.value: t.min_mean_iou for p, t in TOLERANCES.items()}
BACKEND_NAMES = backend_names()  # the registry's: torch, ort, trt


def run_episode(backend: Any, model_dir: ModelDir, episode: Episode) -> dict[str, np.ndarray]:
    """All outputs of one episode on one backend: images, feat_*, and the matcher outputs it has."""
    from icpd.runtime.predictor import Predictor

    pred = Predictor(model_dir, backend, getattr(backend, "name", "backend"))
    images = pred.preprocess(episode.query)
    feats = pred.encode(images)
    support = pred.encode_support(episode.support, episode.masks, "validate", episode.embeddings)
    outputs = [n for n in MATCHER_OUTPUTS_ALL if n in backend.matcher_outputs]
    names = encoder_output_names(model_dir.preset)
    result = {"images": pred.to_host(images), **dict(zip(names, pred.to_host(feats)))}
    result.update(zip(outputs, pred.match(feats, support, outputs)))
    return result


@dataclass
class BackendReport:
    """One backend against the reference: the harness's :class:`Comparison` and its verdict."""

    name: str
    precision: str
    comparison: Comparison | None = None
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.comparison is None:
            self.comparison = Comparison(Precision(self.precision))

    @property
    def outputs(self) -> dict[str, ErrorStats]:
        return self.comparison.outputs

    @property
    def masks(self) -> list[dict[str, float]]:  # one per episode
        return self.comparison.masks

    @property
    def mean_iou(self) -> float:
        return self.comparison.mean_iou

    @property
    def min_pixel_agreement(self) -> float:
        return self.comparison.min_pixel_agreement

    @property
    def required_iou(self) -> float:
        return IOU_RULE[Precision(self.precision).value]

    @property
    def failures(self) -> list[str]:
        return self.comparison.failures()

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "precision": self.precision, "passed": self.passed,
                "failures": self.failures,
                "tolerance": TOLERANCES[Precision(self.precision)].as_dict(),
                "rule": f"icpd.export.validate pass rule for {self.precision} "
                        f"(mean foreground IoU >= {self.required_iou})",
                "mean_foreground_iou": self.mean_iou, "min_pixel_agreement": self.min_pixel_agreement,
                "masks": self.masks, "seconds": self.seconds,
                "outputs": {k: v.as_dict() for k, v in self.outputs.items()}}


@dataclass
class ValidationReport:
    reference: str
    runs: int
    backends: dict[str, BackendReport]

    @property
    def passed(self) -> bool:
        return all(b.passed for b in self.backends.values())

    def as_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "runs": self.runs, "passed": self.passed, "rule": IOU_RULE,
                "backends": {k: v.as_dict() for k, v in self.backends.items()}}


def compare_backends(reference: Any, backends: dict[str, Any], model_dir: ModelDir, runs: int = 3,
                     seed: int = 0, batch: int = 2, precisions: dict[str, str] | None = None,
                     reference_name: str = "torch fp32") -> ValidationReport:
    """Run ``runs`` seeded episodes on ``reference`` and each backend; compare outputs and masks."""
    precisions = precisions or {}
    episodes = seeded_episodes(model_dir.preset, runs, seed, batch)
    refs = [run_episode(reference, model_dir, ep) for ep in episodes]
    reports = {}
    for name, backend in backends.items():
        rep = BackendReport(name, precisions.get(name, Precision.FP32.value))
        t0 = time.perf_counter()
        for ep, ref in zip(episodes, refs):
            got = ref if backend is reference else run_episode(backend, model_dir, ep)
            for key, value in got.items():
                if key in ref:
                    rep.comparison.add(key, value, ref[key])
            rep.comparison.add_masks(got["logits"], ref["logits"])
        rep.seconds = time.perf_counter() - t0
        reports[name] = rep
    return ValidationReport(reference_name, runs, reports)


def make_backend(model_dir: ModelDir, name: str, device: str = "cpu",
                 engine_dir: str | os.PathLike[str] | None = None,
                 threads: int | None = None) -> Any:
    """The backend object ``Predictor.load`` makes for ``name`` (torch, ort, trt)."""
    from icpd.runtime.predictor import Predictor

    predictor = Predictor.load(model_dir.path, backend=name, device=device, threads=threads,
                               engine_dir=engine_dir)
    return predictor.backend


def validate_model(model_dir: str | os.PathLike[str],
                   backends: tuple[str, ...] | list[str] = ("torch", "ort"),
                   engine_dir: str | os.PathLike[str] | None = None, runs: int = 3, seed: int = 0,
                   batch: int = 2, device: str = "cpu") -> ValidationReport:
    """Each of ``backends`` against PyTorch FP32 on the CPU (see the module docstring).

    ``torch`` runs on ``device`` (on the CPU it *is* the reference: zero error, a sanity check);
    ``ort`` on the CPU; ``trt`` needs ``engine_dir`` (from ``icpd build``), TensorRT and a GPU.

    Raises:
        ParamError (a ValueError): unknown backend, trt without ``engine_dir``, a runtime-only model dir;
        ModelDirError; TensorRTUnavailableError; EngineMismatchError.
    """
    md = ModelDir.open(model_dir, verify=True)
    try:
        resolved = tuple(resolve_backend(b).value for b in backends)  # aliases (onnxruntime) as their names
    except ValueError:
        resolved = ()
    if not resolved:
        raise ParamError(f"{arg('backends', ','.join(backends))}: choose from {backend_choices()}")
    backends = resolved
    if "trt" in backends:
        from icpd.trt import import_tensorrt

        import_tensorrt()
        if engine_dir is None:
            raise ParamError(f"{arg('backends', 'trt')} needs {arg('engine_dir', 'ENGINE_DIR')} (build it "
                             "with "
                             "`icpd build`)", param="engine_dir")
    if md.runtime_only:  # its files were verified above; the reference needs the PyTorch weights
        raise ParamError(f"{arg('model_dir', md.path)} is runtime-only (no model.safetensors): icpd validate "
                         "compares against PyTorch; validate the full export, or export again without "
                         f"{arg('runtime_only', True)}")
    reference = make_backend(md, "torch", "cpu")
    impls: dict[str, Any] = {}
    precisions: dict[str, str] = {}
    for name in backends:
        if name == "torch":
            impls[name] = reference if device == "cpu" else make_backend(md, "torch", device)
            precisions[name] = "fp32"
        elif name == "ort":
            impls[name] = make_backend(md, "ort")
            precisions[name] = md.meta.get("precision", "fp32")
        else:
            from icpd.artifacts.engine_sidecar import read_sidecar

            sidecar = read_sidecar(engine_dir)
            batch = max(sidecar.batch[0], min(batch, sidecar.batch[2]))
            impls[name] = make_backend(md, "trt", device, engine_dir)
            precisions[name] = sidecar.precision
    return compare_backends(reference, impls, md, runs=runs, seed=seed, batch=batch, precisions=precisions)


def check_fp16_against_fp32(fp32_dir: str | os.PathLike[str], fp16_dir: str | os.PathLike[str],
                            runs: int = 2) -> dict[str, Any]:
    """ONNX Runtime (CPU) on the FP16 dir against the FP32 dir: per-output error stats and mask agreement.

    ORT's CPU provider has FP16 kernels for only some ops and wraps the others in Casts, so this
    measures the FP16 storage and rounding of the graph, not TensorRT's FP16 kernels.
    """
    ref = make_backend(ModelDir.open(fp32_dir), "ort")
    half = make_backend(ModelDir.open(fp16_dir), "ort")
    report = compare_backends(ref, {"ort-fp16": half}, ModelDir.open(fp32_dir), runs=runs,
                              precisions={"ort-fp16": "fp16"}, reference_name="ort fp32")
    return report.as_dict()


def check_int8_against_fp32(fp32_dir: str | os.PathLike[str], int8_dir: str | os.PathLike[str], runs: int = 3,
                            seed: int = 0) -> dict[str, Any]:
    """The INT8 export's self-check: ONNX Runtime (CPU) on the INT8 dir against the FP32 dir, on
    the harness's seeded episodes.

    Reports, per output, cosine similarity and max / mean absolute error (every encoder output,
    the query prior, the logits, the pyramids), the rank prior's agreement
    (:func:`icpd.export.validate.rank_prior_agreement`) and the argmax masks' foreground IoU and
    pixel agreement; ``passed`` / ``failures`` by the INT8 pass rule
    (:data:`icpd.export.validate.INT8_THRESHOLDS`).
    """
    from icpd.export.validate import INT8_THRESHOLDS, rank_prior_agreement

    ref_dir, q_dir = ModelDir.open(fp32_dir), ModelDir.open(int8_dir)
    ref, q = make_backend(ref_dir, "ort"), make_backend(q_dir, "ort")
    cmp = Comparison(Precision.INT8)
    rank: list[dict[str, float]] = []
    t0 = time.perf_counter()
    for ep in seeded_episodes(ref_dir.preset, runs, seed):
        want, got = run_episode(ref, ref_dir, ep), run_episode(q, q_dir, ep)
        for key, value in got.items():
            if key in want:
                cmp.add(key, value, want[key])
        cmp.add_masks(got["logits"], want["logits"])
        rank.append(rank_prior_agreement(got, want))
    outputs = cmp.outputs
    failures = cmp.failures()
    merged_rank = ({"agreement": min(r["agreement"] for r in rank), "tolerance": rank[0]["tolerance"],
                    "max_abs": max(r["max_abs"] for r in rank),
                    "mean_abs": float(np.mean([r["mean_abs"] for r in rank]))}
                   if rank and rank[0] else {})
    return {
        "reference": "ort fp32", "runs": runs, "seed": seed, "passed": not failures, "failures": failures,
        "thresholds": INT8_THRESHOLDS.as_dict(),
        "encoder": {k: {"cosine": s.cosine, "max_abs": s.max_abs, "mean_abs": s.mean_abs,
                        "ref_max": s.ref_max}
                    for k, s in outputs.items() if k.startswith("feat_")},
        "query_prior_max_abs": outputs["query_prior"].max_abs if "query_prior" in outputs else None,
        "rank_prior": merged_rank,
        "masks": {"mean_foreground_iou": cmp.mean_iou, "min_pixel_agreement": cmp.min_pixel_agreement,
                  "episodes": cmp.masks},
        "outputs": {k: v.as_dict() for k, v in outputs.items()},
        "seconds": time.perf_counter() - t0,
    }


def format_int8_check(report: dict[str, Any]) -> str:
    """The INT8 self-check as lines: every encoder output, the query and rank priors, the masks, the
    verdict."""
    lines = [f"INT8 vs FP32 (ONNX Runtime, {report['runs']} seeded episodes):",
             f"  {'output':<16} {'cosine':>9} {'max abs':>10} {'mean abs':>10}"]
    for name, s in report["encoder"].items():
        lines.append(f"  {name:<16} {s['cosine']:>9.5f} {s['max_abs']:>10.3g} {s['mean_abs']:>10.3g}")
    if report.get("query_prior_max_abs") is not None:
        lines.append(f"  query prior max |diff| {report['query_prior_max_abs']:.3g}")
    r = report.get("rank_prior") or {}
    if r:
        lines.append(f"  rank prior: {100 * r['agreement']:.2f} % of values within {r['tolerance']} "
                     f"(max |diff| {r['max_abs']:.3g}, mean {r['mean_abs']:.3g})")
    m = report["masks"]
    lines.append(f"  masks: mean foreground IoU {m['mean_foreground_iou']:.4f}, min pixel agreement "
                 f"{m['min_pixel_agreement']:.4f} -> {'PASS' if report['passed'] else 'FAIL'}")
    lines.extend(f"  failed: {f}" for f in report["failures"])
    return "\n".join(lines)


def format_report(report: ValidationReport) -> str:
    """A plain-text table: per backend, per output error stats, then the mask verdict."""
    lines = [f"reference: {report.reference}, {report.runs} seeded episodes"]
    for rep in report.backends.values():
        lines.append(f"\n[{rep.name}] precision {rep.precision}, {rep.seconds:.2f} s")
        lines.append(f"  {'output':<16} {'max abs':>10} {'mean abs':>10} {'p99 abs':>10} {'ref max':>10} "
                     f"{'cosine':>9}")
        for name, s in rep.outputs.items():
            lines.append(f"  {name:<16} {s.max_abs:>10.3g} {s.mean_abs:>10.3g} {s.p99_abs:>10.3g} "
                         f"{s.ref_max:>10.3g} {s.cosine:>9.5f}")
        verdict = "PASS" if rep.passed else "FAIL"
        lines.append(f"  masks: mean foreground IoU {rep.mean_iou:.4f} (rule >= {rep.required_iou}), "
                     f"min pixel agreement {rep.min_pixel_agreement:.4f} -> {verdict}")
        lines.extend(f"  failed: {f}" for f in rep.failures)
    lines.append(f"\n{'PASS' if report.passed else 'FAIL'}")
    return "\n".join(lines)


def write_report(report: ValidationReport, path: str | os.PathLike[str]) -> Path:
    import json

    return write_text_atomic(Path(path), json.dumps(report.as_dict(), indent=2) + "\n")
