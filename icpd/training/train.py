"""Episodic training of ICPD-Net's prior learner and decoder (encoders frozen), resumable, DDP-ready.

The tiny preset trains its encoders too (``train_encoders``, default on for it; see ``_build_model``);
the paper presets keep the authors' frozen encoders.

One epoch = ``episodes_per_epoch`` random training episodes of the fold's base classes, then the
fold's validation episodes (novel classes) are scored. A run directory holds:

- ``best.pt``: ``torch.save(model.state_dict())`` of the best epoch by validation mIoU (the
  authors' layout), and ``best.safetensors`` (+ ``best.json``) of the same weights, icpd format;
- ``last.safetensors`` + ``last.json``: the training state after the latest epoch
  (:mod:`icpd.training.train_state`), which ``resume=True`` continues from bit-exactly;
- ``metrics.jsonl``: one line per epoch; ``config.json``; ``class_embeddings.safetensors``.

Loss: per-pixel cross-entropy weighted by the episode's ``scale_weights`` (mean over pixels) plus
the support prior loss of :func:`icpd.model.icpd_net.prior_loss`.

Multi-process: launch with ``torchrun --nproc_per_node N``; ``batch_size`` is the global batch,
split evenly over the ranks (it must divide), so gradients averaged by DDP equal those of one
process with the whole batch. Only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from icpd.errors import ParamError, arg
from icpd.io.atomic import atomic_write, write_text_atomic
from icpd.model.icpd_net import ICPDNet
from icpd.training.distributed import DistContext, all_reduce_sum, barrier, init_distributed, shutdown
from icpd.training.evaluate import TorchEpisodePredictor, autocast, evaluate, make_dataset, spread_subset
from icpd.training.metrics import format_score
from icpd.training.train_state import fingerprint_encoders, load_state, save_state, trim_log, write_json


@dataclass
class TrainConfig:
    """What ``icpd train`` needs; defaults are the authors' (batch 8, 100 epochs, Adam 1e-4)."""

    dataset: str  # "isaid5i" or "dlrsd5i"
    root: Path  # data set root
    fold: int  # 0..2; its 5 classes are held out (validation), the other 10 train
    shot: int  # supports per episode
    class_embeddings: Path  # (15, D) class text embeddings in class-id order
    out: Path  # run directory
    preset: str | None = None  # default: the checkpoint's, else "paper"
    clip_weights: Path | None = None  # open_clip / RemoteCLIP state dict for the CLIP tower
    backbone_weights: Path | None = None  # torchvision ImageNet state dict for the backbone
    checkpoint: Path | None = None  # ICPD-Net weights to fine-tune from
    epochs: int = 100  # total epochs (a resumed run may raise it)
    batch_size: int = 8  # episodes per optimiser step, over all ranks
    lr: float = 1e-4  # Adam learning rate
    workers: int = 0  # DataLoader workers per rank
    episodes_per_epoch: int | None = None  # default: one per training list entry
    val_episodes: int | None = None  # default: every validation episode; else this many, evenly spaced
    seed: int = 0  # model init, episode sampling and RNG seeds
    device: str = "cpu"  # "cpu" or "cuda" (cuda:LOCAL_RANK under torchrun)
    amp: bool = True  # autocast (bf16, else fp16 + loss scaling) on CUDA; no effect on CPU
    resume: bool = False  # continue the run in ``out``
    train_encoders: bool | None = None  # update the encoders too; None: yes for the tiny preset only
    quiet: bool = False  # no progress bars or per-epoch lines

    def __post_init__(self) -> None:
        for name in ("root", "class_embeddings", "out", "clip_weights", "backbone_weights", "checkpoint"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, Path(value))

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready fields; paths absolute, so a resume from another directory compares equal."""
        return {
            k: (str(Path(v).expanduser().resolve()) if isinstance(v, Path) else v)
            for k, v in dataclasses.asdict(self).items()
        }


@dataclass
class TrainResult:
    """What a finished (or resumed and finished) run produced."""

    run_dir: Path
    best_miou: float  # best validation mIoU (novel classes)
    best_epoch: int  # 1-based epoch of best_miou
    epochs: int  # epochs completed in total
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl lines
    model: ICPDNet | None = field(default=None, repr=False)  # the network after the last epoch (this rank's)

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / "best.safetensors"

    @property
    def best_pt(self) -> Path:
        return self.run_dir / "best.pt"


def train(config: TrainConfig, console: Any = None) -> TrainResult:
    """Train, validating after every epoch; see the module docstring for what is written.

    Args:
        config: the run.
        console: a ``rich.console.Console`` for messages (default: stderr).

    The run directory is claimed before anything is loaded (:func:`icpd.io.outputs.claim_output`, by the
    process that writes it: rank 0): a folder that cannot be written fails at once, and a second run (or
    ``--resume``) into a folder another run is writing is refused at once with that run's pid, instead of
    both writing ``last.safetensors``, ``best.pt`` and ``metrics.jsonl`` in turn.

    Raises:
        ValueError: bad options, data, weights, or a resume that does not match the run;
            ``LockHeldError`` (a ValueError): another run is writing ``config.out``.
        OutputPathError: (an OSError) ``config.out`` cannot be written.
    """
    from rich.console import Console

    from icpd.io.outputs import claim_output

    _check_config(config)
    ctx = init_distributed(config.device)
    try:
        claim = claim_output(config.out, "train", folder=True) if ctx.is_main else contextlib.nullcontext()
        with claim:
            return _Trainer(config, ctx, console or Console(stderr=True)).run()
    finally:
        shutdown(ctx)


def _check_config(c: TrainConfig) -> None:
    for name in ("epochs", "batch_size", "shot"):
        if getattr(c, name) < 1:
            raise ParamError(f"{arg(name, getattr(c, name))}: must be >= 1")
    if not c.lr > 0:
        raise ParamError(f"{arg('lr', c.lr)}: must be > 0")
    if c.workers < 0:
        raise ParamError(f"{arg('workers', c.workers)}: must be >= 0")
    if c.train_encoders and c.preset not in (None, "tiny"):
        raise ParamError(f"{arg('train_encoders', True)} is for the tiny preset only; preset {c.preset!r} "
                         "keeps the authors' frozen encoders")


class _Trainer:
    def __init__(self, config: TrainConfig, ctx: DistContext, console: Any) -> None:
        self.cfg, self.ctx, self.console = config, ctx, console
        self.out = Path(config.out)
        if config.batch_size % ctx.world_size:
            raise ParamError(
                f"{arg('batch_size', config.batch_size)}: must be a multiple of the {ctx.world_size} "
                "processes (it is the global batch, split evenly over ranks)"
            )
        self.per_rank = config.batch_size // ctx.world_size

    def log(self, msg: str, force: bool = False) -> None:
        if self.ctx.is_main and (force or not self.cfg.quiet):
            # unwrapped into logs (a path or a metric split over two lines cannot be grepped)
            self.console.print(msg, soft_wrap=not self.console.is_terminal)

    # -- setup -----------------------------------------------------------------------------------
    def _check_out(self) -> None:
        state = self.out / "last.json"
        if self.cfg.resume and not state.is_file():
            raise ParamError(f"{arg('resume', True)}: {state} not found; {self.out} holds no run to resume "
                             f"(drop {arg('resume', True)})")
        if not self.cfg.resume and state.is_file():
            raise ParamError(f"{arg('out', self.out)} already holds a run; pass {arg('resume', True)} to "
                             f"continue it, or choose another {arg('out')}")

    def _build_model(self) -> ICPDNet:
        from icpd.model.checkpoint import (
            load_backbone_weights,
            load_checkpoint,
            load_clip_weights,
            seeded_model,
        )

        cfg = self.cfg
        if cfg.checkpoint is not None:
            model = load_checkpoint(cfg.checkpoint, preset=cfg.preset, shot=cfg.shot)
        else:
            model = seeded_model(cfg.preset or "paper", cfg.seed)
        if cfg.clip_weights is not None:
            load_clip_weights(model, cfg.clip_weights)
        if cfg.backbone_weights is not None:
            load_backbone_weights(model, cfg.backbone_weights)
        tiny = model.preset.name == "tiny"
        if cfg.train_encoders and not tiny:
            raise ParamError(
                f"{arg('train_encoders', True)} is for the tiny preset only; preset {model.preset.name!r} "
                f"keeps the authors' frozen encoders (pass {arg('clip_weights')} / {arg('backbone_weights')})"
            )
        # The tiny preset has no pretrained weights, and its random encoders' similarity priors separate
        # an object from its surroundings barely better than chance (pixel AUC 0.55-0.71 on synthetic
        # validation episodes): frozen, the tiny network reaches a novel-class mIoU of only ~0.07-0.1.
        if cfg.train_encoders or (cfg.train_encoders is None and tiny):
            model.set_encoders_trainable(True)
            self.log("tiny preset: the encoders train with the prior learner and decoder "
                     "(--freeze-encoders: keep them fixed)")
        elif cfg.checkpoint is None:
            missing = [n for n, w in (("--clip-weights", cfg.clip_weights),
                                      ("--backbone-weights", cfg.backbone_weights)) if w is None]
            if missing:
                self.log(
                    f"[bold yellow]warning:[/] no {' / '.join(missing)}: those frozen encoders keep random "
                    "weights. Fine for tests and smoke runs, useless for accuracy; pass RemoteCLIP and "
                    "ImageNet weights.",
                    force=True,
                )
        return model

    def _loaders(self, emb: torch.Tensor, preset: Any) -> None:
        cfg, ctx = self.cfg, self.ctx
        self.train_set = make_dataset(cfg.dataset, cfg.root, cfg.fold, "trn", cfg.shot, emb, preset, cfg.seed,
                                      cfg.episodes_per_epoch)
        val = make_dataset(cfg.dataset, cfg.root, cfg.fold, "val", cfg.shot, emb, preset, cfg.seed)
        self.val_set = spread_subset(val, cfg.val_episodes)
        # Episodes are random by (seed, epoch, index) already: no shuffling. Workers are not
        # persistent so each epoch's workers see set_epoch().
        sampler = (DistributedSampler(self.train_set, ctx.world_size, ctx.rank, shuffle=False)
                   if ctx.distributed else None)
        self.train_loader = DataLoader(
            self.train_set, batch_size=self.per_rank, sampler=sampler, shuffle=False, num_workers=cfg.workers,
            pin_memory=ctx.device.type == "cuda",
        )

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        from icpd.data import fold_classes
        from icpd.model.text import load_class_embeddings

        cfg, ctx = self.cfg, self.ctx
        self._check_out()
        _seed_everything(cfg.seed)
        model = self._build_model()
        emb_file = load_class_embeddings(cfg.class_embeddings, preset=model.preset)
        self._loaders(emb_file.embeddings, model.preset)
        model.to(ctx.device).train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=cfg.lr)
        amp = cfg.amp and ctx.device.type == "cuda"
        fp16 = amp and not torch.cuda.is_bf16_supported()
        scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        enc_fp = fingerprint_encoders(model)
        history: list[dict[str, Any]] = []
        best, best_epoch, start = -1.0, 0, 1
        if cfg.resume:
            state = load_state(self.out, model, opt, scaler, cfg, enc_fp)
            history, best, best_epoch = state["history"], state["best_miou"], state["best_epoch"]
            start = state["epoch"] + 1
            if ctx.is_main:
                trim_log(self.out / "metrics.jsonl", state["epoch"])
            self.log(f"resuming {self.out} after epoch {state['epoch']} (best mIoU {format_score(best)} at "
                     f"epoch {best_epoch})")
        elif ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cfg.class_embeddings, self.out / "class_embeddings.safetensors")
            write_json(self.out / "config.json", cfg.to_json_dict())
            write_text_atomic(self.out / "metrics.jsonl", "")
        net: torch.nn.Module = model
        if ctx.distributed:
            # Frozen encoders (requires_grad False) are not reduced; their buffers never change.
            ddp = torch.nn.parallel.DistributedDataParallel
            params = inspect.signature(ddp).parameters
            no_sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            net = ddp(model, device_ids=device_ids, **{no_sync: False})
        predictor = TorchEpisodePredictor(model, ctx.device, amp)
        novel = fold_classes(cfg.fold)
        with self._progress() as progress:
            for epoch in range(start, cfg.epochs + 1):
                t0 = time.perf_counter()
                losses = self._train_epoch(net, opt, scaler, epoch, amp, progress)
                t1 = time.perf_counter()
                val = evaluate(predictor, self.val_set, self.per_rank, class_ids=novel, workers=cfg.workers,
                               ctx=ctx, progress=progress)
                improved = val.miou > best
                if improved:
                    best, best_epoch = val.miou, epoch
                row = {
                    "epoch": epoch, **losses, "val_miou": val.miou, "val_fb_iou": val.fb_iou,
                    "val_per_class": {str(c): r["iou"] for c, r in val.per_class.items()},
                    "val_episodes": val.episodes,
                    "best_miou": best, "best_epoch": best_epoch, "lr": cfg.lr,
                    "train_seconds": t1 - t0, "val_seconds": val.seconds, "seconds": time.perf_counter() - t0,
                }
                history.append(row)
                if ctx.is_main:
                    if improved:
                        self._save_best(model, epoch, val.miou, val.fb_iou)
                    with (self.out / "metrics.jsonl").open("a", encoding="utf-8") as fh:
                        fh.write(json.dumps(row, sort_keys=True) + "\n")
                    save_state(self.out, model, opt, scaler, cfg, epoch, best, best_epoch, history, enc_fp)
                barrier(ctx)
                self.log(
                    f"epoch {epoch}/{cfg.epochs}: loss {losses['train_loss']:.4f}, val mIoU "
                    f"{format_score(val.miou)}, FB-IoU {format_score(val.fb_iou)} ({row['seconds']:.1f} "
                    f"s){' *best*' if improved else ''}"
                )
        return TrainResult(self.out, best, best_epoch, len(history), history, model)

    def _train_epoch(
        self, net: torch.nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, epoch: int,
        amp: bool, progress: Any,
    ) -> dict[str, float]:
        ctx = self.ctx
        self.train_set.set_epoch(epoch)
        if isinstance(self.train_loader.sampler, DistributedSampler):
            self.train_loader.sampler.set_epoch(epoch)
        net.train()
        sums = np.zeros(4)  # loss, ce, prior (each x episodes), episodes
        task = progress.add_task(f"epoch {epoch}", total=len(self.train_loader))
        for batch in self.train_loader:
            loss, ce, prior = episode_loss(net, batch, ctx.device, amp)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            n = batch["query"].shape[0]
            sums += np.array([loss.item() * n, ce.item() * n, prior.item() * n, n])
            progress.advance(task)
        progress.remove_task(task)
        total = all_reduce_sum(ctx, sums)
        n = max(total[3], 1.0)
        return {"train_loss": total[0] / n, "ce_loss": total[1] / n, "prior_loss": total[2] / n,
                "episodes": int(total[3])}

    def _save_best(self, model: ICPDNet, epoch: int, miou: float, fb_iou: float) -> None:
        from icpd.model.checkpoint import save_checkpoint

        cfg = self.cfg
        with atomic_write(self.out / "best.pt") as tmp:
            torch.save(model.state_dict(), tmp)
        save_checkpoint(model, self.out / "best.safetensors", {
            "dataset": cfg.dataset, "fold": cfg.fold, "shot": cfg.shot, "epoch": epoch,
            "val_miou": f"{miou:.6f}", "val_fb_iou": f"{fb_iou:.6f}",
            "class_embeddings": str((self.out / "class_embeddings.safetensors").resolve()),
        })

    def _progress(self) -> Any:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        show = self.ctx.is_main and not self.cfg.quiet and self.console.is_terminal
        return Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=self.console, disable=not show, transient=True,
        )


def episode_loss(
    net: torch.nn.Module, batch: dict[str, Any], device: torch.device, amp: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scale-weighted pixel cross-entropy + prior loss of a batch of episodes.

    Returns:
        ``(total, cross_entropy, prior_loss)`` scalars; the CE is ``mean(CE_pixel * scale_weights)``.
    """
    names = ("query", "support_images", "support_masks", "class_embeddings", "query_mask", "scale_weights")
    q, s, m, e, target, weights = (batch[k].to(device, non_blocking=True) for k in names)
    with autocast(device, amp):
        out = net(q, s, m, e, return_intermediates=True)
    ce = (F.cross_entropy(out["logits"].float(), target.long(), reduction="none") * weights).mean()
    prior = out["prior_loss"].float()
    return ce + prior, ce.detach(), prior.detach()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
