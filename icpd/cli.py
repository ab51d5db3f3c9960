"""The ``icpd`` command line. Thin: each command parses options and calls one library function."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from icpd.commands import bench, data, deploy, evaluate, infer, train, trt, weights
from icpd.commands.common import PRESET_HELP, fail, out, preset_callback
from icpd.config import get_preset, list_presets

app = typer.Typer(
    name="icpd",
    help="Deploy ICPD-Net few-shot segmentation of remote-sensing imagery: export, cache, build, infer, bench.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def info() -> None:
    """Presets, installed backends, library versions and devices."""
    from icpd.runtime.environment import describe

    env = describe()
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


@app.command("convert-checkpoint")
def convert_checkpoint_cmd(
    src: Path = typer.Argument(..., help="The authors' checkpoint (.pt state dict), e.g. 1_shot_0_fold_ISAID.pt."),
    out_path: Path = typer.Option(..., "--out", "-o", help="Output .safetensors file (a .json sidecar is written beside it)."),
    preset: str = typer.Option("paper", callback=preset_callback, help=PRESET_HELP),
    shot: int | None = typer.Option(None, help="Shots the checkpoint was trained for (recorded in the metadata)."),
) -> None:
    """Authors' .pt -> safetensors + JSON metadata with the model fingerprint."""
    from icpd.model.checkpoint import CheckpointError, convert_checkpoint

    try:
        meta = convert_checkpoint(src, out_path, preset=preset, shot=shot)
    except (CheckpointError, ValueError) as e:
        fail(e)
    out.print(f"wrote {out_path} (fingerprint {meta['fingerprint'][:16]}...)")


@app.command("embed-text")
def embed_text_cmd(
    clip_weights: Path = typer.Option(..., help="Full open_clip CLIP checkpoint (e.g. RemoteCLIP-ViT-L-14.pt)."),
    classes: str = typer.Option(..., help="Comma-separated class names in class-id order, e.g. 'ship,storage tank'."),
    out_path: Path = typer.Option(..., "--out", "-o", help="Output .safetensors file."),
    preset: str = typer.Option("paper", callback=preset_callback, help=PRESET_HELP),
    normalize: bool = typer.Option(False, help="L2-normalise each embedding (the authors' iSAID file is; DLRSD is not)."),
) -> None:
    """Class names -> CLIP text embeddings (bare names, open_clip tokenizer, as the authors did)."""
    from icpd.model.checkpoint import CheckpointError
    from icpd.model.text import embed_text, save_class_embeddings

    try:
        emb = embed_text(clip_weights, classes.split(","), preset=preset, normalize=normalize)
        save_class_embeddings(out_path, emb)
    except (CheckpointError, ValueError) as e:
        fail(e)
    out.print(f"wrote {out_path}: {len(emb.classes)} classes x {emb.embeddings.shape[1]}")


@app.command()
def predict(
    checkpoint: Path = typer.Option(..., help="ICPD-Net checkpoint: the authors' .pt or icpd .safetensors."),
    query: Path = typer.Option(..., help="Query image (PNG/JPEG/TIFF)."),
    support: list[Path] = typer.Option(..., help="Support image; repeat for K shots."),
    mask: list[Path] = typer.Option(..., help="Support mask (0/1 or 0/255), one per --support, same order."),
    class_embeddings: Path = typer.Option(..., help="Class embeddings (.safetensors from `icpd embed-text`)."),
    target_class: str = typer.Option(..., help="Target class name (or row index) in the class embeddings."),
    out_dir: Path = typer.Option(Path("icpd-predict"), "--out", "-o", help="Output folder."),
    preset: str | None = typer.Option(None, callback=preset_callback, help=PRESET_HELP + " Default: from the checkpoint, else paper."),
    threshold: float = typer.Option(0.5, min=0.0, max=1.0, help="Foreground probability threshold."),
) -> None:
    """Segment one query image with PyTorch (eager): writes <query>_mask.png and <query>_overlay.png."""
    from icpd.engine.predict import predict_files
    from icpd.model.checkpoint import load_checkpoint

    try:
        model = load_checkpoint(checkpoint, preset=preset)
        res = predict_files(model, query, support, mask, class_embeddings, target_class, out_dir, threshold)
    except ValueError as e:
        fail(e)
    out.print(f"wrote {res.mask} and {res.overlay} ({res.foreground_fraction:.1%} foreground, {res.seconds:.2f} s)")


# The command modules, in the order `icpd --help` lists their commands (explicit: nothing is
# discovered at import).
COMMAND_MODULES = (deploy, infer, trt, bench, evaluate, train, data, weights)
for _module in COMMAND_MODULES:
    _module.register(app)


def main() -> None:
    """The ``icpd`` console script: ``app`` in a process of its own, whose ONNX Runtime sessions
    share one thread pool (``icpd.runtime.backends.ort.share_thread_pool``)."""
    from icpd.runtime.backends.ort import share_thread_pool

    share_thread_pool()
    app()


if __name__ == "__main__":
    main()
