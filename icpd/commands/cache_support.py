"""`icpd cache-support`: encode a class's supports once into a support cache file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from icpd.commands.common import BackendOpt, DeviceOpt, ModelDirOpt, QuietOpt, console, fail, out
from icpd.config import Backend


def cache_support_cmd(
    model: ModelDirOpt,
    class_name: Annotated[str, typer.Option(help="Name of the class (label in outputs).")],
    images: Annotated[list[Path], typer.Option("--image", "--images", help="Support image; repeat for K shots.")],
    masks: Annotated[list[Path], typer.Option("--mask", "--masks", help="Its mask (0/1 or 0/255); one per --image, same order.")],
    class_embeddings: Annotated[Path, typer.Option(help="Class embeddings (.safetensors from `icpd embed-text`).")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Support cache file to write (e.g. ship.support).")],
    target_class: Annotated[str | None, typer.Option(help="Row of the class in the embeddings (default: --class-name).")] = None,
    backend: BackendOpt = Backend.ORT,
    device: DeviceOpt = "cpu",
    quiet: QuietOpt = False,
) -> None:
    """Encode a class's support images once and cache what the matcher needs."""
    from icpd.export.model_dir import ModelDirError
    from icpd.io import read_image, read_mask
    from icpd.model.text import load_class_embeddings
    from icpd.runtime.predictor import Predictor

    if len(images) != len(masks):
        fail(ValueError(f"--image/--mask: {len(images)} images but {len(masks)} masks; give one mask per image"))
    spinner = console.status(f"encoding {len(images)} support image(s) of {class_name!r} ...")
    if not quiet and console.is_terminal:
        spinner.start()
    try:
        predictor = Predictor.load(model, backend=backend.value, device=device)
        emb = load_class_embeddings(class_embeddings, preset=predictor.preset).for_target(target_class or class_name)
        rasters = [read_image(p) for p in images]
        mask_arrays = [read_mask(m, like=r) for m, r in zip(masks, rasters)]
        support = predictor.encode_support([r.pixels for r in rasters], mask_arrays, class_name, emb)
        support.meta.update({"images": [p.name for p in images], "masks": [m.name for m in masks]})
        support.save(out_path)
    except (ValueError, ModelDirError) as e:
        fail(e)
    finally:
        spinner.stop()
    out.print(f"wrote {out_path}: class {class_name!r}, {support.shots} shot(s)", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("cache-support")(cache_support_cmd)
