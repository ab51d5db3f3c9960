"""Two gloo processes (torchrun's environment, spawned here): gradients are averaged over ranks,
both ranks end identical, only rank 0 writes, and the result matches one process with the whole batch."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from rich.console import Console
from safetensors.torch import load_file

from icpd.data import synthesize
from icpd.model.text import ClassEmbeddings, save_class_embeddings
from icpd.training.train import TrainConfig, train
from icpd.training.train_state import TRAINABLE


def _config(root: Path, emb: Path, out: Path) -> TrainConfig:
    return TrainConfig(
        "isaid5i", root, 0, 1, emb, out, preset="tiny", epochs=1, batch_size=4, lr=1e-3,
        episodes_per_epoch=8, val_episodes=6, seed=2, quiet=True,
    )


def _worker(rank: int, world: int, port: int, root: str, emb: str, out: str, dump: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    result = train(_config(Path(root), Path(emb), Path(out)), Console(stderr=True, quiet=True))
    state = {k: v for k, v in result.model.state_dict().items() if k.startswith(TRAINABLE)}
    torch.save({"state": state, "miou": torch.tensor(result.best_miou, dtype=torch.float64)},
               Path(dump) / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_run(tmp_path: Path):
    root = tmp_path / "iSAID-5i"
    synthesize(root, "isaid5i", 30, seed=2, size=128)
    emb = save_class_embeddings(
        tmp_path / "emb.safetensors",
        ClassEmbeddings(torch.randn(15, 32, generator=torch.Generator().manual_seed(1)),
                        tuple(f"c{i}" for i in range(15))),
    )
    out, dump = tmp_path / "ddp", tmp_path / "dump"
    dump.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(root), str(emb), str(out), str(dump)), nprocs=2, join=True)

    r0 = torch.load(dump / "rank0.pt", weights_only=True)
    r1 = torch.load(dump / "rank1.pt", weights_only=True)
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])  # DDP kept the replicas in step
    assert r0["miou"] == r1["miou"]  # validation counts were summed over both shards
    # rank 0 alone wrote the run: one log line, one set of files
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    assert json.loads((out / "metrics.jsonl").read_text())["episodes"] == 8  # 2 ranks x 4 episodes
    assert sorted(p.name for p in out.iterdir()) == [
        "best.json", "best.pt", "best.safetensors", "class_embeddings.safetensors", "config.json", "last.json",
        "last.safetensors", "metrics.jsonl",
    ]
    # One process with the global batch of 4 sees the same episodes per step; the averaged DDP
    # gradient equals its gradient up to float summation order. Adam's first steps normalise
    # each gradient element (update ~ lr * sign), so compare the bulk tightly and bound the rest.
    single = train(_config(root, emb, tmp_path / "single"), Console(stderr=True, quiet=True))
    ref = {k: v for k, v in single.model.state_dict().items() if k.startswith(TRAINABLE)}
    diff = torch.cat([(r0["state"][k] - ref[k]).abs().flatten() for k in ref])
    assert (diff <= 1e-5).float().mean() > 0.99
    assert diff.max() <= 2 * 1e-3 * 2  # at most 2 steps of lr each way
    saved = load_file(str(out / "last.safetensors"))
    assert all(torch.equal(saved[f"model.{k}"], r0["state"][k]) for k in ref)
