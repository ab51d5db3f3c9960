"""``icpd train``: episodic training (prior learner + decoder; encoders frozen except for the tiny
preset, whose random encoders train too). Works under torchrun."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from icpd.commands.common import QuietOpt, console, fail, finite_number, out, workers_in_range


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        dataset: Annotated[str, typer.Option(help="isaid5i or dlrsd5i.")],
        root: Annotated[Path, typer.Option(help="Data set root.")],
        fold: Annotated[int, typer.Option(min=0, max=2, help="Held-out fold (its 5 classes "
                                                             "validate, the other 10 train).")],
        class_embeddings: Annotated[Path, typer.Option(help="Class embeddings (15 x D, class-id "
                                                            "order; `icpd embed-text`).")],
        out_dir: Annotated[Path, typer.Option("--out", "-o",
                                              help="Run directory (checkpoints, metrics.jsonl, state).")],
        shot: Annotated[int, typer.Option(min=1, help="Support images per episode.")] = 1,
        preset: Annotated[str | None, typer.Option(help="Model preset. Default: the checkpoint's, else paper.")] = None,
        clip_weights: Annotated[Path | None, typer.Option(help="open_clip/RemoteCLIP weights "
                                                               "for the CLIP tower.")] = None,
        backbone_weights: Annotated[Path | None, typer.Option(help="torchvision ImageNet weights for the "
                                                                   "backbone.")] = None,
        checkpoint: Annotated[Path | None, typer.Option(help="ICPD-Net checkpoint to fine-tune from.")] = None,
        epochs: Annotated[int, typer.Option(min=1, help="Epochs (authors: 100).")] = 100,
        batch_size: Annotated[int, typer.Option(min=1, help="Episodes per step over all processes (authors: 8).")] = 8,
        lr: Annotated[float, typer.Option(min=0.0, callback=finite_number,
                                          help="Adam learning rate (authors: 1e-4).")] = 1e-4,
        workers: Annotated[int, typer.Option(min=0, callback=workers_in_range,
                                             help="DataLoader workers per process.")] = 0,
        episodes_per_epoch: Annotated[int | None, typer.Option(min=1,
                                                               help="Default: one per training list line.")] = None,
        val_episodes: Annotated[int | None, typer.Option(min=1,
                                                         help="Validate on this many (evenly "
                                                              "spaced); default all.")] = None,
        seed: Annotated[int, typer.Option(help="Seed of initialisation, episodes and RNGs.")] = 0,
        device: Annotated[str, typer.Option(help="cpu or cuda (cuda:LOCAL_RANK under torchrun).")] = "cpu",
        amp: Annotated[bool, typer.Option("--amp/--no-amp", help="Autocast on CUDA (no effect on CPU).")] = True,
        resume: Annotated[bool, typer.Option(help="Continue the run in --out.")] = False,
        train_encoders: Annotated[bool | None, typer.Option(
            "--train-encoders/--freeze-encoders",
            help="Update the encoders too. Default: yes for the tiny preset (random encoders, no pretrained "
                 "weights), no otherwise; the paper presets refuse it.",
            show_default=False,
        )] = None,
        quiet: QuietOpt = False,
    ) -> None:
        """Train ICPD-Net on a fold; keep the best-by-validation-mIoU checkpoint (best.pt, best.safetensors).

        The tiny preset on a synthetic set (`icpd data synth`) in about 10 minutes on 2 cores: see the README's
        "A first hour" section for the options that get there."""
        from icpd.training.metrics import format_score
        from icpd.training.train import TrainConfig, train

        cfg = TrainConfig(
            dataset=dataset, root=root, fold=fold, shot=shot, class_embeddings=class_embeddings, out=out_dir,
            preset=preset, clip_weights=clip_weights, backbone_weights=backbone_weights, checkpoint=checkpoint,
            epochs=epochs, batch_size=batch_size, lr=lr, workers=workers, episodes_per_epoch=episodes_per_epoch,
            val_episodes=val_episodes, seed=seed, device=device, amp=amp, resume=resume, quiet=quiet,
            train_encoders=train_encoders,
        )
        try:
            result = train(cfg, console)
        except (ValueError, OSError) as e:
            fail(e)
        out.print(
            f"best val mIoU {format_score(result.best_miou)} at epoch {result.best_epoch}; "
            f"wrote {result.best_checkpoint} and {result.best_pt}", markup=False, highlight=False,
        )
