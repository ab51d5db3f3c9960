"""Few-shot evaluation: foreground IoU per novel class, mIoU and FB-IoU over a fold's episodes.

The evaluator only needs an :class:`EpisodePredictor`, anything that maps a collated batch of
episodes to binary query masks. :class:`TorchEpisodePredictor` runs an :class:`ICPDNet` eagerly;
ONNX Runtime / TensorRT predictors plug in through the same protocol (``--backend``).

Counts follow the benchmark convention (see :mod:`icpd.training.metrics`): intersection and union
are summed over all episodes of a class before dividing; mIoU averages the fold's classes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from icpd.config import Backend, Preset
from icpd.errors import ParamError, arg
from icpd.runtime.backends.registry import names as backend_names
from icpd.runtime.backends.registry import resolve as resolve_backend
from icpd.training.distributed import DistContext, all_reduce_meter
from icpd.training.metrics import SegmentationMeter

DatasetName = Literal["isaid5i", "dlrsd5i"]
DATASETS: tuple[str, ...] = ("isaid5i", "dlrsd5i")
BACKENDS: tuple[str, ...] = backend_names()  # the registry's; ort and trt run an exported model dir (--model)


@runtime_checkable
class EpisodePredictor(Protocol):
    """Maps a collated batch of episodes to predicted query masks."""

    def predict_episodes(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """``batch``: the :class:`~icpd.data.FewShotDataset` keys, batched (``query`` (B, 3, S, S),
        ``support_images`` (B, K, 3, S, S), ``support_masks`` (B, K, S, S), ``class_embeddings``
        (B, 15, D), ...). Returns ``(B, S, S)`` bool foreground masks of the target class."""
        ...


class TorchEpisodePredictor:
    """Eager PyTorch: argmax over the two logits of :class:`~icpd.model.icpd_net.ICPDNet`.

    Args:
        model: the network (switched to eval mode for each call, and restored).
        device: where the batch is moved before the forward pass.
        amp: autocast to bfloat16/float16 on CUDA (ignored on CPU).
    """

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", amp: bool = False) -> None:
        self.model = model
        self.device = torch.device(device)
        self.amp = amp and self.device.type == "cuda"

    def predict_episodes(self, batch: Mapping[str, Any]) -> torch.Tensor:
        if "class_embeddings" not in batch:
            raise ValueError("the episodes carry no class_embeddings; build the data set with "
                             "class_embeddings=...")
        names = ("query", "support_images", "support_masks", "class_embeddings")
        q, s, m, e = (batch[k].to(self.device, non_blocking=True) for k in names)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), autocast(self.device, self.amp):
                logits = self.model(q, s, m, e)
        finally:
            self.model.train(was_training)
        return logits.argmax(dim=1) == 1


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bfloat16 autocast where the GPU supports it, else float16; a no-op when disabled."""
    if device.type != "cuda" or not enabled:
        return torch.autocast(device_type=device.type, enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def build_predictor(backend: str, model: torch.nn.Module, device: str | torch.device = "cpu",
                    amp: bool = False) -> EpisodePredictor:
    """The eager PyTorch predictor of a network; exported models go through ``model_dir_predictor``."""
    kind = resolve_backend(backend)  # a name or an alias; an unknown one: the registry's message
    if kind is not Backend.TORCH:
        raise ParamError(f"{arg('backend', kind.value)}: evaluates an exported model; pass "
                         f"{arg('model_dir', 'MODEL_DIR')} (from `icpd export`)")
    return TorchEpisodePredictor(model, device, amp)


def model_dir_predictor(model_dir: str | os.PathLike[str], backend: str, device: str = "cpu",
                        engine_dir: str | os.PathLike[str] | None = None) -> EpisodePredictor:
    """An exported model (any ``Predictor`` backend: torch, ort, trt) as an episode predictor."""
    from icpd.runtime.predictor import Predictor
    from icpd.training.episodes import ExportedEpisodePredictor

    predictor = Predictor.load(model_dir, backend=backend, device=device, engine_dir=engine_dir)
    return ExportedEpisodePredictor(predictor)


@dataclass
class EvalResult:
    """Scores of one evaluation run."""

    miou: float  # mean foreground IoU over class_ids
    fb_iou: float  # mean of pooled foreground and background IoU
    class_ids: list[int]  # classes averaged into miou (the fold's novel classes that had episodes)
    per_class: dict[int, dict[str, Any]]  # id -> iou, intersection, union, episodes, name
    episodes: int  # episodes scored
    seconds: float  # wall time of the loop (data loading included)
    missing_classes: list[int] = field(default_factory=list)  # requested classes without episodes

    @property
    def episodes_per_second(self) -> float:
        return self.episodes / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["per_class"] = {str(c): row for c, row in self.per_class.items()}
        d["episodes_per_second"] = self.episodes_per_second
        return d

    def to_json(self, **extra: Any) -> str:
        return json.dumps({**self.to_dict(), **extra}, indent=2, sort_keys=True)

    def write_json(self, path: str | os.PathLike[str], **extra: Any) -> Path:
        """Write :meth:`to_json` atomically (temporary name, then rename)."""
        from icpd.io.atomic import write_text_atomic

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text_atomic(path, self.to_json(**extra) + "\n")


def base_dataset(dataset: Dataset) -> Dataset:
    """The data set under any number of :class:`~torch.utils.data.Subset` wrappers."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


def spread_subset(dataset: Dataset, n: int | None) -> Dataset:
    """``n`` episodes evenly spaced over ``dataset`` (lists are often grouped by class), or all."""
    total = len(dataset)  # type: ignore[arg-type]
    if n is None or n >= total:
        return dataset
    if n < 1:
        raise ValueError(f"validation episodes must be >= 1, got {n}")
    idx = np.unique(np.linspace(0, total - 1, n).round().astype(np.int64)).tolist()
    return Subset(dataset, idx)


def evaluate(
    predictor: EpisodePredictor,
    dataset: Dataset,
    batch_size: int = 8,
    *,
    class_ids: Sequence[int] | None = None,
    workers: int = 0,
    ctx: DistContext | None = None,
    progress: Any = None,
) -> EvalResult:
    """Score ``predictor`` on every episode of ``dataset``.

    Args:
        predictor: see :class:`EpisodePredictor`.
        dataset: validation episodes (a :class:`~icpd.data.FewShotDataset` or a Subset of one).
        batch_size: episodes per predictor call.
        class_ids: classes averaged into mIoU; default the data set's classes (a fold's novel
            classes for ``split="val"``). Classes without episodes are left out and reported
            in ``missing_classes``.
        workers: DataLoader worker processes.
        ctx: in a ``torchrun`` job each rank scores every ``world_size``-th episode and the
            counts are summed over ranks (every rank gets the same result).
        progress: optional ``rich.progress.Progress`` to show a bar in.
    """
    base = base_dataset(dataset)
    names = getattr(base, "class_names", None)
    meter = SegmentationMeter(len(names) if names else 15, names)
    wanted = list(class_ids) if class_ids is not None else list(getattr(base, "classes", range(1, 16)))
    shard = dataset
    if ctx is not None and ctx.distributed:
        shard = Subset(dataset, list(range(ctx.rank, len(dataset), ctx.world_size)))  # type: ignore[arg-type]
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=workers)
    task = progress.add_task("validate", total=len(shard)) if progress is not None else None  # type: ignore[arg-type]
    t0 = time.perf_counter()
    for batch in loader:
        pred = predictor.predict_episodes(batch)
        gt = batch["query_mask"]
        if tuple(pred.shape) != tuple(gt.shape):
            raise ValueError(f"predictor returned masks of shape {tuple(pred.shape)}; expected "
                             f"{tuple(gt.shape)} (B, H, W)")
        meter.update(pred.bool().cpu(), gt.bool(), batch["class_id"])
        if task is not None:
            progress.advance(task, gt.shape[0])
    if ctx is not None:
        all_reduce_meter(ctx, meter)
    seconds = time.perf_counter() - t0
    if task is not None:
        progress.remove_task(task)
    seen = set(meter.seen_classes())
    used = [c for c in wanted if c in seen]
    if not used:
        raise ValueError(f"no episodes of classes {wanted} in the data set; nothing to score")
    return EvalResult(
        miou=meter.miou(used),
        fb_iou=meter.fb_iou(),
        class_ids=used,
        per_class={c: row for c, row in meter.per_class().items() if c in used},
        episodes=int(meter.episodes.sum()),
        seconds=seconds,
        missing_classes=[c for c in wanted if c not in seen],
    )


# -- the `icpd eval` pipeline -------------------------------------------------------------------
def make_dataset(
    name: str,
    root: str | os.PathLike[str],
    fold: int,
    split: Literal["trn", "val"],
    shot: int,
    class_embeddings: torch.Tensor,
    preset: Preset | str,
    seed: int = 0,
    episodes_per_epoch: int | None = None,
) -> Dataset:
    """An iSAID-5i or DLRSD-5i episodic data set (see :mod:`icpd.data`)."""
    from icpd.data import DLRSD5i, ISAID5i

    if name not in DATASETS:
        raise ParamError(f"{arg('dataset', repr(name))}: unknown; choose one of {', '.join(DATASETS)}")
    cls = ISAID5i if name == "isaid5i" else DLRSD5i
    return cls(root, fold, split, shot, class_embeddings, preset, seed, episodes_per_epoch)


def checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The header metadata of an icpd safetensors checkpoint ({} for a .pt file). A missing file or a
    ``.safetensors`` without a readable header raises ``CheckpointError`` in ``load_checkpoint``'s words."""
    from safetensors import SafetensorError, safe_open

    from icpd.model.checkpoint import CheckpointError, is_safetensors

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: file not found; pass the path of a .pt or .safetensors "
                              "file")
    if not is_safetensors(path):
        if path.suffix == ".safetensors":
            raise CheckpointError(f"checkpoint {path}: not a safetensors file (no safetensors header; "
                                  "truncated, or another format under this name); re-export it, or rename a "
                                  "torch.save file to .pt")
        return {}
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except SafetensorError as e:
        raise CheckpointError(f"checkpoint {path}: not a readable safetensors file ({e}); "
                              "re-export it") from e


