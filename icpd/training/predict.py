"""One-shot eager prediction from files: checkpoint + query + supports + masks -> mask and overlay PNGs.

This is the torch-eager path of ``icpd predict`` (no export, no cache). Deployment goes through
``icpd.runtime.Predictor``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from icpd.errors import ParamError, arg
from icpd.model.icpd_net import ICPDNet

if TYPE_CHECKING:
    from icpd.io import Raster


@dataclass(frozen=True)
class PredictOutput:
    mask: Path  # 0/255 PNG at the query's size
    overlay: Path  # query with the mask coloured in
    foreground_fraction: float  # share of query pixels predicted as the target class
    seconds: float  # network time (excluding file I/O)
    notes: tuple[str, ...] = ()  # what was done to the supports (upscaled to the model input)


def _prepare(pixels: np.ndarray, model: ICPDNet) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, S, S): the same resize and normalisation as every deployed backend."""
    from icpd.export.wrappers import preprocess_pixels

    return preprocess_pixels(torch.from_numpy(np.ascontiguousarray(pixels)).unsqueeze(0), model.preset)[0]


@dataclass(frozen=True)
class QueryProbability:
    """The target's foreground probability on one query, at the query's own size."""

    query: Raster  # the query as read (pixels (H, W, 3) uint8 RGB)
    prob: np.ndarray  # (H, W) float32 foreground probability
    seconds: float  # network time (excluding file I/O)
    notes: tuple[str, ...] = ()  # what was done to the supports (upscaled to the model input)


def predict_probability(
    model: ICPDNet,
    query: str | os.PathLike[str],
    supports: list[str | os.PathLike[str]],
    masks: list[str | os.PathLike[str]],
    class_embeddings: str | os.PathLike[str],
    target: str,
) -> QueryProbability:
    """Foreground probability of ``target`` on ``query`` given support images and their masks
    (one mask per support): softmax of the logits, resized (bilinear) to the query's H x W."""
    from icpd.io import read_image, read_mask
    from icpd.io.labels import resize_label
    from icpd.model.text import load_class_embeddings
    from icpd.runtime.validation import check_supports

    if not supports:
        raise ParamError(f"{arg('supports')}: give at least one support image (and its mask in "
                         f"{arg('masks')})")
    if len(supports) != len(masks):
        raise ParamError(f"{arg('supports')}/{arg('masks')}: {len(supports)} support images but {len(masks)} "
                         "masks; give one mask per support")
    p = model.preset
    # a numpy array
    emb = torch.as_tensor(load_class_embeddings(class_embeddings, preset=p).for_target(target))
    q = read_image(query)
    rasters = [read_image(s) for s in supports]
    # the Predictor's rules and words (sizes, binary masks, too-small supports, all-empty masks) and its notes
    support_masks = [read_mask(m, like=r) for m, r in zip(masks, rasters)]
    pixels, binary, notes = check_supports(rasters, support_masks, target, p.image_size)
    s_imgs = [_prepare(px, model) for px in pixels]
    s_masks = [torch.from_numpy(resize_label(m, p.image_size).astype(np.float32)) for m in binary]
    t0 = time.perf_counter()
    with torch.no_grad():
        logits = model(
            _prepare(q.pixels, model).unsqueeze(0),
            torch.stack(s_imgs).unsqueeze(0),
            torch.stack(s_masks).unsqueeze(0),
            emb.unsqueeze(0),
        )
        prob = torch.softmax(logits, dim=1)[0, 1]
        prob = torch.nn.functional.interpolate(prob[None, None], (q.height, q.width), mode="bilinear",
                                               align_corners=False)[0, 0]
    seconds = time.perf_counter() - t0
    return QueryProbability(q, prob.numpy().astype(np.float32, copy=False), seconds, tuple(notes))


def predict_files(
    model: ICPDNet | str | os.PathLike[str],
    query: str | os.PathLike[str],
    supports: list[str | os.PathLike[str]],
    masks: list[str | os.PathLike[str]],
    class_embeddings: str | os.PathLike[str],
    target: str,
    out_dir: str | os.PathLike[str],
    threshold: float = 0.5,
    preset: str | None = None,
) -> PredictOutput:
    """Segment ``target`` in ``query`` given support images and their masks (one mask per support).

    Foreground where probability >= ``threshold``: :func:`icpd.runtime.predictor.merge_labels`,
    the rule of ``icpd infer`` and every backend. ``model``: a network, or a checkpoint file loaded
    here (with ``preset``; :func:`icpd.model.checkpoint.load_checkpoint`).

    The outputs (``<out_dir>/<query stem>_mask.png`` and ``_overlay.png``) are claimed before the
    checkpoint is read (:func:`icpd.io.outputs.claim_output` on the mask's name): an ``out_dir`` that
    cannot be written fails at once, and a second run writing the same query's outputs is refused at
    once with the first run's pid (runs of other queries into the same folder go ahead).

    Raises:
        OutputPathError: (an OSError) ``out_dir`` cannot be written; LockHeldError: (a ValueError)
            another run writes the same outputs; ValueError: bad inputs.
    """
    from icpd.io import write_png
    from icpd.io.outputs import check_output, claim_output
    from icpd.io.viz import overlay
    from icpd.runtime.predictor import merge_labels

    out = Path(out_dir)
    stem = Path(query).stem
    mask_name = out / f"{stem}_mask.png"
    check_output(out, folder=True)  # a file named as the folder: the message names it, not its parent
    with claim_output(mask_name, "predict"):
        if not isinstance(model, ICPDNet):
            from icpd.model.checkpoint import load_checkpoint

            model = load_checkpoint(model, preset=preset)
        res = predict_probability(model, query, supports, masks, class_embeddings, target)
        fg = merge_labels(res.prob[None, None], threshold)[0]  # (1, 1, H, W) -> (H, W) uint8: 1 = target
        out.mkdir(parents=True, exist_ok=True)
        mask_path = write_png(mask_name, fg * 255)
        overlay_path = write_png(out / f"{stem}_overlay.png", overlay(res.query.pixels, fg))
    return PredictOutput(mask_path, overlay_path, float(fg.mean()), res.seconds, res.notes)
