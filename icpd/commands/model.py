"""`icpd info`, `icpd convert-checkpoint`, `icpd embed-text` and `icpd predict` (PyTorch eager)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from icpd.commands.common import PRESET_HELP, fail, note, out, preset_callback


def info_cmd() -> None:
    """Presets, installed backends, library versions and devices. Exits 2 after the tables, with
    one line saying what to install, when torchvision does not fit the installed torch."""
    from rich.table import Table

    from icpd.commands.torch_check import check_torchvision
    from icpd.config import get_preset, list_presets
    from icpd.runtime.environment import describe

    env = describe()
    mismatch = check_torchvision()
    if mismatch is not None:
        env["torchvision"] = f"{env.get('torchvision')}: does not fit this torch (see the error line)"
    table = Table(title="presets")
    for col in ("name", "backbone", "input", "CLIP", "embed dim", "description"):
        table.add_column(col)
    for name in list_presets():
        p = get_preset(name)
        clip = p.clip_model if isinstance(p.clip_model, str) else "custom config"
        table.add_row(name, p.backbone, f"{p.image_size}px", clip, str(p.embed_dim), p.description)
    out.print(table)
    t = Table(title="environment")
    t.add_column("item")
    t.add_column("value")
    for key, value in env.items():
        t.add_row(key, str(value))
    out.print(t)
    if mismatch is not None:
        fail(mismatch)


def convert_checkpoint_cmd(
    src: Annotated[Path, typer.Argument(help="The authors' checkpoint (.pt state dict), e.g. 1_shot_0_fold_ISAID.pt.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Output .safetensors file (a .json "
                                                               "sidecar is written beside it).")],
    preset: Annotated[str, typer.Option(callback=preset_callback, help=PRESET_HELP)] = "paper",
    shot: Annotated[int | None, typer.Option(help="Shots the checkpoint was trained for "
                                                  "(recorded in the metadata).")] = None,
) -> None:
    """Authors' .pt -> safetensors + JSON metadata with the model fingerprint."""
    from icpd.io import OutputPathError
    from icpd.model.checkpoint import CheckpointError, convert_checkpoint

    try:  # --out is claimed (writable, no other run writing it) before the checkpoint is read
        meta = convert_checkpoint(src, out_path, preset=preset, shot=shot)
    except (CheckpointError, ValueError, OutputPathError) as e:
        fail(e)
    out.print(f"wrote {out_path} (fingerprint {meta['fingerprint'][:16]}...)", markup=False, highlight=False)


def embed_text_cmd(
    clip_weights: Annotated[Path, typer.Option(help="Full open_clip CLIP checkpoint (e.g. RemoteCLIP-ViT-L-14.pt).")],
    classes: Annotated[str, typer.Option(help="Comma-separated class names in class-id "
                                              "order, e.g. 'ship,storage tank'.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Output .safetensors file.")],
    preset: Annotated[str, typer.Option(callback=preset_callback, help=PRESET_HELP)] = "paper",
    normalize: Annotated[bool, typer.Option(help="L2-normalise each embedding (the authors' "
                                                 "iSAID file is; DLRSD is not).")] = False,
) -> None:
    """Class names -> CLIP text embeddings (bare names, open_clip tokenizer, as the authors did)."""
    from icpd.io import OutputPathError
    from icpd.model.checkpoint import CheckpointError
    from icpd.model.text import embed_text_to_file

    try:  # --out is claimed (writable, no other run writing it) before the CLIP weights are read
        emb = embed_text_to_file(clip_weights, classes.split(","), out_path, preset=preset, normalize=normalize)
    except (CheckpointError, ValueError, OutputPathError) as e:
        fail(e)
    out.print(f"wrote {out_path}: {len(emb.classes)} classes x "
              f"{emb.embeddings.shape[1]}", markup=False, highlight=False)


def predict_cmd(
    checkpoint: Annotated[Path, typer.Option(help="ICPD-Net checkpoint: the authors' .pt or icpd .safetensors.")],
    query: Annotated[Path, typer.Option(help="Query image (PNG/JPEG/TIFF).")],
    support: Annotated[list[Path], typer.Option(help="Support image; repeat for K shots.")],
    mask: Annotated[list[Path], typer.Option(help="Support mask (0/1 or 0/255), one per --support, same order.")],
    class_embeddings: Annotated[Path, typer.Option(help="Class embeddings (.safetensors from `icpd embed-text`).")],
    target_class: Annotated[str, typer.Option(help="Target class name (or row index) in the class embeddings.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("icpd-predict"),
    preset: Annotated[str | None, typer.Option(callback=preset_callback,
                                               help=PRESET_HELP + " Default: from the checkpoint, else paper.")] = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Foreground where probability >= threshold "
                                                                    "(the rule of every icpd command).")] = 0.5,
) -> None:
    """Segment one query image with PyTorch (eager): writes <query>_mask.png and <query>_overlay.png."""
    from icpd.io import OutputPathError
    from icpd.training.predict import predict_files

    try:  # the outputs are claimed (writable, no other run writing them) before the checkpoint is read
        res = predict_files(checkpoint, query, support, mask, class_embeddings, target_class, out_dir, threshold,
                            preset=preset)
    except (ValueError, OutputPathError) as e:
        fail(e)
    for line in res.notes:  # what was done to the supports (upscaled), as cache-support says it
        note(line)
    out.print(f"wrote {res.mask} and {res.overlay} ({res.foreground_fraction:.1%} foreground, {res.seconds:.2f} s)",
              markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("info")(info_cmd)
    app.command("convert-checkpoint")(convert_checkpoint_cmd)
    app.command("embed-text")(embed_text_cmd)
    app.command("predict")(predict_cmd)
