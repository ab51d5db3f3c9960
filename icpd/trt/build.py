"""``icpd build``: TensorRT engines for a model dir's encoder and matcher, through the ONNX parser.

Precision:

- ``fp32``: a plain network (TF32 off, so FP32 means FP32).
- ``fp16`` on TensorRT 10: the FP32 ONNX with ``BuilderFlag.FP16`` and FP32 constraints on the
  sensitive layers (normalisation, softmax, reductions, TopK, the rank-prior plugin, the output
  heads) enforced with ``OBEY_PRECISION_CONSTRAINTS``.
- ``fp16`` on TensorRT 11 (no weak typing), or from an FP16 model dir on any version: a
  strongly typed network from the FP16 ONNX (``icpd.export.fp16``); an FP32 model dir is
  converted first, into ``ENGINE_DIR/fp16-model``.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import icpd
from icpd.config import RankPriorForm
from icpd.export.model_dir import ModelDir, file_sha256
from icpd.io.atomic import atomic_dir, write_bytes_atomic
from icpd.kernels.launch import MAX_SUPPORT
from icpd.runtime.engine_sidecar import PRECISIONS, EngineEnv, Sidecar, current_env, write_sidecar
from icpd.trt.check import TOPK_MAX_K  # TensorRT's limit on TopK's K

ENGINE_ROLES = ("encoder", "matcher")
DEFAULT_WORKSPACE = 4 << 30  # bytes
# TensorRT 10 layer types computed in FP32 inside an FP16 engine (names of trt.LayerType members).
FP32_LAYER_TYPES = ("NORMALIZATION", "SOFTMAX", "REDUCE", "TOPK", "PLUGIN_V3", "PLUGIN_V2", "PLUGIN")


class EngineBuildError(RuntimeError):
    """The options do not fit the model, or TensorRT failed to parse or build."""


@dataclass(frozen=True)
class BuildResult:
    path: Path
    sidecar: Sidecar
    seconds: float


def parse_profile(text: str, what: str) -> tuple[int, int, int]:
    """``"1,2,8"`` -> (1, 2, 8); a single ``"4"`` means (4, 4, 4). Raises ValueError naming ``--what``."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--{what} {text!r}: give MIN,OPT,MAX as integers, e.g. 1,1,4") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise ValueError(f"--{what} {text!r}: give MIN,OPT,MAX (three integers), e.g. 1,1,4")
    return check_profile(tuple(values), what)


def check_profile(profile: tuple[int, ...], what: str, limit: int | None = None) -> tuple[int, int, int]:
    lo, opt, hi = profile
    if not 1 <= lo <= opt <= hi:
        raise ValueError(f"--{what} {lo},{opt},{hi}: need 1 <= MIN <= OPT <= MAX")
    if limit is not None and hi > limit:
        raise ValueError(f"--{what} {lo},{opt},{hi}: MAX {hi} exceeds the exported graphs' limit of {limit}")
    return lo, opt, hi


def support_pixels(md: ModelDir) -> int:
    """Most support pixels of any level (the rank prior's Ns, TopK's largest possible K)."""
    inputs = md.meta["matcher"]["inputs"]
    return max(int(shape[1]) for name, shape in inputs.items() if name.startswith("support_mask_"))


