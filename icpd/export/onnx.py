"""``icpd export``: ICPD-Net -> preprocess.onnx, encoder.onnx, matcher.onnx, model.safetensors, model.json.

``runtime_only=True`` (``--runtime-only``) leaves out model.safetensors: a smaller dir for hosts that
run ONNX Runtime or TensorRT only. A second export into the same folder is refused at once
(``<out>.lock``, :func:`icpd.io.locks.exclusive_lock`).

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
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from icpd.artifacts.model_dir import (
    base_meta,
    check_replaceable,
    describe_files,
    remove_unreferenced_data,
    write_model_json,
)
from icpd.artifacts.signature import MatcherSignature
from icpd.config import Precision, RankPriorForm
from icpd.errors import ParamMessage, arg
from icpd.export.rank_prior_onnx import translation_table
from icpd.export.validate import Comparison, seeded_episodes, tolerance
from icpd.export.wrappers import (
    MATCHER_OUTPUTS_ALL,
    EncoderGraph,
    MatcherGraph,
    PreprocessGraph,
    encoder_output_names,
    preprocess_pixels,
)
from icpd.io.atomic import atomic_dir
from icpd.io.locks import exclusive_lock
from icpd.model.checkpoint import model_fingerprint, save_checkpoint
from icpd.model.icpd_net import ICPDNet

OPSET = 18
# Bumped whenever the exported graphs change for the same weights (caches of exports compare it).
GRAPH_VERSION = 6  # 6: CLIP resize as MatMuls, rank distances from sums of squares
MAX_BATCH = 256
MAX_SHOTS = 32


class ExportError(ParamMessage, RuntimeError):
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
        y, x = (torch.randint(0, size - h, (1,), generator=g).item(),
                torch.randint(0, size - w, (1,), generator=g).item())
        m[k, y : y + h, x : x + w] = 1
    return m


def example_images(batch: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=g)


def matcher_inputs(model: ICPDNet, query: torch.Tensor, support: torch.Tensor, masks: torch.Tensor,
                   emb: torch.Tensor) -> list[torch.Tensor]:
    """Positional matcher inputs: query images (B,3,S,S), support images (K,3,S,S), masks (K,S,S), emb (15,D)."""
    with torch.no_grad():
        q = model.encode_unchecked(query)
        prepared = model.prepare_support(model.encode_unchecked(support), masks.unsqueeze(0))
    sig = MatcherSignature.for_preset(model.preset)
    return sig.positional(q.as_list(), sig.pack_support(prepared, emb, masks))


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
    *,
    runtime_only: bool = False,
    lock: bool = True,
) -> ExportResult:
    """Export ``model`` into ``out_dir`` (see the module docstring).

    Args:
        runtime_only: leave out ``model.safetensors`` (the PyTorch weights, about half of the dir):
            ONNX Runtime and TensorRT run such a dir, the torch backend refuses it; model.json says
            ``"runtime_only": true``. The self-check runs as usual (against ``model`` in memory).
        lock: hold ``<out_dir>.lock`` for the export (:func:`icpd.io.locks.exclusive_lock`), so a
            second export into ``out_dir`` is refused at once; False when the caller holds it.

    Raises:
        ExportError: ``out_dir`` is not empty (without ``force``), or the self-check failed.
        LockHeldError: another export is writing ``out_dir``.
    """
    out = Path(out_dir)
    if lock:
        with exclusive_lock(out, "export"):
            return export_model(model, out, rank_prior, validate, validation_runs, force, source,
                                runtime_only=runtime_only, lock=False)
    rank_prior = RankPriorForm.parse(rank_prior)  # text from a caller: "onnx" (the old name) is topk
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(f"{arg('out_dir', out)}: exists and is not empty; pass {arg('force', True)} to "
                          "replace it or choose another folder")
    check_replaceable(out, "out_dir")  # force replaces a model dir or an empty folder, nothing else
    t0 = time.perf_counter()
    model = model.eval()
    p = model.preset
    with atomic_dir(out, replace=force) as work:  # renamed to ``out`` only once checked
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
        sig = MatcherSignature.for_preset(p)
        names, dyn = sig.inputs, sig.dynamic_axes(batch, shots)
        rank = rank_prior  # the op the form's translation rewrites (plugin: the kernel computes distances itself)
        _export(MatcherGraph(model, all_outputs=True, rank=rank), tuple(args), work / "matcher.onnx", names,
                MATCHER_OUTPUTS_ALL, (tuple(dyn),), rank_prior)
        if not runtime_only:
            save_checkpoint(model, work / "model.safetensors", {"source": source} if source else None, sidecar=False)
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
                        "outputs": {n: ["batch", *list(shape[1:]), "float32"]
                                    for n, shape in zip(enc_out, images_shapes(model, images))}},
            "matcher": sig.describe(args),
        })
        remove_unreferenced_data(work)  # every file left is listed in model.json
        names = {"preprocess": "preprocess.onnx", "encoder": "encoder.onnx", "matcher": "matcher.onnx"}
        if runtime_only:
            meta["runtime_only"] = True
        else:
            names["weights"] = "model.safetensors"
        meta["files"] = describe_files(work, names)
        write_model_json(work, meta)
        validation: dict[str, Any] = {}
        if validate:
            validation = validate_export(model, work, runs=validation_runs)
            meta["validation"] = validation
            write_model_json(work, meta)
    return ExportResult(out, time.perf_counter() - t0, validation)


def images_shapes(model: ICPDNet, images: torch.Tensor) -> list[torch.Size]:
    with torch.no_grad():
        return [t.shape for t in model.encode_unchecked(images[:1]).as_list()]


# -- self-check ----------------------------------------------------------------------------------
def validate_export(model: ICPDNet, model_dir: Path, runs: int = 3, seed: int = 0) -> dict[str, Any]:
    """ONNX Runtime vs PyTorch eager on ``runs`` seeded episodes; raises ExportError unless the
    FP32 pass rule of :mod:`icpd.export.validate` holds (the same episodes and rule as ``icpd validate``).

    Per episode: the query pixels through preprocess.onnx vs the torch preprocessing; the
    preprocessed images through encoder.onnx vs ``encode``; the matcher graph vs the eager matcher
    on the same (torch-prepared) inputs, support pixels and masks resized as the runtime does.
    """
    from icpd.export.ort_session import ort_session
    from icpd.io.labels import resize_label
    from icpd.kernels.ort_custom_op import OrtExtensionsUnavailableError
    from icpd.model.priors import EAGER

    p = model.preset
    pre = ort_session(model_dir / "preprocess.onnx")
    enc = ort_session(model_dir / "encoder.onnx")
    # the form the model.json on disk says (text: parsed, as every reader of model.json does)
    form = RankPriorForm.parse(json.loads((model_dir / "model.json").read_text()).get("rank_prior", RankPriorForm.TOPK))
    plugin = form is RankPriorForm.PLUGIN
    try:
        mat_sess = ort_session(model_dir / "matcher.onnx", custom_ops=plugin)  # plugin: CPU NdcgPrior kernel
    except OrtExtensionsUnavailableError:  # the plugin form is then checked structurally only
        mat_sess = None
    cmp = Comparison(Precision.FP32)
    names = MatcherSignature.for_preset(p).inputs
    for ep in seeded_episodes(p, runs, seed):
        ref_images = preprocess_pixels(torch.from_numpy(ep.query), p)
        cmp.add("images", pre.run(None, {"pixels": ep.query})[0], ref_images.numpy())
        with torch.no_grad():
            ref_feats = model.encode_unchecked(ref_images).as_list()
        cmp.add_all(encoder_output_names(p), enc.run(None, {"images": ref_images.numpy()}),
                    [r.numpy() for r in ref_feats])
        if mat_sess is None:
            continue
        support = torch.cat([preprocess_pixels(torch.from_numpy(px[None]), p) for px in ep.support])
        masks = torch.from_numpy(np.stack([resize_label(m, p.image_size) for m in ep.masks]).astype(np.float32))
        args = matcher_inputs(model, ref_images, support, masks, torch.from_numpy(ep.embeddings))
        with torch.no_grad():
            ref_out = [r.numpy() for r in MatcherGraph(model, all_outputs=True, rank=EAGER)(*args)]
        ort_out = mat_sess.run(None, {n: a.numpy() for n, a in zip(names, args)})
        cmp.add_all(MATCHER_OUTPUTS_ALL, ort_out, ref_out)
        cmp.add_masks(ort_out[0], ref_out[0])
    failures = cmp.failures(require_masks=mat_sess is not None)
    report = {
        "runs": runs,
        "seed": seed,
        "tolerance": tolerance(Precision.FP32).as_dict(),
        "passed": not failures,
        "outputs": {k: v.as_dict() for k, v in cmp.outputs.items()},
        "mask_agreement": cmp.masks,
        "mean_foreground_iou": cmp.mean_iou,
        "matcher_checked": mat_sess is not None,
    }
    if failures:
        raise ExportError("ONNX Runtime disagrees with PyTorch: " + "; ".join(failures))
    return report
