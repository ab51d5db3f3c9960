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

The model.json of the new dir says ``"precision": "int8"``, records the options and the
calibration under ``"int8"``, and gets a fingerprint of its own (:func:`int8_fingerprint`: the
FP32 weights' fingerprint, the precision and the options), because its support features differ
from the FP32 encoder's: a support cache made with one is refused by the other. The FP32
fingerprint is kept as ``"weights_fingerprint"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from icpd.export.model_dir import ModelDir, check_replaceable, describe_files, write_model_json
from icpd.io.atomic import atomic_dir

CONV_MODES = ("fp32", "qdq")
DEFAULT_CALIBRATION_TILES = 8  # built-in synthetic tiles when no --calibration folder is given
MAX_CALIBRATION_IMAGES = 32  # a folder's first images (sorted): ranges settle long before this


class Int8ConversionError(RuntimeError):
    """The INT8 conversion failed (wrong source, bad calibration images, quantizer error)."""


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
    "the export's default, by measurement (README 'INT8 on CPU'): 7-bit weights do not saturate the u8 x s8 pair "
    "sums of AVX2 kernels without VNNI (full range: CLIP token cosine 0.980 there, below 0.999) and are as fast as "
    "full range with VNNI (2.08x vs 2.10x the FP32 encoder); per tensor; ResNet convolutions FP32 (static QDQ "
    "gained 1 % and cost ResNet cosine 0.994)"
)


def options_reason(options: Int8Options) -> str:
    """Why these options, as recorded in model.json."""
    return DEFAULT_OPTIONS_WHY if options == DEFAULT_OPTIONS else "chosen by the caller (not the export's default)"


