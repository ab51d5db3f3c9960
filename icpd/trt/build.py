"""``icpd build``: TensorRT engines for a model dir's encoder and matcher, through the ONNX parser.

Precision, one route on TensorRT 10.x and 11.x:

- every network is strongly typed (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``, since 10.0;
  11.x is strongly typed anyway): each tensor's type is the ONNX graph's, nothing is left to the
  builder. ``BuilderFlag.TF32`` is cleared wherever it exists (TensorRT enables it by default),
  so FP32 layers compute in FP32.
- ``fp32``: the FP32 ONNX as it is.
- ``fp16``: the FP16 ONNX of :mod:`icpd.export.fp16` (LayerNorm, softmax, reductions, the rank
  prior with its distance chain back to the Gram MatMul and the output heads stay FP32). An
  FP32 model dir is converted first, into ``ENGINE_DIR/fp16-model``. The weakly typed route of
  10.x (``BuilderFlag.FP16`` + ``OBEY_PRECISION_CONSTRAINTS``, deprecated in 10.x and gone in 11)
  is not used: it ordered near-tied distances in FP16 and disagreed with 11.x engines.

Build time: ``opt_level`` sets the builder optimisation level (0-5, TensorRT's default 3; lower
builds faster). A timing cache (``timing.cache`` in the engine dir by default) is loaded when
present and saved after the build, so a rebuild on the same GPU and TensorRT skips the kernel
timing it already did. Where TensorRT has ``IProgressMonitor`` (10.x, 11.x) the build reports
its phases through ``progress``.

The query batch and the support shots are dynamic: one optimization profile per engine with
``--batch MIN,OPT,MAX`` / ``--shots MIN,OPT,MAX``. The preprocess graph gets no engine: the
TensorRT backend runs it in PyTorch on the GPU (it is a resize and a normalisation).

A plugin-form model (``--rank-prior plugin`` at export) needs the ``icpd::NdcgPrior`` plugin:
the AOT plugin (TensorRT >= 10.9, registered from Python, PTX embedded in the engine) or the C++
plugin library (``--plugin-library``, e.g. TensorRT 10.3 on JetPack 6). The standard form's
TopK is limited to K <= 3840 in TensorRT: larger support maps need the plugin form.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import icpd
from icpd.artifacts.engine_sidecar import PRECISIONS, EngineEnv, Sidecar, write_sidecar
from icpd.artifacts.model_dir import ModelDir, file_sha256
from icpd.config import RankPriorForm
from icpd.errors import ParamError, ParamMessage, arg
from icpd.io.atomic import atomic_dir, write_bytes_atomic
from icpd.kernels.launch import MAX_SUPPORT
from icpd.runtime.environment import current_env
from icpd.trt.check import TOPK_MAX_K  # TensorRT's limit on TopK's K
from icpd.trt.progress import progress_monitor

ENGINE_ROLES = ("encoder", "matcher")
DEFAULT_WORKSPACE = 4 << 30  # bytes
MAX_WORKSPACE = (1 << 64) - 1  # bytes: setMemoryPoolLimit takes a size_t (more: a TypeError in its binding)
MAX_OPT_LEVEL = 5  # IBuilderConfig::setBuilderOptimizationLevel: 0..5, default 3 (TensorRT 10.3, 11.1)
TIMING_CACHE_NAME = "timing.cache"  # in the engine dir unless --timing-cache names another file


class EngineBuildError(ParamMessage, RuntimeError):
    """The options do not fit the model, or TensorRT failed to parse or build."""


@dataclass(frozen=True)
class BuildResult:
    path: Path
    sidecar: Sidecar
    seconds: float


def parse_profile(text: str, what: str) -> tuple[int, int, int]:
    """``"1,2,8"`` -> (1, 2, 8); a single ``"4"`` means (4, 4, 4). Raises ParamError naming ``what``."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ParamError(f"{arg(what, repr(text))}: give MIN,OPT,MAX as integers, e.g. 1,1,4") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise ParamError(f"{arg(what, repr(text))}: give MIN,OPT,MAX (three integers), e.g. 1,1,4")
    return check_profile(tuple(values), what)