def check_rank_prior(md: ModelDir, rank_prior: str | None) -> str:
    """The model's rank-prior form (a RankPriorForm value), refusing a mismatch with ``rank_prior``
    or a support map TensorRT can't take. ``onnx`` (the old name, also in older model.json files) is topk."""
    from icpd.export.rank_prior_onnx import parse_form

    form = parse_form(md.meta.get("rank_prior", RankPriorForm.TOPK), f"{md.path / 'model.json'}: rank_prior")
    if rank_prior is not None and parse_form(rank_prior) != form:
        raise EngineBuildError(
            f"--rank-prior {rank_prior}: the model dir {md.path} was exported with --rank-prior {form.value}; the form is "
            f"fixed at export: export again with `icpd export --rank-prior {rank_prior}` or pass --rank-prior {form.value}"
        )
    ns = support_pixels(md)
    if form in (RankPriorForm.TOPK, RankPriorForm.SORT) and ns >= TOPK_MAX_K:
        raise EngineBuildError(
            f"the {form.value} rank prior sorts {ns} support pixels with TopK, beyond TensorRT's limit K < {TOPK_MAX_K}; "
            "export with `icpd export --rank-prior plugin` and build with the NdcgPrior plugin"
        )
    if form == RankPriorForm.PLUGIN and ns > MAX_SUPPORT:
        raise EngineBuildError(f"{ns} support pixels exceed the NdcgPrior plugin's limit of {MAX_SUPPORT}")
    return form.value


def io_profiles(md: ModelDir, role: str, batch: tuple[int, int, int], shots: tuple[int, int, int]) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Input name -> (min, opt, max) shapes from model.json's symbolic shapes ("batch", "shots")."""
    axes = {"batch": batch, "shots": shots}
    profiles = {}
    for name, spec in md.meta[role]["inputs"].items():
        dims = spec[:-1]  # the last entry is the dtype
        profiles[name] = tuple(tuple(axes[d][i] if isinstance(d, str) else int(d) for d in dims) for i in range(3))
    return profiles


def tensorrt_major(version: str) -> int:
    m = re.match(r"(\d+)", version)
    return int(m.group(1)) if m else 0


def _load_plugin(trt: Any, builder: Any, plugin_library: str | os.PathLike[str] | None, cache_dir: Path) -> str:
    """Make ``icpd::NdcgPrior`` known to TensorRT; returns how ("library PATH" or "aot compute_XX")."""
    if plugin_library is not None:
        lib = Path(plugin_library)
        if not lib.is_file():
            raise EngineBuildError(f"--plugin-library {lib}: no such file; build it with icpd/kernels/plugin/CMakeLists.txt")
        builder.get_plugin_registry().load_library(str(lib))
        return f"library {lib}"
    from icpd.kernels.trt_plugin import TensorRTUnavailableError, register_plugin

    try:
        reg = register_plugin(cache_dir)
    except (TensorRTUnavailableError, RuntimeError) as err:
        raise EngineBuildError(
            f"the model uses the NdcgPrior rank-prior plugin and it could not be registered ({err}). Pass "
            "--plugin-library libicpd_ndcg_prior_plugin.so (C++ plugin), or export with --rank-prior onnx"
        ) from err
    return f"aot {reg.ptx_arch}"


def _plugin_source(plugin_library: str | os.PathLike[str] | None) -> str:
    """What the sidecar records about the plugin: the C++ library to load at run time, or the AOT plugin."""
    return f"library:{Path(plugin_library).resolve()}" if plugin_library else "aot"


def _constrain_fp32(trt: Any, network: Any, logger_name: str = "") -> int:
    """TensorRT 10 weak typing: pin sensitive layers (and layers writing network outputs) to FP32."""
    types = {getattr(trt.LayerType, t) for t in FP32_LAYER_TYPES if hasattr(trt.LayerType, t)}
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        writes_output = any(layer.get_output(j).is_network_output for j in range(layer.num_outputs))
        if layer.type not in types and not writes_output:
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            if layer.get_output(j).dtype in (trt.float32, trt.float16):
                layer.set_output_type(j, trt.float32)
        pinned += 1
    return pinned