def int8_fingerprint(weights_fingerprint: str, options: Int8Options) -> str:
    """The identity of an INT8 model dir: sha256 of the FP32 weights' fingerprint, the precision
    and the quantization options (different options give different features)."""
    text = json.dumps({"weights": weights_fingerprint, "precision": "int8", **options.as_dict()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


# -- calibration images --------------------------------------------------------------------------------
def calibration_images(folder: str | os.PathLike[str] | None, size: int, seed: int = 0) -> tuple[list[np.ndarray], dict[str, Any]]:
    """(H, W, 3) uint8 RGB images to calibrate on, and how they were chosen (for model.json).

    ``folder``: its images (sorted, the first :data:`MAX_CALIBRATION_IMAGES`); None: the built-in
    set, :data:`DEFAULT_CALIBRATION_TILES` synthetic aerial tiles of ``size`` px from ``seed``.

    Raises:
        Int8ConversionError: the folder does not exist, holds no image, or an image is unreadable.
    """
    if folder is None:
        from icpd.data.synthetic import render_tile

        rng = np.random.default_rng(seed)
        tiles = [render_tile(rng, size, "isaid5i", [1 + (3 * i) % 15], [1 + (3 * i + 7) % 15])[0]
                 for i in range(DEFAULT_CALIBRATION_TILES)]
        return tiles, {"source": "built-in synthetic tiles", "images": len(tiles), "seed": seed, "size": size}
    from icpd.io.inputs import list_inputs
    from icpd.io.raster import ImageError, read_image

    path = Path(folder)
    if not path.is_dir():
        raise Int8ConversionError(f"--calibration {path}: not a folder; give a folder of PNG/JPEG/TIFF images")
    try:
        files = list_inputs(path)[:MAX_CALIBRATION_IMAGES]
        if not files:
            raise Int8ConversionError(f"--calibration {path}: no .png/.jpg/.tif images in it")
        images = [read_image(f).pixels for f in files]
    except ImageError as err:
        raise Int8ConversionError(f"--calibration {path}: {err}") from err
    return images, {"source": str(path.resolve()), "images": len(images), "files": [f.name for f in files]}


class _Reader:
    """onnxruntime.quantization's CalibrationDataReader over preprocessed images (one per call)."""

    def __init__(self, preprocess: Path, images: list[np.ndarray]) -> None:
        from icpd.export.ort_session import ort_session

        pre = ort_session(preprocess, "cpu")
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(
            [{"images": pre.run(["images"], {"pixels": img[None]})[0]} for img in images])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


# -- quantization ---------------------------------------------------------------------------------------
def quantized_nodes(model: Any) -> dict[str, int]:
    """Op type -> count of the integer ops in a quantized graph (what the quantizer actually did)."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in ("DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "QuantizeLinear",
                            "DequantizeLinear", "DynamicQuantizeMatMul", "QLinearConv", "MatMulIntegerToFloat"):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def quantize_encoder(src: Path, dst: Path, options: Int8Options, calibration: _Reader | None = None) -> dict[str, Any]:
    """FP32 ``encoder.onnx`` (+ data) -> INT8 ``dst`` (+ ``dst.name + ".data"``); returns a summary.

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
                             weight_type=QuantType.QInt8, use_external_data_format=True)
            model = onnx.load(str(out), load_external_data=True)
        except Int8ConversionError:
            raise
        except Exception as err:  # the quantizer's own errors (shape inference, unsupported graphs)
            raise Int8ConversionError(f"INT8 quantization of {src.name} failed: {err}") from err
        # re-saved under its final name: the quantizer names its data file after the temporary file
        _save(model, dst)
    return {"quantized_ops": quantized_nodes(model), "op_types": ["MatMul", "Gemm"] + (["Conv"] if options.convs == "qdq" else [])}


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
) -> ModelDir:
    """Write an INT8 copy of the FP32 model dir ``src_dir`` to ``out_dir`` (see the module docstring).

    Args:
        options: how the encoder is quantized (:class:`Int8Options`).
        calibration: folder of calibration images (None: built-in synthetic tiles). Used to
            calibrate the convolutions when ``options.convs == "qdq"``; recorded either way.
        check: ``check(fp32_dir, int8_dir) -> report`` (``icpd.trt.validate.check_int8_against_fp32``),
            run on the converted folder before it is moved into place; recorded under
            ``model.json["int8"]["check"]``. A report with ``"passed": False`` stops the conversion
            (nothing is written): the cost of INT8 is beyond the stated thresholds.
        force: replace a non-empty ``out_dir``.

    Raises:
        Int8ConversionError: the source is not FP32, the calibration or quantization failed, or
            the check failed (the message lists what failed).
        ModelDirError: ``src_dir`` is not a model dir.
    """
    src = ModelDir.open(src_dir)
    out = Path(out_dir)
    if src.meta.get("precision", "fp32") != "fp32":
        raise Int8ConversionError(f"--model {src.path}: precision is {src.meta.get('precision')!r}; convert an FP32 model dir")
    if out.exists() and any(out.iterdir()) and not force:
        raise Int8ConversionError(f"--out {out}: exists and is not empty; pass force=True (--force) or choose another folder")
    check_replaceable(out)  # --force replaces a model dir or an empty folder, nothing else
    images, calib_meta = calibration_images(calibration, src.preset.image_size)
    calib_meta["used_for"] = ("activation ranges of the static QDQ convolutions" if options.convs == "qdq" else
                              "nothing: dynamic quantization takes each activation's range per call")
    with atomic_dir(out, replace=force) as work:
        meta = json.loads(json.dumps(src.meta))
        reader = _Reader(src.file("preprocess"), images) if options.convs == "qdq" else None
        summary = quantize_encoder(src.file("encoder"), work / src.meta["files"]["encoder"]["name"], options, reader)
        for role in ("preprocess", "matcher", "weights"):
            for f in src.role_files(role):
                shutil.copy2(f, work / f.name)
        meta["precision"] = "int8"
        meta["weights_fingerprint"] = src.fingerprint
        meta["fingerprint"] = int8_fingerprint(src.fingerprint, options)
        meta["int8"] = {"source_dir": str(src.path), "options": options.as_dict(), "why": options_reason(options),
                        "encoder": summary,
                        "fp32": ["matcher (rank prior order unchanged)", "preprocess", "LayerNorm, Softmax, attention products"],
                        "calibration": calib_meta, "io": "float32"}
        meta.pop("validation", None)
        meta["files"] = describe_files(work, {role: src.meta["files"][role]["name"] for role in src.meta["files"]})
        write_model_json(work, meta)
        if check is not None:
            report = check(src.path, work)
            meta["int8"]["check"] = report
            write_model_json(work, meta)
            if not report.get("passed", True):
                raise Int8ConversionError("the INT8 self-check failed: " + "; ".join(report.get("failures", [])) +
                                          " (thresholds: icpd.export.validate.INT8_THRESHOLDS)")
    return ModelDir.open(out)
