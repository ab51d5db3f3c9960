"""INT8 model directories for the CPU: the encoder quantized by ONNX Runtime, the matcher FP32.

On a CPU the cached query is almost all encoder (paper preset: about 85 %), and the CLIP ViT's
MatMuls are almost all of the encoder. This module writes an INT8 model dir from an FP32 one:

- ``encoder.onnx``: dynamic INT8 quantization (``onnxruntime.quantization.quantize_dynamic``) of
  the MatMul/Gemm nodes with a constant weight (the transformer's projections and MLPs; the
  attention products Q.K^T and A.V have no constant operand and stay FP32). Weights are INT8,
  activations are quantized per call from their own range, so no calibration is needed for them.
- optionally (``convs="qdq"``) static QDQ quantization of the ResNet convolutions first, with
  activation ranges from calibration images (:func:`calibration_images`: a folder the user gives,
  else a small built-in set of synthetic aerial tiles). Off by default: the MatMuls are where the
  time goes (README, "INT8 on CPU").
- ``matcher.onnx`` and ``preprocess.onnx`` are copied unchanged: the matcher stays FP32 so the
  rank prior orders support distances exactly as the FP32 matcher would for the same features.
- mixed precision (:mod:`icpd.export.mixed_precision`): blocks the user names stay FP32
  (``exclude``); when the self-check fails, the most sensitive blocks are kept in FP32 one at a
  time until it passes (or nothing INT8 would be left: refused). The encoder's speed-up over
  FP32 is then timed on the calibration images; below ``min_speedup`` the export is refused.

The model.json of the new dir says ``"precision": "int8"``, records the options and the
calibration under ``"int8"`` (and under ``"int8"]["mixed_precision"]`` the blocks kept in FP32,
why, each step of the fallback and the speed-up), and gets a fingerprint of its own
(:func:`int8_fingerprint`: the FP32 weights' fingerprint, the precision, the options and the
nodes kept FP32), because its support features differ from the FP32 encoder's: a support cache
made with one is refused by the other. The FP32 fingerprint is kept as ``"weights_fingerprint"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from icpd.artifacts.model_dir import ModelDir, check_replaceable, describe_files, write_model_json
from icpd.errors import arg
from icpd.export import mixed_precision as mp
from icpd.export.calibration import CalibrationReader, Int8ConversionError, calibration_images, encoder_feeds
from icpd.io.atomic import atomic_dir

CONV_MODES = ("fp32", "qdq")


@dataclass(frozen=True)
class Int8Options:
    """How the encoder is quantized; recorded in model.json and part of the fingerprint.

    per_channel / reduce_range: the weight quantization of the MatMuls (and convs). reduce_range
    (7-bit weights) avoids the int16 saturation of u8 x s8 products in AVX2 kernels without VNNI;
    the export's choice (:data:`DEFAULT_OPTIONS`) was made by measurement: README, "INT8 on CPU".
    """

    convs: str = "fp32"  # "fp32": ResNet convolutions untouched; "qdq": static QDQ INT8 (calibrated)
    per_channel: bool = False
    reduce_range: bool = False

    def __post_init__(self) -> None:
        if self.convs not in CONV_MODES:
            raise ValueError(f"convs={self.convs!r}: choose one of {', '.join(CONV_MODES)}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# what `icpd export --precision int8` uses, and why (recorded in model.json as int8.why)
DEFAULT_OPTIONS = Int8Options(reduce_range=True)
DEFAULT_OPTIONS_WHY = (
    "the export's default, by measurement (README 'INT8 on CPU'): 7-bit weights do not saturate the u8 x s8 "
    "pair sums of AVX2 kernels without VNNI (full range: CLIP token cosine 0.980 there, below 0.999) and "
    "are as fast as full range with VNNI (2.08x vs 2.10x the FP32 encoder); per tensor; ResNet convolutions "
    "FP32 (static QDQ gained 1 % and cost ResNet cosine 0.994)"
)


def options_reason(options: Int8Options) -> str:
    """Why these options, as recorded in model.json."""
    if options == DEFAULT_OPTIONS:
        return DEFAULT_OPTIONS_WHY
    return "chosen by the caller (not the export's default)"


def int8_fingerprint(weights_fingerprint: str, options: Int8Options, fp32_nodes: Sequence[str] = ()) -> str:
    """The identity of an INT8 model dir: sha256 of the FP32 weights' fingerprint, the precision,
    the quantization options and the MatMuls kept FP32 (each changes the features)."""
    ident: dict[str, Any] = {"weights": weights_fingerprint, "precision": "int8", **options.as_dict()}
    if fp32_nodes:  # absent when none: dirs without mixed precision keep their identity
        ident["fp32_nodes"] = sorted(fp32_nodes)
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


# -- quantization ---------------------------------------------------------------------------------------
def quantized_nodes(model: Any) -> dict[str, int]:
    """Op type -> count of the integer ops in a quantized graph (what the quantizer actually did)."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in ("DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "QuantizeLinear",
                            "DequantizeLinear", "DynamicQuantizeMatMul", "QLinearConv",
                            "MatMulIntegerToFloat"):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def quantize_encoder(src: Path, dst: Path, options: Int8Options, calibration: CalibrationReader | None = None,
                     exclude: Sequence[str] = ()) -> dict[str, Any]:
    """FP32 ``encoder.onnx`` (+ data) -> INT8 ``dst`` (+ ``dst.name + ".data"``); returns a summary.

    ``exclude``: the quantizer's names of MatMuls to keep FP32 (:class:`icpd.export.mixed_precision.Block`).

    Raises:
        Int8ConversionError: the quantizer failed, or convs="qdq" without calibration data.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    from icpd.export.fp16 import _save

    with tempfile.TemporaryDirectory(prefix="icpd-int8-", dir=dst.parent) as tmp, _quiet_quantizer():
        stage = src
        try:
            if options.convs == "qdq":
                if calibration is None:
                    raise Int8ConversionError("convs='qdq' needs calibration images")
                stage = Path(tmp) / "convs.onnx"
                # U8 activations x S8 weights: the format ORT's x86 kernels run fastest
                quantize_static(str(src), str(stage), calibration, quant_format=QuantFormat.QDQ,
                                op_types_to_quantize=["Conv"], per_channel=options.per_channel,
                                reduce_range=options.reduce_range, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, use_external_data_format=True)
            out = Path(tmp) / "int8.onnx"
            quantize_dynamic(str(stage), str(out), op_types_to_quantize=["MatMul", "Gemm"],
                             per_channel=options.per_channel, reduce_range=options.reduce_range,
                             weight_type=QuantType.QInt8, use_external_data_format=True,
                             nodes_to_exclude=list(exclude))
            model = onnx.load(str(out), load_external_data=True)
        except Int8ConversionError:
            raise
        except Exception as err:  # the quantizer's own errors (shape inference, unsupported graphs)
            raise Int8ConversionError(f"INT8 quantization of {src.name} failed: {err}") from err
        # re-saved under its final name: the quantizer names its data file after the temporary file;
        # onnx appends to an existing data file, so a previous try's files go first
        for old in (dst, dst.with_name(dst.name + ".data")):
            old.unlink(missing_ok=True)
        _save(model, dst)
    convs = ["Conv"] if options.convs == "qdq" else []
    return {"quantized_ops": quantized_nodes(model), "op_types": ["MatMul", "Gemm", *convs],
            "matmuls_int8": len(mp.quantized_nodes_of(model))}


class _PreprocessAdvice(logging.Filter):
    """Drops the quantizer's "Please consider to run pre-processing" line (root logger, every call):
    the encoder is exported already optimised and shape-inferred, and the line reached users' terminals."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    advice = _PreprocessAdvice()
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def convert_model_dir_int8(
    src_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    options: Int8Options = Int8Options(),
    calibration: str | os.PathLike[str] | None = None,
    check: Callable[[Path, Path], dict[str, Any]] | None = None,
    force: bool = False,
    exclude: Sequence[str] = (),
    min_speedup: float | None = None,
    fallback: bool = True,
) -> ModelDir:
    """Write an INT8 copy of the FP32 model dir ``src_dir`` to ``out_dir`` (see the module docstring).

    Args:
        options: how the encoder is quantized (:class:`Int8Options`).
        calibration: folder of the user's images (None: built-in synthetic tiles, with a note in
            model.json). The sensitivity and the speed-up are measured on them, and the
            convolutions calibrated on them when ``options.convs == "qdq"``.
        check: ``check(fp32_dir, int8_dir) -> report`` (``icpd.apps.validate.check_int8_against_fp32``),
            run on the converted folder before it is moved into place; the last one is recorded
            under ``model.json["int8"]["check"]``. A report with ``"passed": False`` starts the
            mixed-precision fallback (``fallback``), or stops the conversion.
        exclude: ``fnmatch`` patterns of blocks or nodes to keep FP32 (``icpd export --int8-exclude``).
        min_speedup: refuse (write nothing) when the encoder is not at least this many times as
            fast as FP32 (``icpd export --int8-min-speedup``).
        fallback: keep the most sensitive blocks in FP32 until the check passes.
        force: replace a non-empty ``out_dir``.

    Raises:
        Int8ConversionError: the source is not FP32; the calibration or quantization failed; a
            pattern matches nothing; the check failed even with every block but one kept in
            FP32 (or without ``fallback``); the speed-up is below ``min_speedup``. Nothing is written.
        ModelDirError: ``src_dir`` is not a model dir.
    """
    src = ModelDir.open(src_dir)
    out = Path(out_dir)
    if src.meta.get("precision", "fp32") != "fp32":
        raise Int8ConversionError(f"{arg('src_dir', src.path)}: precision is {src.meta.get('precision')!r}; "
                                  "convert an FP32 model dir")
    if out.exists() and any(out.iterdir()) and not force:
        raise Int8ConversionError(f"{arg('out_dir', out)}: exists and is not empty; pass "
                                  f"{arg('force', True)} or choose another folder")
    if min_speedup is not None and not min_speedup > 0:
        raise Int8ConversionError(f"{arg('min_speedup', min_speedup)}: give a ratio above 0 (e.g. 1.25)")
    check_replaceable(out, "out_dir")  # force replaces a model dir or an empty folder, nothing else
    images, calib_meta = calibration_images(calibration, src.preset.image_size)
    calib_meta["used_for"] = ("sensitivity of the quantized blocks, the speed-up check" +
                              (", activation ranges of the static QDQ convolutions" if options.convs == "qdq"
                               else ""))
    with atomic_dir(out, replace=force) as work:
        feeds = encoder_feeds(src.file("preprocess"), images)
        enc_src, enc = src.file("encoder"), work / src.meta["files"]["encoder"]["name"]
        # runtime-only: no weights
        for role in [r for r in ("preprocess", "matcher", "weights") if r in src.meta["files"]]:
            for f in src.role_files(role):
                shutil.copy2(f, work / f.name)
        meta = json.loads(json.dumps(src.meta))
        meta.pop("validation", None)
        meta["precision"] = "int8"
        meta["weights_fingerprint"] = src.fingerprint
        meta["int8"] = {"source_dir": str(src.path), "options": options.as_dict(),
                        "why": options_reason(options),
                        "fp32": ["matcher (rank prior order unchanged)", "preprocess",
                                 "LayerNorm, Softmax, attention products"],
                        "calibration": calib_meta, "io": "float32"}
        search = _Search(enc_src, enc, options, feeds, src, work, meta, check)
        search.start(exclude)
        if check is not None and not search.passed and fallback:
            search.fall_back()
        if check is not None and not search.passed:
            raise Int8ConversionError(search.refusal())
        record = search.finish()
        if min_speedup is not None and record["speed"]["speedup"] < min_speedup:
            raise Int8ConversionError(
                f"{arg('min_speedup', f'{min_speedup:g}')}: the INT8 encoder is only "
                f"{record['speed']['speedup']:.2f}x as fast as FP32 on this CPU "
                f"({record['speed']['fp32_ms']:.0f} -> {record['speed']['int8_ms']:.0f} ms, FP32 blocks: "
                f"{len(record['fp32_blocks'])}); nothing written. Export FP32 (no "
                f"{arg('precision', 'int8')}), or lower {arg('min_speedup')}")
    return ModelDir.open(out)


