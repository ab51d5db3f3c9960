"""Training state of :mod:`icpd.training.train`: what a run saves after every epoch and ``--resume`` reads.

``last.safetensors`` holds the tensors (trainable weights, Adam moments, RNG states; no pickle) and
``last.json`` the rest (epoch, scores, config, history, the frozen encoders' fingerprint), format
``icpd-train-state`` v1. The JSON is written second and commits the pair: both carry the epoch, so a run
cut mid-save is refused instead of resumed from mismatched halves. A resume continues bit-exactly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from icpd.artifacts.formats import ArtifactFormat, read_json
from icpd.errors import ParamError, arg
from icpd.io.atomic import atomic_write, write_text_atomic
from icpd.io.safetensors_order import sort_metadata
from icpd.model.icpd_net import ICPDNet

# Format of last.json; a reader refuses newer versions and files missing these keys.
STATE_FORMAT = "icpd-train-state"
STATE_VERSION = 1
_STATE = ArtifactFormat(STATE_FORMAT, STATE_VERSION, "training state",
                        f"start the run afresh without {arg('resume', True)}",
                        required=("epoch", "config", "encoder_fingerprint", "optimizer", "scaler", "rng"))
TRAINABLE = ("priorlearner", "hpn_learner")  # submodules the optimiser updates
ENCODERS = ("backbone", "cross_modal_visual_backbone")  # updated too with train_encoders (tiny preset)
# Config fields that change what a run computes: a resumed run must agree on all of them.
RESULT_FIELDS = (
    "dataset", "root", "fold", "shot", "preset", "class_embeddings", "clip_weights", "backbone_weights",
    "checkpoint", "batch_size", "lr", "episodes_per_epoch", "val_episodes", "seed", "train_encoders",
)


class RunConfig(Protocol):
    """What the state needs of :class:`icpd.training.train.TrainConfig` (typed here without importing it)."""

    epochs: int

    def to_json_dict(self) -> dict[str, Any]: ...


def fingerprint_encoders(model: ICPDNet) -> str:
    """Fingerprint of the weights the optimiser does not update: a resume must find the same ones."""
    from icpd.model.checkpoint import fingerprint

    frozen = {k: v for k, v in model.state_dict().items() if not k.startswith(trainable_prefixes(model))}
    return fingerprint(frozen, model.preset)


def trainable_prefixes(model: ICPDNet) -> tuple[str, ...]:
    """State-dict prefixes of what the optimiser updates (and the training state stores)."""
    return TRAINABLE + ENCODERS if model.encoders_trainable else TRAINABLE


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented, key-sorted JSON, written atomically (``last.json``, ``config.json``)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_state(
    out: Path, model: ICPDNet, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, cfg: RunConfig,
    epoch: int, best: float, best_epoch: int, history: list[dict[str, Any]], encoder_fingerprint: str,
) -> None:
    """Write ``last.safetensors`` then ``last.json`` (the JSON commits the pair: same ``epoch``)."""
    from safetensors.torch import save_file

    prefixes = trainable_prefixes(model)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()
               if k.startswith(prefixes)}
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
    write_json(out / "last.json", {
        "format": STATE_FORMAT, "format_version": STATE_VERSION, "epoch": epoch, "best_miou": best,
        "best_epoch": best_epoch,
        "config": cfg.to_json_dict(), "history": history, "encoder_fingerprint": encoder_fingerprint,
        "optimizer": {"param_groups": sd["param_groups"], "state_keys": state_keys},
        "scaler": scaler.state_dict(),
        "rng": {"numpy": [np_name, int(np_pos), int(np_gauss), float(np_cached)],
                "python": [py_version, list(py_state), py_gauss]},
    })


def load_state(
    out: Path, model: ICPDNet, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, cfg: RunConfig,
    encoder_fingerprint: str,
) -> dict[str, Any]:
    """Restore what :func:`save_state` wrote into ``model``/``opt``/``scaler`` and the RNGs.

    Returns:
        The JSON part (``epoch``, ``best_miou``, ``best_epoch``, ``history``, ...).

    Raises:
        ParamError (a ValueError, about ``resume``): the files disagree with each other or with ``cfg`` /
            the model's encoders.
    """
    from safetensors.torch import load_file, safe_open

    meta = read_json(out / "last.json", _STATE, ParamError)
    stored, given = meta["config"], cfg.to_json_dict()
    diff = [f"{k}: run {stored.get(k)!r}, now {given[k]!r}" for k in RESULT_FIELDS
            if stored.get(k) != given[k]]
    resume = arg("resume", True)
    if diff:
        raise ParamError(f"{resume}: options differ from the run in {out}: " + "; ".join(diff)
                         + ". Pass the run's options")
    if meta["epoch"] >= cfg.epochs:
        raise ParamError(f"{resume}: the run in {out} already finished {meta['epoch']} epochs; pass "
                         f"{arg('epochs')} above that")
    if meta["encoder_fingerprint"] != encoder_fingerprint:
        raise ParamError(
            f"{resume}: the frozen encoder weights differ from the run in {out}; pass the same "
            f"{arg('clip_weights')} / {arg('backbone_weights')} / {arg('checkpoint')} files"
        )
    path = out / "last.safetensors"
    with safe_open(str(path), framework="pt") as f:
        tensor_epoch = (f.metadata() or {}).get("epoch")
    if tensor_epoch != str(meta["epoch"]):
        raise ValueError(f"{path} (epoch {tensor_epoch}) and last.json (epoch {meta['epoch']}) disagree: the "
                         "run was cut mid-save")
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
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g
              for g in meta["optimizer"]["param_groups"]]
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


def trim_log(path: Path, epoch: int) -> None:
    """Drop log lines past ``epoch`` (a crash after the log line but before the state was saved)."""
    if path.is_file():
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        kept = [ln for ln in lines if json.loads(ln)["epoch"] <= epoch]
        write_text_atomic(path, "".join(ln + "\n" for ln in kept))