def check_profile(profile: tuple[int, ...], what: str, limit: int | None = None) -> tuple[int, int, int]:
    lo, opt, hi = profile
    if not 1 <= lo <= opt <= hi:
        raise ParamError(f"{arg(what, f'{lo},{opt},{hi}')}: need 1 <= MIN <= OPT <= MAX")
    if limit is not None and hi > limit:
        raise ParamError(f"{arg(what, f'{lo},{opt},{hi}')}: MAX {hi} exceeds the exported graphs' limit of "
                         f"{limit}")
    return lo, opt, hi


def support_pixels(md: ModelDir) -> int:
    """Most support pixels of any level (the rank prior's Ns, TopK's largest possible K)."""
    inputs = md.meta["matcher"]["inputs"]
    return max(int(shape[1]) for name, shape in inputs.items() if name.startswith("support_mask_"))


def check_rank_prior(md: ModelDir, rank_prior: str | RankPriorForm | None) -> RankPriorForm:
    """The model's rank-prior form, refusing a mismatch with ``rank_prior``
    or a support map TensorRT can't take. ``onnx`` (the old name, also in older model.json files) is topk."""
    form = md.rank_prior
    if rank_prior is not None and RankPriorForm.parse(rank_prior) != form:
        raise EngineBuildError(
            f"{arg('rank_prior', rank_prior)}: the model dir {md.path} was exported with "
            f"{arg('rank_prior', form.value)}; the form is fixed at export: export again with "
            f"`icpd export --rank-prior {rank_prior}` or pass {arg('rank_prior', form.value)}"
        )
    ns = support_pixels(md)
    if form in (RankPriorForm.TOPK, RankPriorForm.SORT) and ns >= TOPK_MAX_K:
        raise EngineBuildError(
            f"the {form.value} rank prior sorts {ns} support pixels with TopK, beyond TensorRT's limit "
            f"K < {TOPK_MAX_K}; export with `icpd export --rank-prior plugin` and build with the NdcgPrior "
            "plugin"
        )
    if form is RankPriorForm.PLUGIN and ns > MAX_SUPPORT:
        raise EngineBuildError(f"{ns} support pixels exceed the NdcgPrior plugin's limit of {MAX_SUPPORT}")
    return form


def io_profiles(md: ModelDir, role: str, batch: tuple[int, int, int],
                shots: tuple[int, int, int]) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Input name -> (min, opt, max) shapes from model.json's symbolic shapes ("batch", "shots")."""
    axes = {"batch": batch, "shots": shots}
    profiles = {}
    for name, spec in md.meta[role]["inputs"].items():
        dims = spec[:-1]  # the last entry is the dtype
        profiles[name] = tuple(tuple(axes[d][i] if isinstance(d, str) else int(d) for d in dims)
                               for i in range(3))
    return profiles


def tensorrt_major(version: str) -> int:
    m = re.match(r"(\d+)", version)
    return int(m.group(1)) if m else 0


def _load_plugin(trt: Any, builder: Any, plugin_library: str | os.PathLike[str] | None,
                 cache_dir: Path) -> str:
    """Make ``icpd::NdcgPrior`` known to TensorRT; returns how ("library PATH" or "aot compute_XX")."""
    if plugin_library is not None:
        from icpd.kernels.tensorrt import PluginLibraryError, load_plugin_library

        try:
            load_plugin_library(trt, builder.get_plugin_registry(), plugin_library)
        except PluginLibraryError as err:
            raise EngineBuildError(str(err)) from err
        return f"library {plugin_library}"
    from icpd.kernels.trt_plugin import TensorRTUnavailableError, register_plugin

    try:
        reg = register_plugin(cache_dir)
    except (TensorRTUnavailableError, RuntimeError) as err:
        raise EngineBuildError(
            f"the model uses the NdcgPrior rank-prior plugin and it could not be registered ({err}). Pass "
            f"{arg('plugin_library', 'libicpd_ndcg_prior_plugin.so')} (C++ plugin), or export with "
            "`icpd export --rank-prior sort`"
        ) from err
    return f"aot {reg.ptx_arch}"


def _plugin_source(plugin_library: str | os.PathLike[str] | None) -> str:
    """What the sidecar records about the plugin: the C++ library to load at run time, or the AOT plugin."""
    return f"library:{Path(plugin_library).resolve()}" if plugin_library else "aot"