class _Search:
    """The mixed-precision search of one conversion: quantize with some blocks FP32, check, repeat."""

    def __init__(self, enc_src: Path, enc: Path, options: Int8Options, feeds: list[dict[str, np.ndarray]],
                 src: ModelDir, work: Path, meta: dict[str, Any],
                 check: Callable[[Path, Path], dict[str, Any]] | None):
        self.enc_src, self.enc, self.options, self.feeds = enc_src, enc, options, feeds
        self.src, self.work, self.meta, self.check = src, work, meta, check
        self.kept: list[dict[str, Any]] = []  # blocks kept FP32, in the order they were chosen
        self.steps: list[dict[str, Any]] = []
        self.report: dict[str, Any] | None = None
        self.blocks: list[mp.Block] = []
        self.sensitivity: dict[str, dict[str, Any]] | None = None

    @property
    def passed(self) -> bool:
        return self.report is None or bool(self.report.get("passed", True))

    def start(self, patterns: Sequence[str]) -> None:
        """Quantize every MatMul, find the blocks, apply the user's exclusions, check."""
        import onnx

        self._quantize()
        self.blocks = mp.quantized_blocks(onnx.load(str(self.enc_src), load_external_data=False),
                                          onnx.load(str(self.enc), load_external_data=False))
        chosen, unmatched = mp.match_blocks(self.blocks, patterns)
        if unmatched:
            names = ", ".join(b.name for b in self.blocks[:6]) + (", ..." if len(self.blocks) > 6 else "")
            raise Int8ConversionError(f"{arg('exclude', repr(unmatched[0]))}: matches no quantized block or "
                                      f"MatMul of the encoder; blocks: {names} (fnmatch patterns, e.g. "
                                      "'*resblocks.3.*')")
        if len(chosen) == len(self.blocks):
            raise Int8ConversionError(f"{arg('exclude', ' '.join(patterns))}: keeps every quantized block "
                                      "FP32, so nothing would be INT8; export FP32 instead (no "
                                      f"{arg('precision', 'int8')})")
        self.kept = [{"block": b.name, "nodes": list(b.nodes), "why": "--int8-exclude"} for b in chosen]
        if chosen:
            self._quantize()
        self._check(added=None)

    def fall_back(self) -> None:
        """Keep the most sensitive remaining block FP32, check, repeat until the check passes; stop
        before the last quantized block (refused by the caller)."""
        kept = {k["block"] for k in self.kept}
        remaining = [b for b in self.blocks if b.name not in kept]
        self.sensitivity = mp.block_sensitivity(self.enc_src, self.enc, remaining,
                                                self.feeds[:mp.SENSITIVITY_IMAGES])
        order = sorted(remaining, key=lambda b: -self.sensitivity[b.name]["rel_error"])
        for block in order[:-1]:
            cost = self.sensitivity[block.name]
            self.kept.append({"block": block.name, "nodes": list(block.nodes), "why": "sensitivity",
                              "rel_error": cost["rel_error"], "sqnr_db": cost["sqnr_db"]})
            self._quantize()
            self._check(added=block.name)
            if self.passed:
                return

    def refusal(self) -> str:
        first, last = self.steps[0], self.steps[-1]
        text = "the INT8 self-check failed: " + "; ".join(first["failures"])
        if len(self.steps) > 1:
            text += (f"; with {len(self.kept)} of {len(self.blocks)} blocks kept in FP32 (most sensitive "
                     "first) it still failed: " + "; ".join(last["failures"]))
        return (text + " (rule: icpd.export.pass_rule); nothing written. Export FP32 instead "
                f"(no {arg('precision', 'int8')})")

    def finish(self) -> dict[str, Any]:
        """Time FP32 vs the final INT8 encoder, record everything in model.json; returns the record."""
        n_int8 = self.meta["int8"]["encoder"]["matmuls_int8"]
        record = {
            "matmuls": sum(len(b.nodes) for b in self.blocks), "matmuls_int8": n_int8,
            "blocks": len(self.blocks), "fp32_blocks": self.kept,
            "sensitivity": None if self.sensitivity is None else {
                "method": "relative error each block's INT8 MatMuls add by themselves (ONNX Runtime kernels, "
                          "node inputs of the INT8 graph, against X @ W in FP32), summed over "
                          f"{min(len(self.feeds), mp.SENSITIVITY_IMAGES)} calibration images",
                "blocks": self.sensitivity},
            "steps": self.steps,
            "speed": mp.encoder_speedup(self.enc_src, self.enc, self.feeds),
        }
        self.meta["int8"]["mixed_precision"] = record
        write_model_json(self.work, self.meta)
        return record

    def _quantize(self) -> None:
        nodes = [n for k in self.kept for n in k["nodes"]]
        reader = CalibrationReader(self.feeds) if self.options.convs == "qdq" else None
        self.meta["int8"]["encoder"] = quantize_encoder(self.enc_src, self.enc, self.options, reader,
                                                        exclude=nodes)
        self.meta["fingerprint"] = int8_fingerprint(self.src.fingerprint, self.options, nodes)
        self.meta["files"] = describe_files(self.work, {role: self.src.meta["files"][role]["name"]
                                                        for role in self.src.meta["files"]})
        write_model_json(self.work, self.meta)

    def _check(self, added: str | None) -> None:
        if self.check is None:
            return
        self.report = self.check(self.src.path, self.work)
        self.meta["int8"]["check"] = self.report
        write_model_json(self.work, self.meta)
        r = self.report
        enc = r.get("encoder") or {}
        self.steps.append({
            "kept_fp32": added or ("--int8-exclude" if self.kept else "nothing"),
            "fp32_blocks": len(self.kept),
            "passed": self.passed, "failures": list(r.get("failures", [])),
            "min_encoder_cosine": min((s["cosine"] for s in enc.values()), default=None),
            "query_prior_max_abs": r.get("query_prior_max_abs"),
            "rank_agreement": (r.get("rank_prior") or {}).get("agreement"),
            "mean_foreground_iou": (r.get("masks") or {}).get("mean_foreground_iou"),
            "min_pixel_agreement": (r.get("masks") or {}).get("min_pixel_agreement"),
        })