def build_engine(trt: Any, onnx_path: Path, out_path: Path, profiles: dict[str, tuple], strongly_typed: bool,
                 weak_fp16: bool, workspace: int, plugin: bool, plugin_library: Any, cache_dir: Path, verbose: bool = False) -> None:
    """Parse one ONNX file, set its profile and precision, build and write the serialized engine."""
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if plugin:
        _load_plugin(trt, builder, plugin_library, cache_dir)
    flags = 0
    if strongly_typed:
        # required on TensorRT 10 for an FP16 ONNX; accepted and ignored on 11 (always strongly typed)
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # reads the external .data beside it
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if not strongly_typed and hasattr(trt.BuilderFlag, "TF32") and not weak_fp16:
        config.clear_flag(trt.BuilderFlag.TF32)  # FP32 means FP32
    if weak_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        _constrain_fp32(trt, network)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profiles.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build {out_path.name} from {onnx_path.name} (see its log above)")
    write_bytes_atomic(out_path, bytes(serialized))


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
) -> BuildResult:
    """Build ``encoder.engine`` and ``matcher.engine`` + ``engines.json`` into ``out_dir`` (see the module docstring).

    Raises:
        ValueError: bad precision or profiles; EngineBuildError; TensorRTUnavailableError; ModelDirError.
    """
    from icpd.export.onnx import MAX_BATCH, MAX_SHOTS
    from icpd.trt import import_tensorrt

    if precision not in PRECISIONS:
        raise ValueError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    batch = check_profile(tuple(batch), "batch", MAX_BATCH)
    shots = check_profile(tuple(shots), "shots", MAX_SHOTS)
    md = ModelDir.open(model_dir)
    form = check_rank_prior(md, rank_prior)
    from icpd.trt.check import TrtCompatibilityError, check_model_dir, installed_trt_version

    report = check_model_dir(md.path, installed_trt_version())  # the static check, before any TensorRT parser error
    if not report.passed:
        raise TrtCompatibilityError(report)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not force:
        raise EngineBuildError(f"--out {out}: exists and is not empty; pass --force to replace it or choose another folder")
    trt = import_tensorrt()
    env: EngineEnv = current_env()
    t0 = time.perf_counter()
    onnx_fp16 = md.meta.get("precision") == "fp16"
    if precision == "fp32" and onnx_fp16:
        raise EngineBuildError(f"--precision fp32 from the FP16 model dir {md.path}: build from the FP32 model dir")
    strongly_typed = onnx_fp16 or tensorrt_major(env.tensorrt_version) >= 11
    weak_fp16 = precision == "fp16" and not strongly_typed
    # Everything is written into a temporary folder next to ``out``, renamed to ``out`` only when the
    # engines and engines.json are complete: a failed or interrupted build leaves the old engines.
    with atomic_dir(out, replace=force) as work:
        cache = Path(cache_dir) if cache_dir else work / ".kernel-cache"
        source = md
        if precision == "fp16" and strongly_typed and not onnx_fp16:
            from icpd.export.fp16 import convert_model_dir_fp16

            source = convert_model_dir_fp16(md.path, work / "fp16-model", force=True)
        engines = {}
        plugin_source = ""
        for role in ENGINE_ROLES:
            path = work / f"{role}.engine"
            plugin_source = plugin_source or (_plugin_source(plugin_library) if form == "plugin" and role == "matcher" else "")
            build_engine(trt, source.file(role), path, io_profiles(source, role, batch, shots), strongly_typed, weak_fp16,
                         workspace, plugin=(form == "plugin" and role == "matcher"), plugin_library=plugin_library,
                         cache_dir=cache, verbose=verbose)
            engines[role] = {"name": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size}
        sidecar = Sidecar(
            env=env, precision=precision, rank_prior=form, batch=batch, shots=shots, model_fingerprint=md.fingerprint,
            engines=engines, strongly_typed=strongly_typed, model_dir=str(md.path.resolve()),
            build_seconds=time.perf_counter() - t0, icpd_version=icpd.__version__, plugin=plugin_source,
        )
        write_sidecar(work, sidecar)
        if cache_dir is None:
            shutil.rmtree(cache, ignore_errors=True)
    return BuildResult(out, sidecar, sidecar.build_seconds)