@dataclass
class EvalConfig:
    """What ``icpd eval`` needs."""

    dataset: str  # "isaid5i" or "dlrsd5i"
    root: Path  # data set root
    fold: int  # 0..2; its 5 classes are scored
    shot: int  # supports per episode
    checkpoint: Path | None  # authors' .pt or icpd .safetensors (or give model_dir)
    preset: str | None = None  # default: from the checkpoint, else "paper"
    class_embeddings: Path | None = None  # default: recorded in an icpd checkpoint by `icpd train`
    backend: str = "torch"  # predictor backend
    batch_size: int = 8  # episodes per forward pass
    workers: int = 0  # DataLoader workers
    device: str = "cpu"  # "cpu" or "cuda"
    amp: bool = False  # autocast on CUDA
    seed: int = 0  # episode sampling seed (supports, class-embedding order)
    episodes: int | None = None  # score only this many (evenly spaced) episodes
    model_dir: Path | None = None  # an exported model (`icpd export`), run by `backend`
    engine_dir: Path | None = None  # TensorRT engines (backend trt)


def run_evaluation(config: EvalConfig, progress: Any = None) -> EvalResult:
    """Load the checkpoint and the episodes of ``config``, then :func:`evaluate`."""
    from icpd.artifacts.model_dir import ModelDir
    from icpd.data import fold_classes
    from icpd.model.checkpoint import load_checkpoint
    from icpd.model.text import load_class_embeddings

    kind = resolve_backend(config.backend)  # an unknown name: the registry's message
    if (config.checkpoint is None) == (config.model_dir is None):
        raise ParamError(f"give {arg('checkpoint', 'C')} (PyTorch) or {arg('model_dir', 'MODEL_DIR')} (an "
                         "exported model), not both")
    if config.model_dir is None and kind is not Backend.TORCH:
        build_predictor(config.backend, torch.nn.Identity())  # raises: ort/trt need a model dir
    if config.model_dir is None:
        weights = config.checkpoint
    else:
        weights = ModelDir.open(config.model_dir).file("weights")
    emb_path = config.class_embeddings
    if emb_path is None:
        recorded = checkpoint_metadata(weights).get("class_embeddings")
        if not recorded:
            raise ParamError(
                f"{arg('class_embeddings')}: not given and {weights} records none; "
                "pass the class-embedding file the model was trained with"
            )
        emb_path = Path(recorded)
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParamError(f"{arg('device', 'cuda')}: no CUDA device is visible to PyTorch; use "
                         f"{arg('device', 'cpu')}")
    if config.model_dir is not None:
        preset = ModelDir.open(config.model_dir).preset
        predictor = model_dir_predictor(config.model_dir, config.backend, config.device, config.engine_dir)
    else:
        model = load_checkpoint(config.checkpoint, preset=config.preset, shot=config.shot)
        preset = model.preset
        model.to(device)
        predictor = build_predictor(config.backend, model, device, config.amp)
    emb = load_class_embeddings(emb_path, preset=preset).embeddings
    dataset = make_dataset(config.dataset, config.root, config.fold, "val", config.shot, emb, preset,
                           config.seed)
    dataset = spread_subset(dataset, config.episodes)
    return evaluate(
        predictor, dataset, config.batch_size, class_ids=fold_classes(config.fold), workers=config.workers,
        progress=progress,
    )


def result_table(result: EvalResult, title: str = "novel classes") -> Any:
    """A ``rich.table.Table``: one row per class, then mIoU and FB-IoU."""
    from rich.table import Table

    from icpd.training.metrics import format_score

    table = Table(title=title)
    for col, justify in (("class", "right"), ("name", "left"), ("IoU", "right"), ("episodes", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for c, row in result.per_class.items():
        table.add_row(str(c), str(row.get("name", "")), format_score(row['iou']), str(row["episodes"]))
    table.add_section()
    table.add_row("", "mIoU", format_score(result.miou), str(result.episodes))
    table.add_row("", "FB-IoU", format_score(result.fb_iou), "")
    return table
