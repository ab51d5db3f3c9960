"""Self-test steps for the backends, on the tiny preset with seeded weights (nothing is downloaded):
export, ONNX Runtime vs PyTorch on the CPU, PyTorch on CUDA vs the CPU, TensorRT engines of the
``sort`` and ``plugin`` forms, and each backend's latency. Comparisons use ``icpd validate``'s
harness and pass rule (:mod:`icpd.apps.validate`)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icpd.config import RankPriorForm
from icpd.selftest.kernels import _gpu_or_skip
from icpd.selftest.report import Skip

PRESET = "tiny"
SEED = 0
RUNS = 2  # seeded episodes per comparison
TIMED = 5  # timed episodes per GPU backend (after 2 warm-ups)


@dataclass
class Exports:
    """Where this run's exported model dirs are: a folder of the run, or a cache reused by later runs
    (keyed by :func:`export_key`: an export is reused only for the same sources and versions)."""

    work: Path
    cache: Path | None = None
    dirs: dict[RankPriorForm, Path] = field(default_factory=dict)  # form -> model dir
    reused: dict[RankPriorForm, bool] = field(default_factory=dict)

    def get(self, form: RankPriorForm) -> Path:
        """The seeded tiny model exported in ``form`` (exported now unless this run or the cache has it)."""
        from icpd.artifacts.model_dir import ModelDir, ModelDirError
        from icpd.export.onnx import export_model
        from icpd.model.checkpoint import seeded_model

        if form in self.dirs:
            return self.dirs[form]
        # names from the form's value (an f-string of the member itself reads "RankPriorForm.SORT")
        out = (self.cache / f"tiny-{form.value}-{export_key()}") if self.cache else self.work / f"tiny-{form.value}"
        try:
            ModelDir.open(out)  # every file present with its recorded size
            self.reused[form] = True
        except ModelDirError:
            export_model(seeded_model(PRESET, seed=SEED), out, rank_prior=form, validate=False,
                         force=out.exists())
            self.reused[form] = False
            if self.cache:
                self._prune(form, keep=out)
        self.dirs[form] = out
        return out

    def _prune(self, form: RankPriorForm, keep: Path) -> None:
        """Remove this form's exports of other sources or versions (17 MB each; never reused again)."""
        import re
        import shutil

        assert self.cache is not None
        for old in self.cache.glob(f"tiny-{form.value}-*"):
            # a complete dir of another key (exports are written to a temporary folder, then renamed)
            if old != keep and old.is_dir() and re.fullmatch(rf"tiny-{form.value}-[0-9a-f]{{16}}", old.name):
                shutil.rmtree(old, ignore_errors=True)

    def exported(self, form: RankPriorForm) -> Path:
        """A model dir an earlier step exported, or Skip."""
        if form not in self.dirs:
            raise Skip("needs the exported model (the export step failed)")
        return self.dirs[form]


def export_key() -> str:
    """sha256 (16 hex) over what decides the exported graphs: icpd's config, model, export and kernel
    sources, and the versions of icpd, torch, onnx and onnxscript."""
    import hashlib

    import onnx
    import onnxscript
    import torch

    import icpd

    root = Path(icpd.__file__).parent
    h = hashlib.sha256()
    for f in sorted([root / "config.py", *root.glob("model/*.py"), *root.glob("export/*.py"),
                     *root.glob("kernels/*.py")]):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    for v in (icpd.__version__, torch.__version__, onnx.__version__, onnxscript.__version__):
        h.update(v.encode() + b"\0")
    return h.hexdigest()[:16]


def _verdict(report: Any, details: dict[str, Any]) -> None:
    """Record each backend's pass/fail, mask agreement and worst output error; raise on a FAIL."""
    details["reference"] = report.reference
    failed = []
    for name, b in report.backends.items():
        worst = max(b.outputs.values(), key=lambda e: e.max_abs / max(e.ref_max, 1e-12))
        details[name] = {"precision": b.precision, "passed": b.passed,
                         "mean_foreground_iou": round(b.mean_iou, 5),
                         "min_pixel_agreement": round(b.min_pixel_agreement, 5),
                         "worst_output": {"name": worst.name, "max_abs": worst.max_abs,
                                          "ref_max": worst.ref_max},
                         "failures": b.failures}
        if not b.passed:
            failed.append(f"{name} ({b.precision}): {'; '.join(b.failures)}")
    details["summary"] = ", ".join(f"{n} IoU {b.mean_iou:.4f}" for n, b in report.backends.items())
    if failed:
        raise AssertionError(f"against {report.reference}, by icpd validate's pass rule: "
                             f"{' | '.join(failed)}")


def export_step(exports: Exports, details: dict[str, Any]) -> None:
    t0 = time.perf_counter()
    path = exports.get(RankPriorForm.SORT)
    how = "reused from the cache" if exports.reused[RankPriorForm.SORT] else "exported"
    details.update(model_dir=str(path), form=RankPriorForm.SORT.value, reused=exports.reused[RankPriorForm.SORT],
                   seconds=round(time.perf_counter() - t0, 1),
                   summary=f"tiny preset, seed {SEED}, sort form, {how}")


