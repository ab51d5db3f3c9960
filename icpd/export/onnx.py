"""``icpd export``: ICPD-Net -> preprocess.onnx, encoder.onnx, matcher.onnx, model.safetensors, model.json.

Shots are a dynamic axis of the matcher (one graph serves 1- and 5-shot support sets: the
shot average is a mean over that axis, nothing else depends on K); the query batch is dynamic
in every graph. The export checks itself before it returns: ONNX checker, then ONNX Runtime
against PyTorch on several inputs; above tolerance it fails and leaves nothing behind (the
directory is written under a temporary name and renamed at the end).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from icpd.config import RankPriorForm
from icpd.export.model_dir import base_meta, describe_files, write_model_json
from icpd.export.rank_prior_onnx import parse_form, translation_table
from icpd.export.validate import ErrorStats, error_stats, mask_agreement, merge
from icpd.export.wrappers import (
    MATCHER_OUTPUTS_ALL,
    EncoderGraph,
    MatcherGraph,
    PreprocessGraph,
    encoder_output_names,
    matcher_input_names,
    preprocess_pixels,
)
from icpd.model.checkpoint import model_fingerprint, save_checkpoint
from icpd.model.icpd_net import ICPDNet

OPSET = 18
# Bumped whenever the exported graphs change for the same weights (caches of exports compare it).
GRAPH_VERSION = 5
MAX_BATCH = 256
MAX_SHOTS = 32


class ExportError(RuntimeError):
    """The export failed or its self-check found errors above tolerance."""


@dataclass
class ExportResult:
    path: Path
    seconds: float
    validation: dict[str, Any] = field(default_factory=dict)


# -- example inputs ---------------------------------------------------------------------------------
def example_support_masks(shots: int, size: int, seed: int) -> torch.Tensor:
    """(K, S, S) rectangles of varying size and place (never empty)."""
    g = torch.Generator().manual_seed(seed)
    m = torch.zeros(shots, size, size)
    for k in range(shots):
        h, w = torch.randint(size // 8, size // 2, (2,), generator=g).tolist()
        y, x = torch.randint(0, size - h, (1,), generator=g).item(), torch.randint(0, size - w, (1,), generator=g).item()
        m[k, y : y + h, x : x + w] = 1
    return m


def example_images(batch: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=g)


def matcher_inputs(model: ICPDNet, query: torch.Tensor, support: torch.Tensor, masks: torch.Tensor, emb: torch.Tensor) -> list[torch.Tensor]:
    """Positional matcher inputs: query images (B,3,S,S), support images (K,3,S,S), masks (K,S,S), emb (15,D)."""
    with torch.no_grad():
        q = model.encode_unchecked(query)
        prepared = model.prepare_support(model.encode_unchecked(support), masks.unsqueeze(0))
    args = [*q.as_list(), *[f[0] for f in prepared.features], *[n[0] for n in prepared.norms], *[m[0] for m in prepared.masks], emb]
    if model.preset.fusion_weight > 0:
        args.append(masks)
    return args


# -- export -------------------------------------------------------------------------------------------
def _export(module: torch.nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str],
            dynamic_shapes: Any, rank_prior: RankPriorForm) -> None:
    module.eval()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=True,
            opset_version=OPSET,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=dynamic_shapes,
            custom_translation_table=translation_table(rank_prior),
            external_data=True,
            verbose=False,
        )
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    versions = {o.domain: o.version for o in proto.opset_import}
    if versions.get("", None) != OPSET:
        raise ExportError(f"{path.name}: exported with opset {versions.get('')} instead of {OPSET}")
    onnx.checker.check_model(str(path))


def export_model(
    model: ICPDNet,
    out_dir: str | os.PathLike[str],
    rank_prior: RankPriorForm | str = RankPriorForm.TOPK,
    validate: bool = True,
    validation_runs: int = 3,
    force: bool = False,
    source: str = "",
) -> ExportResult:
    """Export ``model`` into ``out_dir`` (see the module docstring)."""
    rank_prior = parse_form(rank_prior)  # "onnx" (the old name) is topk
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(f"--out {out}: exists and is not empty; pass --force to replace it or choose another folder")
    t0 = time.perf_counter()
    model = model.eval()
    p = model.preset
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        batch, shots = torch.export.Dim("batch", min=1, max=MAX_BATCH), torch.export.Dim("shots", min=1, max=MAX_SHOTS)
        height, width = torch.export.Dim("height", min=8, max=16384), torch.export.Dim("width", min=8, max=16384)
        pixels = torch.randint(0, 256, (2, p.image_size + 8, p.image_size + 4, 3), dtype=torch.uint8)
        _export(PreprocessGraph(p), (pixels,), work / "preprocess.onnx", ["pixels"], ["images"],
                ({0: batch, 1: height, 2: width},), rank_prior)
        images = example_images(2, p.image_size, seed=0)
        enc_out = encoder_output_names(p)
        _export(EncoderGraph(model), (images,), work / "encoder.onnx", ["images"], enc_out, ({0: batch},), rank_prior)

        emb = torch.randn(p.num_classes, p.embed_dim, generator=torch.Generator().manual_seed(1))
        args = matcher_inputs(model, example_images(2, p.image_size, 2), example_images(2, p.image_size, 3),
                              example_support_masks(2, p.image_size, 4), emb)
        fusion = p.fusion_weight > 0
        names = matcher_input_names(p, fusion)
        levels = p.num_layers + 1
        dyn = [{0: batch}] * levels + [{0: shots}] * (3 * levels) + [None] + ([{0: shots}] if fusion else [])
        rank = rank_prior  # the op the form's translation rewrites (plugin: the kernel computes distances itself)
        _export(MatcherGraph(model, all_outputs=True, rank=rank), tuple(args), work / "matcher.onnx", names, MATCHER_OUTPUTS_ALL,
                (tuple(dyn),), rank_prior)
        save_checkpoint(model, work / "model.safetensors", {"source": source} if source else None)
        (work / "model.json").unlink(missing_ok=True)  # save_checkpoint's sidecar: model.json is written below
        meta = base_meta(p, model_fingerprint(model))
        meta.update({
            "opset": OPSET,
            "graph_version": GRAPH_VERSION,
            "rank_prior": rank_prior.value,
            "precision": "fp32",
            "source": source,
            "preprocess": {"inputs": {"pixels": ["batch", "height", "width", 3, "uint8"]},
                           "outputs": {"images": ["batch", 3, p.image_size, p.image_size, "float32"]}},
            "encoder": {"inputs": {"images": ["batch", 3, p.image_size, p.image_size, "float32"]},
                        "outputs": {n: ["batch", *list(shape[1:]), "float32"] for n, shape in zip(enc_out, images_shapes(model, images))}},
            "matcher": {"inputs": {n: _sym(n, t) for n, t in zip(names, args)},
                        "outputs": MATCHER_OUTPUTS_ALL, "shots_axis": "dynamic"},
        })
        meta["files"] = describe_files(work, {"preprocess": "preprocess.onnx", "encoder": "encoder.onnx",
                                              "matcher": "matcher.onnx", "weights": "model.safetensors"})
        write_model_json(work, meta)
        validation: dict[str, Any] = {}
        if validate:
            validation = validate_export(model, work, runs=validation_runs)
            meta["validation"] = validation
            write_model_json(work, meta)
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ExportResult(out, time.perf_counter() - t0, validation)


def images_shapes(model: ICPDNet, images: torch.Tensor) -> list[torch.Size]:
    with torch.no_grad():
        return [t.shape for t in model.encode_unchecked(images[:1]).as_list()]


def _sym(name: str, t: torch.Tensor) -> list:
    dims: list = list(t.shape)
    if name.startswith("query_"):
        dims[0] = "batch"
    elif name.startswith("support_"):
        dims[0] = "shots"
    return [*dims, str(t.dtype).replace("torch.", "")]


# -- self-check ----------------------------------------------------------------------------------
TOLERANCE = {
    # float32 ORT vs torch: op-order round-off, relative to the output's scale
    "encoder_rel_to_scale": 1e-4,
    "logits_rel_to_scale": 1e-3,
    "mask_agreement": 0.999,
    # rank channels can flip where two support pixels are within round-off: judged by mean and p99
    "pyramid_mean_abs": 1e-4,
    "pyramid_p99_abs": 1e-3,
}


def validate_export(model: ICPDNet, model_dir: Path, runs: int = 3) -> dict[str, Any]:
    """ONNX Runtime vs PyTorch on ``runs`` seeded inputs; raises ExportError above tolerance."""
    from icpd.export.ort_session import ort_session
    from icpd.kernels.ort_custom_op import OrtExtensionsUnavailableError

    p = model.preset
    pre = ort_session(model_dir / "preprocess.onnx")
    enc = ort_session(model_dir / "encoder.onnx")
    plugin = json.loads((model_dir / "model.json").read_text()).get("rank_prior") == "plugin"
    try:
        mat_sess = ort_session(model_dir / "matcher.onnx", custom_ops=plugin)  # plugin: CPU NdcgPrior kernel
    except OrtExtensionsUnavailableError:  # the plugin form is then checked structurally only
        mat_sess = None
    stats: dict[str, list[ErrorStats]] = {}
    agreement: list[dict[str, float]] = []
    names = matcher_input_names(p, p.fusion_weight > 0)
    for run in range(runs):
        seed = 100 + run
        pixels = torch.randint(0, 256, (2, p.image_size + 16 * run, p.image_size + 8, 3), dtype=torch.uint8,
                               generator=torch.Generator().manual_seed(seed))
        ref_images = preprocess_pixels(pixels, p)
        (ort_images,) = pre.run(None, {"pixels": pixels.numpy()})
        stats.setdefault("images", []).append(error_stats("images", ort_images, ref_images.numpy()))
        with torch.no_grad():
            ref_feats = model.encode_unchecked(ref_images).as_list()
        ort_feats = enc.run(None, {"images": ref_images.numpy()})
        for name, a, r in zip(encoder_output_names(p), ort_feats, ref_feats):
            stats.setdefault(name, []).append(error_stats(name, a, r.numpy()))
        if mat_sess is None:
            continue
        shots = 1 + run % 3
        emb = torch.randn(p.num_classes, p.embed_dim, generator=torch.Generator().manual_seed(seed))
        args = matcher_inputs(model, ref_images, example_images(shots, p.image_size, seed + 1),
                              example_support_masks(shots, p.image_size, seed + 2), emb)
        with torch.no_grad():
            ref_out = MatcherGraph(model, all_outputs=True, rank="eager")(*args)
        ort_out = mat_sess.run(None, {n: a.numpy() for n, a in zip(names, args)})
        for name, a, r in zip(MATCHER_OUTPUTS_ALL, ort_out, ref_out):
            stats.setdefault(name, []).append(error_stats(name, a, r.numpy()))
        agreement.append(mask_agreement(ort_out[0], ref_out[0].numpy()))
    merged = {k: merge(v) for k, v in stats.items()}
    failures = []
    for name, s in merged.items():
        if name.startswith("feat_") or name == "images":
            if s.max_abs > TOLERANCE["encoder_rel_to_scale"] * max(1.0, s.ref_max):
                failures.append(f"{name}: max abs error {s.max_abs:.3g} (scale {s.ref_max:.3g})")
        elif name == "logits":
            if s.max_abs > TOLERANCE["logits_rel_to_scale"] * max(1.0, s.ref_max):
                failures.append(f"logits: max abs error {s.max_abs:.3g} (scale {s.ref_max:.3g})")
        elif s.mean_abs > TOLERANCE["pyramid_mean_abs"] or s.p99_abs > TOLERANCE["pyramid_p99_abs"]:
            failures.append(f"{name}: mean abs error {s.mean_abs:.3g}, p99 {s.p99_abs:.3g}")
    worst = min((a["pixel_agreement"] for a in agreement), default=1.0)
    if worst < TOLERANCE["mask_agreement"]:
        failures.append(f"mask agreement {worst:.4f} < {TOLERANCE['mask_agreement']}")
    report = {
        "runs": runs,
        "tolerance": TOLERANCE,
        "outputs": {k: v.as_dict() for k, v in merged.items()},
        "mask_agreement": agreement,
        "matcher_checked": mat_sess is not None,
    }
    if failures:
        raise ExportError("ONNX Runtime disagrees with PyTorch: " + "; ".join(failures))
    return report