@dataclass(frozen=True)
class BuildOptions:
    """Builder settings shared by both engines of one ``icpd build``."""

    workspace: int = DEFAULT_WORKSPACE  # bytes of builder workspace
    opt_level: int | None = None  # builder optimisation level 0-5; None: TensorRT's default (3)
    plugin_library: str | os.PathLike[str] | None = None  # C++ NdcgPrior plugin instead of the AOT plugin
    verbose: bool = False  # TensorRT's VERBOSE log


class TimingCache:
    """TensorRT's kernel timing cache for one ``icpd build``: loaded from ``path`` if it exists,
    handed from one engine's build to the next, written by :meth:`save` at the end."""

    def __init__(self, path: Path, report: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.blob = path.read_bytes() if path.is_file() else b""
        self.report = report or (lambda _line: None)

    def attach(self, config: Any) -> None:
        """Give ``config`` a cache made from the current blob (a fresh one if TensorRT refuses it)."""
        try:
            cache = config.create_timing_cache(self.blob)
        except (RuntimeError, TypeError, ValueError):  # a blob this TensorRT cannot read at all
            cache = None
        if cache is None or not config.set_timing_cache(cache, False):
            if self.blob:
                self.report(f"timing cache {self.path}: made on another GPU or TensorRT; "
                            "starting a fresh one")
            self.blob = b""
            cache = config.create_timing_cache(b"")
            if cache is None or not config.set_timing_cache(cache, False):
                raise EngineBuildError("TensorRT refused an empty timing cache (see its log above)")

    def collect(self, config: Any) -> None:
        """Keep what ``config``'s build added to the cache."""
        cache = config.get_timing_cache()
        if cache is not None:
            self.blob = bytes(cache.serialize())

    def save(self, dest: Path) -> None:
        if self.blob:
            write_bytes_atomic(dest, self.blob)


def _network_flags(trt: Any) -> int:
    """Strongly typed (TensorRT >= 10.0); 11.x deprecated the flag (always strongly typed) and may drop it."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def build_engine(trt: Any, onnx_path: Path, out_path: Path, profiles: dict[str, tuple], options: BuildOptions,
                 plugin: bool, cache_dir: Path, timing: TimingCache | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
    """Parse one ONNX file as a strongly typed network, set its profile and builder settings, build and
    write the serialized engine."""
    logger = trt.Logger(trt.Logger.VERBOSE if options.verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if plugin:
        _load_plugin(trt, builder, options.plugin_library, cache_dir)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # reads the external .data beside it
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace)
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default, strongly typed too: FP32 means FP32
    if options.opt_level is not None:
        config.builder_optimization_level = options.opt_level
    if timing is not None:
        timing.attach(config)
    monitor = progress_monitor(trt, progress) if progress is not None else None
    if monitor is not None:
        config.progress_monitor = monitor  # must outlive the build: held here until it returns
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profiles.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build {out_path.name} from {onnx_path.name} "
                               "(see its log above)")
    if timing is not None:
        timing.collect(config)
    write_bytes_atomic(out_path, bytes(serialized))


def check_opt_level(opt_level: int | None) -> int | None:
    if opt_level is not None and not 0 <= opt_level <= MAX_OPT_LEVEL:
        raise ParamError(f"{arg('opt_level', opt_level)}: choose 0 (fastest build) to {MAX_OPT_LEVEL} "
                         "(slowest, fastest engine); TensorRT's default is 3")
    return opt_level


def check_workspace(workspace: int) -> int:
    """The builder's memory pool limit in bytes: a whole number from 1 to ``MAX_WORKSPACE`` (a size_t)."""
    if isinstance(workspace, bool) or not isinstance(workspace, int):
        raise ParamError(f"{arg('workspace', repr(workspace))}: not a whole number of bytes; pass an int, "
                         f"e.g. 4 << 30 for 4 GiB")
    if not 1 <= workspace <= MAX_WORKSPACE:
        raise ParamError(f"{arg('workspace', workspace)} bytes ({workspace / (1 << 30):.4g} GiB): the "
                         f"builder's memory limit must be from 1 to {MAX_WORKSPACE} bytes (TensorRT's "
                         "size_t); pass one in that range, e.g. 4 << 30 (4 GiB)")
    return workspace


def build_engines(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    precision: str = "fp16",
    batch: tuple[int, int, int] = (1, 1, 4),
    shots: tuple[int, int, int] = (1, 1, 5),
    rank_prior: str | None = None,
    workspace: int = DEFAULT_WORKSPACE,
    plugin_library: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    verbose: bool = False,
    opt_level: int | None = None,
    timing_cache: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> BuildResult:
    """Build ``encoder.engine``, ``matcher.engine`` and ``engines.json`` into ``out_dir`` (module docstring).

    Args:
        opt_level: builder optimisation level 0-5 (None: TensorRT's default, 3).
        timing_cache: timing cache file, read if present and written after the build; default
            ``out_dir/timing.cache``.
        progress: called with one line per build phase (TensorRT's ``IProgressMonitor``, where it exists).

    Raises:
        ParamError (a ValueError): bad precision, profiles, workspace or opt level; EngineBuildError;
        TensorRTUnavailableError; ModelDirError.
    """
    from icpd.export.onnx import MAX_BATCH, MAX_SHOTS
    from icpd.trt import import_tensorrt

    if precision not in PRECISIONS:
        raise ParamError(f"{arg('precision', repr(precision))}: choose one of {', '.join(PRECISIONS)}")
    batch = check_profile(tuple(batch), "batch", MAX_BATCH)
    shots = check_profile(tuple(shots), "shots", MAX_SHOTS)
    options = BuildOptions(check_workspace(workspace), check_opt_level(opt_level), plugin_library, verbose)
    md = ModelDir.open(model_dir)
    form = check_rank_prior(md, rank_prior)
    from icpd.trt.check import TrtCompatibilityError, check_model_dir, installed_trt_version

    # the static check, before any TensorRT parser error
    report = check_model_dir(md.path, installed_trt_version())
    if not report.passed:
        raise TrtCompatibilityError(report)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not force:
        raise EngineBuildError(f"{arg('out', out)}: exists and is not empty; pass {arg('force', True)} to "
                               "replace it or choose another folder")
    trt = import_tensorrt()
    env: EngineEnv = current_env()
    t0 = time.perf_counter()
    onnx_fp16 = md.meta.get("precision") == "fp16"
    if precision == "fp32" and onnx_fp16:
        raise EngineBuildError(f"{arg('precision', 'fp32')} from the FP16 model dir {md.path}: build from "
                               "the FP32 model dir")
    cache_path = Path(timing_cache) if timing_cache else out / TIMING_CACHE_NAME
    timing = TimingCache(cache_path, progress)
    # Everything is written into a temporary folder next to ``out``, renamed to ``out`` only when the
    # engines and engines.json are complete: a failed or interrupted build leaves the old engines.
    with atomic_dir(out, replace=force) as work:
        cache = Path(cache_dir) if cache_dir else work / ".kernel-cache"
        source = md
        if precision == "fp16" and not onnx_fp16:
            from icpd.export.fp16 import convert_model_dir_fp16

            source = convert_model_dir_fp16(md.path, work / "fp16-model", force=True)
        engines = {}
        plugin_source = ""
        for role in ENGINE_ROLES:
            path = work / f"{role}.engine"
            uses_plugin = form is RankPriorForm.PLUGIN and role == "matcher"
            plugin_source = plugin_source or (_plugin_source(plugin_library) if uses_plugin else "")
            if progress is not None:
                progress(f"building {path.name} from {source.file(role).name}")
            build_engine(trt, source.file(role), path, io_profiles(source, role, batch, shots), options,
                         plugin=uses_plugin, cache_dir=cache, timing=timing, progress=progress)
            engines[role] = {"name": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size}
        sidecar = Sidecar(
            env=env, precision=precision, rank_prior=form, batch=batch, shots=shots,
            model_fingerprint=md.fingerprint,
            engines=engines, strongly_typed=True, model_dir=str(md.path.resolve()),
            build_seconds=time.perf_counter() - t0, icpd_version=icpd.__version__, plugin=plugin_source,
            opt_level=options.opt_level,
        )
        write_sidecar(work, sidecar)
        if cache_dir is None:
            shutil.rmtree(cache, ignore_errors=True)
        inside = cache_path.parent.resolve() == out.resolve()
        timing.save(work / cache_path.name if inside else cache_path)
    return BuildResult(out, sidecar, sidecar.build_seconds)
