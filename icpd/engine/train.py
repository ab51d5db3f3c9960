"""Episodic training of ICPD-Net's prior learner and decoder (encoders frozen), resumable, DDP-ready.

The tiny preset trains its encoders too (``train_encoders``, default on for it): it has no
pretrained weights, and its random encoders' similarity priors separate an object from its
surroundings barely better than chance (pixel AUC 0.55-0.71 on synthetic validation episodes), so
a frozen tiny network reaches a novel-class mIoU of only ~0.07-0.1. The paper presets keep the
authors' frozen encoders (and refuse ``train_encoders``).

One epoch = ``episodes_per_epoch`` random training episodes of the fold's base classes, then the
fold's validation episodes (novel classes) are scored. A run directory holds:

- ``best.pt``: ``torch.save(model.state_dict())`` of the best epoch by validation mIoU (the
  authors' layout), and ``best.safetensors`` (+ ``best.json``) of the same weights, icpd format;
- ``last.safetensors`` + ``last.json``: the training state after the latest epoch (trainable
  weights, Adam moments, RNG states as tensors; epoch, scores, config, history as JSON; no
  pickle), which ``resume=True`` continues from bit-exactly;
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

from icpd.engine.distributed import DistContext, all_reduce_sum, barrier, init_distributed, shutdown
from icpd.engine.evaluate import TorchEpisodePredictor, autocast, evaluate, make_dataset, spread_subset
from icpd.engine.metrics import format_score
from icpd.io.artifacts import ArtifactFormat, read_json
from icpd.io.atomic import atomic_write, write_text_atomic
from icpd.io.safetensors_order import sort_metadata
from icpd.model.icpd_net import ICPDNet

STATE_FORMAT = "icpd-train-state"
STATE_VERSION = 1
_STATE = ArtifactFormat(STATE_FORMAT, STATE_VERSION, "training state", "start the run afresh without --resume",
                        required=("epoch", "config", "encoder_fingerprint", "optimizer", "scaler", "rng"))
TRAINABLE = ("priorlearner", "hpn_learner")  # submodules the optimiser updates
ENCODERS = ("backbone", "cross_modal_visual_backbone")  # updated too with train_encoders (tiny preset)
# Config fields that change what a run computes: a resumed run must agree on all of them.
RESULT_FIELDS = (
    "dataset", "root", "fold", "shot", "preset", "class_embeddings", "clip_weights", "backbone_weights",
    "checkpoint", "batch_size", "lr", "episodes_per_epoch", "val_episodes", "seed", "train_encoders",
)


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
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(c, name)}")
    if not c.lr > 0:
        raise ValueError(f"--lr must be > 0, got {c.lr}")
    if c.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {c.workers}")
    if c.train_encoders and c.preset not in (None, "tiny"):
        raise ValueError(f"--train-encoders is for the tiny preset only; preset {c.preset!r} keeps the authors' frozen encoders")


class _Trainer:
    def __init__(self, config: TrainConfig, ctx: DistContext, console: Any) -> None:
        self.cfg, self.ctx, self.console = config, ctx, console
        self.out = Path(config.out)
        if config.batch_size % ctx.world_size:
            raise ValueError(
                f"--batch-size {config.batch_size} must be a multiple of the {ctx.world_size} processes "
                "(it is the global batch, split evenly over ranks)"
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
            raise ValueError(f"--resume: {state} not found; {self.out} holds no run to resume (drop --resume)")
        if not self.cfg.resume and state.is_file():
            raise ValueError(f"--out {self.out} already holds a run; pass --resume to continue it, or choose another --out")

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
            raise ValueError(
                f"--train-encoders is for the tiny preset only; preset {model.preset.name!r} keeps the authors' frozen "
                "encoders (pass --clip-weights / --backbone-weights)"
            )
        if cfg.train_encoders or (cfg.train_encoders is None and tiny):
            model.set_encoders_trainable(True)
            self.log("tiny preset: the encoders train with the prior learner and decoder (--freeze-encoders: keep them fixed)")
        elif cfg.checkpoint is None:
            missing = [n for n, w in (("--clip-weights", cfg.clip_weights), ("--backbone-weights", cfg.backbone_weights)) if w is None]
            if missing:
                self.log(
                    f"[bold yellow]warning:[/] no {' / '.join(missing)}: those frozen encoders keep random weights. "
                    "Fine for tests and smoke runs, useless for accuracy; pass RemoteCLIP and ImageNet weights.",
                    force=True,
                )
        return model

    def _loaders(self, emb: torch.Tensor, preset: Any) -> None:
        cfg, ctx = self.cfg, self.ctx
        self.train_set = make_dataset(cfg.dataset, cfg.root, cfg.fold, "trn", cfg.shot, emb, preset, cfg.seed, cfg.episodes_per_epoch)
        val = make_dataset(cfg.dataset, cfg.root, cfg.fold, "val", cfg.shot, emb, preset, cfg.seed)
        self.val_set = spread_subset(val, cfg.val_episodes)
        # Episodes are random by (seed, epoch, index) already: no shuffling. Workers are not
        # persistent so each epoch's workers see set_epoch().
        sampler = DistributedSampler(self.train_set, ctx.world_size, ctx.rank, shuffle=False) if ctx.distributed else None
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
        enc_fp = _encoder_fingerprint(model)
        history: list[dict[str, Any]] = []
        best, best_epoch, start = -1.0, 0, 1
        if cfg.resume:
            state = load_state(self.out, model, opt, scaler, cfg, enc_fp)
            history, best, best_epoch, start = state["history"], state["best_miou"], state["best_epoch"], state["epoch"] + 1
            if ctx.is_main:
                _trim_log(self.out / "metrics.jsonl", state["epoch"])
            self.log(f"resuming {self.out} after epoch {state['epoch']} (best mIoU {format_score(best)} at epoch {best_epoch})")
        elif ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cfg.class_embeddings, self.out / "class_embeddings.safetensors")
            _write_json(self.out / "config.json", cfg.to_json_dict())
            write_text_atomic(self.out / "metrics.jsonl", "")
        net: torch.nn.Module = model
        if ctx.distributed:
            # Frozen encoders (requires_grad False) are not reduced; their buffers never change.
            ddp = torch.nn.parallel.DistributedDataParallel
            no_sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters else "broadcast_buffers"
            net = ddp(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None, **{no_sync: False})
        predictor = TorchEpisodePredictor(model, ctx.device, amp)
        novel = fold_classes(cfg.fold)
        with self._progress() as progress:
            for epoch in range(start, cfg.epochs + 1):
                t0 = time.perf_counter()
                losses = self._train_epoch(net, opt, scaler, epoch, amp, progress)
                t1 = time.perf_counter()
                val = evaluate(predictor, self.val_set, self.per_rank, class_ids=novel, workers=cfg.workers, ctx=ctx, progress=progress)
                improved = val.miou > best
                if improved:
                    best, best_epoch = val.miou, epoch
                row = {
                    "epoch": epoch, **losses, "val_miou": val.miou, "val_fb_iou": val.fb_iou,
                    "val_per_class": {str(c): r["iou"] for c, r in val.per_class.items()}, "val_episodes": val.episodes,
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
                    f"epoch {epoch}/{cfg.epochs}: loss {losses['train_loss']:.4f}, val mIoU {format_score(val.miou)}, "
                    f"FB-IoU {format_score(val.fb_iou)} ({row['seconds']:.1f} s){' *best*' if improved else ''}"
                )
        return TrainResult(self.out, best, best_epoch, len(history), history, model)

    def _train_epoch(
        self, net: torch.nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, epoch: int, amp: bool,
        progress: Any,
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
        return {"train_loss": total[0] / n, "ce_loss": total[1] / n, "prior_loss": total[2] / n, "episodes": int(total[3])}

    def _save_best(self, model: ICPDNet, epoch: int, miou: float, fb_iou: float) -> None:
        from icpd.model.checkpoint import save_checkpoint

        cfg = self.cfg
        with atomic_write(self.out / "best.pt") as tmp:
            torch.save(model.state_dict(), tmp)
        save_checkpoint(model, self.out / "best.safetensors", {
            "dataset": cfg.dataset, "fold": cfg.fold, "shot": cfg.shot, "epoch": epoch, "val_miou": f"{miou:.6f}",
            "val_fb_iou": f"{fb_iou:.6f}", "class_embeddings": str((self.out / "class_embeddings.safetensors").resolve()),
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


# -- training state: tensors in safetensors, the rest in JSON -------------------------------------
def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _encoder_fingerprint(model: ICPDNet) -> str:
    from icpd.model.checkpoint import fingerprint

    frozen = {k: v for k, v in model.state_dict().items() if not k.startswith(trainable_prefixes(model))}
    return fingerprint(frozen, model.preset)


def trainable_prefixes(model: ICPDNet) -> tuple[str, ...]:
    """State-dict prefixes of what the optimiser updates (and the training state stores)."""
    return TRAINABLE + ENCODERS if model.encoders_trainable else TRAINABLE


def _write_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_state(
    out: Path, model: ICPDNet, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, cfg: TrainConfig,
    epoch: int, best: float, best_epoch: int, history: list[dict[str, Any]], encoder_fingerprint: str,
) -> None:
    """Write ``last.safetensors`` then ``last.json`` (the JSON commits the pair: same ``epoch``)."""
    from safetensors.torch import save_file

    prefixes = trainable_prefixes(model)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k.startswith(prefixes)}
    sd = opt.state_dict()
    state_keys: dict[str, list[str]] = {}
    for idx, st in sd["state"].items():
        state_keys[str(idx)] = sorted(st)
        for name, value in st.items():
            tensors[f"optim.{idx}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_name, np_keys, np_pos, np_gauss, np_cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(np_keys, dtype=np.int64))
    py_version, py_state, py_gauss = random.getstate()
    with atomic_write(out / "last.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": STATE_FORMAT, "epoch": str(epoch)})
        sort_metadata(tmp)  # reproducible bytes (save_file's metadata order varies per process)
    _write_json(out / "last.json", {
        "format": STATE_FORMAT, "format_version": STATE_VERSION, "epoch": epoch, "best_miou": best, "best_epoch": best_epoch,
        "config": cfg.to_json_dict(), "history": history, "encoder_fingerprint": encoder_fingerprint,
        "optimizer": {"param_groups": sd["param_groups"], "state_keys": state_keys},
        "scaler": scaler.state_dict(),
        "rng": {"numpy": [np_name, int(np_pos), int(np_gauss), float(np_cached)], "python": [py_version, list(py_state), py_gauss]},
    })


def load_state(
    out: Path, model: ICPDNet, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, cfg: TrainConfig,
    encoder_fingerprint: str,
) -> dict[str, Any]:
    """Restore what :func:`save_state` wrote into ``model``/``opt``/``scaler`` and the RNGs.

    Returns:
        The JSON part (``epoch``, ``best_miou``, ``best_epoch``, ``history``, ...).

    Raises:
        ValueError: the files disagree with each other or with ``cfg`` / the model's encoders.
    """
    from safetensors.torch import load_file, safe_open

    meta = read_json(out / "last.json", _STATE, ValueError)
    stored, given = meta["config"], cfg.to_json_dict()
    diff = [f"{k}: run {stored.get(k)!r}, now {given[k]!r}" for k in RESULT_FIELDS if stored.get(k) != given[k]]
    if diff:
        raise ValueError(f"--resume: options differ from the run in {out}: " + "; ".join(diff) + ". Pass the run's options")
    if meta["epoch"] >= cfg.epochs:
        raise ValueError(f"--resume: the run in {out} already finished {meta['epoch']} epochs; pass --epochs above that")
    if meta["encoder_fingerprint"] != encoder_fingerprint:
        raise ValueError(
            f"--resume: the frozen encoder weights differ from the run in {out}; pass the same "
            "--clip-weights / --backbone-weights / --checkpoint files"
        )
    path = out / "last.safetensors"
    with safe_open(str(path), framework="pt") as f:
        tensor_epoch = (f.metadata() or {}).get("epoch")
    if tensor_epoch != str(meta["epoch"]):
        raise ValueError(f"{path} (epoch {tensor_epoch}) and last.json (epoch {meta['epoch']}) disagree: the run was cut mid-save")
    tensors = load_file(str(path))
    own = model.state_dict()
    trainable = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    missing = sorted(k for k in own if k.startswith(trainable_prefixes(model)) and k not in trainable)
    if missing or set(trainable) - set(own):
        raise ValueError(f"{path}: trainable weights do not match this model (missing {missing[:5]})")
    model.load_state_dict({**own, **trainable}, strict=True)
    opt_state = {
        int(idx): {name: tensors[f"optim.{idx}.{name}"] for name in names}
        for idx, names in meta["optimizer"]["state_keys"].items()
    }
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["optimizer"]["param_groups"]]
    opt.load_state_dict({"state": opt_state, "param_groups": groups})
    if meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    name, pos, has_gauss, cached = meta["rng"]["numpy"]
    np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, py_state, py_gauss = meta["rng"]["python"]
    random.setstate((version, tuple(py_state), py_gauss))
    return meta


def _trim_log(path: Path, epoch: int) -> None:
    """Drop log lines past ``epoch`` (a crash after the log line but before the state was saved)."""
    if path.is_file():
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        kept = [ln for ln in lines if json.loads(ln)["epoch"] <= epoch]
        write_text_atomic(path, "".join(ln + "\n" for ln in kept))