def ort_vs_torch_cpu(exports: Exports, details: dict[str, Any]) -> None:
    from icpd.apps.validate import validate_model

    _verdict(validate_model(exports.exported(RankPriorForm.SORT), ("ort",), runs=RUNS, device="cpu"), details)


def torch_cuda(exports: Exports, device: str, details: dict[str, Any]) -> None:
    from icpd.apps.validate import validate_model

    _gpu_or_skip(device)
    _verdict(validate_model(exports.exported(RankPriorForm.SORT), ("torch",), runs=RUNS, device=device), details)


def _tensorrt_or_skip(device: str) -> Any:
    from icpd.kernels.tensorrt import TensorRTUnavailableError, import_tensorrt

    _gpu_or_skip(device)
    try:
        return import_tensorrt()
    except TensorRTUnavailableError as err:
        raise Skip(f"TensorRT is not installed or not importable here ({str(err).split(';')[0]})") from err


def trt_engines(exports: Exports, device: str, form: RankPriorForm, precision: str, details: dict[str, Any],
                plugin_library: str | None = None) -> None:
    """Build engines from ``form`` and validate them: against ONNX Runtime CPU (sort) or PyTorch CPU
    FP32 (plugin: ONNX Runtime needs onnxruntime-extensions for the NdcgPrior node)."""
    from icpd.apps.validate import compare_backends, make_backend
    from icpd.artifacts.model_dir import ModelDir
    from icpd.kernels.trt_plugin import MIN_TENSORRT
    from icpd.trt.build import build_engines

    trt = _tensorrt_or_skip(device)
    version = tuple(int(v) for v in trt.__version__.split(".")[:2])
    if form is RankPriorForm.PLUGIN and plugin_library is None and version < MIN_TENSORRT:
        raise Skip(f"TensorRT {trt.__version__} has no AOT plugins (>= 10.9): give the C++ plugin built by "
                   "icpd/kernels/plugin/CMakeLists.txt as plugin_library (`icpd selftest --plugin-library`)")
    model_dir = exports.exported(form) if form is RankPriorForm.SORT else exports.get(form)
    engines = exports.work / f"engines-{form.value}-{precision}"
    lines: list[str] = []
    res = build_engines(model_dir, engines, precision=precision, batch=(1, 2, 2), shots=(1, 1, 2),
                        plugin_library=plugin_library, force=True, progress=lines.append)
    details.update(engine_dir=str(engines), build_seconds=round(res.seconds, 1), tensorrt=trt.__version__,
                   build_phases=[ln for ln in lines if ": done in" in ln])
    md = ModelDir.open(model_dir)
    if form is RankPriorForm.SORT:
        reference, name = make_backend(md, "ort"), "onnxruntime cpu fp32"
    else:
        reference, name = make_backend(md, "torch", "cpu"), "torch cpu fp32"
    backend = make_backend(md, "trt", device, engines)
    _verdict(compare_backends(reference, {"trt": backend}, md, runs=RUNS, seed=SEED, batch=2,
                              precisions={"trt": precision}, reference_name=name), details)
    details["summary"] = f"{precision} engines in {res.seconds:.0f} s, {details['summary']}"


def _median_ms(fn: Any, sync: Any, warmup: int = 2, timed: int = TIMED) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(timed):
        t0 = time.perf_counter()
        fn()
        sync()  # the episode's last copy to the host already waited; this makes it explicit
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def latency(exports: Exports, device: str, details: dict[str, Any]) -> None:
    """Median ms of one seeded episode end to end (preprocess, encode, support, match; batch 2, 1 shot)
    on every backend that ran here: ORT CPU, torch on the device, TensorRT (sort engines)."""
    import torch

    from icpd.apps.validate import make_backend, run_episode
    from icpd.artifacts.model_dir import ModelDir
    from icpd.export.validate import seeded_episodes

    md = ModelDir.open(exports.exported(RankPriorForm.SORT))
    (episode,) = seeded_episodes(md.preset, 1, SEED, 2)
    backends: dict[str, tuple[Any, Any]] = {"ort cpu": (make_backend(md, "ort"), lambda: None),
                                            "torch cpu": (make_backend(md, "torch", "cpu"), lambda: None)}
    if device.startswith("cuda") and torch.cuda.is_available():
        dev = torch.device(device)
        backends["torch cuda"] = (make_backend(md, "torch", device), lambda: torch.cuda.synchronize(dev))
        built = [p for p in sorted(exports.work.glob("engines-sort-*")) if (p / "engines.json").is_file()]
        engines = built[0] if built else None
        if engines is not None:
            trt = make_backend(md, "trt", device, engines)
            backends[f"trt {engines.name.rsplit('-', 1)[-1]}"] = (trt, trt.stream.synchronize)
    # CPU backends: 1 warm-up and 2 timed episodes (a second or more each on a small CPU); GPU: 2 and TIMED
    ms = {name: round(_median_ms(lambda b=b: run_episode(b, md, episode), sync,
                                 *((1, 2) if name.endswith("cpu") else (2, TIMED))), 2)
          for name, (b, sync) in backends.items()}
    details.update(ms_per_episode=ms, episode="tiny preset, batch 2, 1 shot; median of 2 after 1 warm-up "
                                              f"(CPU), of {TIMED} after 2 (GPU)",
                   summary=", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()))
