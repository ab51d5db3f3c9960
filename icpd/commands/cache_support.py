"""`icpd cache-support`: encode a class's supports once into a support cache file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from icpd.commands.common import (
    BackendOpt,
    BandsOpt,
    DeviceOpt,
    ModelDirOpt,
    QuietOpt,
    fail,
    fail_os_error,
    note,
    out,
)
from icpd.config import Backend

if TYPE_CHECKING:
    import numpy as np

    from icpd.artifacts.support_cache import SupportSet
    from icpd.io import Raster


def _existing_class(path: Path) -> str:
    """' (class NAME)' for an existing support cache, '' for anything else: for the refusal message."""
    import json

    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return f" (a support cache of class {json.loads((f.metadata() or {})['icpd'])['class_name']!r})"
    except Exception:  # noqa: BLE001 - any unreadable file: the message just names it
        return ""


def cache_support_cmd(
    model: ModelDirOpt,
    class_name: Annotated[str, typer.Option(help="Name of the class (label in outputs).")],
    images: Annotated[list[Path], typer.Option("--image", "--images", help="Support image; repeat for K shots.")],
    class_embeddings: Annotated[Path, typer.Option(help="Class embeddings (.safetensors from `icpd embed-text` or "
                                                        "`icpd data synth`).")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Support cache file to write (e.g. ship.support).")],
    masks: Annotated[list[Path] | None, typer.Option("--mask", "--masks", help="Binary mask (0/1 or 0/255) of an "
                                                     "--image; one per --image, same order. Or use --label.")] = None,
    labels: Annotated[list[Path] | None, typer.Option("--label", help="Class-id label map of an --image (pixel value "
                                                      "= class id); one per --image, same order, with "
                                                      "--class-id.")] = None,
    class_id: Annotated[int | None, typer.Option(min=0, help="The class's pixel value in the --label files.")] = None,
    target_class: Annotated[str | None, typer.Option(help="Row of the class in the embeddings "
                                                          "(default: --class-name).")] = None,
    bands: BandsOpt = None,
    force: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
    backend: BackendOpt = Backend.ORT,
    device: DeviceOpt = "cpu",
    quiet: QuietOpt = False,
) -> None:
    """Encode a class's support images once and cache what the matcher needs (masks: --mask or --label + --class-id)."""
    from icpd.io import OutputPathError, ensure_writable
    from icpd.io.locks import exclusive_lock
    from icpd.runtime.validation import check_class_name, check_counts

    masks, labels = masks or [], labels or []
    if bool(masks) == bool(labels):
        fail("give the supports' masks: --mask for binary masks, or --label with --class-id for class-id label maps "
             "(one per --image, not both)")
    given, kind = (masks, "--mask") if masks else (labels, "--label")
    try:  # the library's checks, with its words: `Predictor.encode_support` refuses the same
        check_class_name(class_name)
    except ValueError as e:
        fail(f"--class-name: {e}")
    try:
        check_counts(len(images), len(given), "mask" if masks else "label map")
    except ValueError as e:
        fail(f"--image/{kind}: {e}")
    if labels and class_id is None:
        fail("--label needs --class-id N: the pixel value of the class in the label maps")
    if masks and class_id is not None:
        fail("--class-id goes with --label (class-id label maps); --mask files are binary already")
    if out_path.is_dir():
        fail(f"--out {out_path}: is a folder; name the support cache file, e.g. {out_path / (class_name + '.support')}")
    try:
        ensure_writable(out_path.parent, folder=True)  # before minutes of encoding, not after (save makes the folder)
    except OutputPathError as err:
        fail(err)
    try:
        # one run per --out, taken before any work: a second run is refused at once, --force or not
        with exclusive_lock(out_path, "cache-support"):
            if out_path.exists() and not force:
                fail(f"--out {out_path} exists{_existing_class(out_path)}; pass --force to replace it or choose "
                     "another file")
            support = _read_and_encode(model, class_name, images, given, class_id, class_embeddings, target_class,
                                       bands, backend, device, quiet)
            support.save(out_path, overwrite=force)  # without --force: never replaces a file made meanwhile
    except FileExistsError as e:
        if Path(e.filename or "") != out_path:
            fail_os_error(e)
        fail(f"--out {out_path}: created by another program while the supports were encoded; it was left as it is. "
             "Pass --force to replace it, or choose another file")
    except ValueError as e:
        fail(e)
    except OSError as e:
        if e.filename is None:
            raise
        fail_os_error(e)
    out.print(f"wrote {out_path}: class {class_name!r}, {support.shots} shot(s)", markup=False, highlight=False)


def _read_and_encode(model: Path, class_name: str, images: list[Path], given: list[Path], class_id: int | None,
                     class_embeddings: Path, target_class: str | None, bands: tuple[int, int, int] | None,
                     backend: Backend, device: str, quiet: bool) -> SupportSet:
    """Read the supports (conversion notes on the terminal), encode them, note what was done to them."""
    from icpd.io import read_class_mask, read_image, read_mask

    rasters = [read_image(p, bands=bands) for p in images]
    for r in rasters:
        for line in r.notes:  # grayscale, RGBA, uint16, bands: the user sees what was done to the pixels
            note(f"{r.path}: {line}")
    if class_id is not None:  # --label (checked: --class-id goes with --label only)
        mask_arrays = [read_class_mask(m, class_id, like=r) for m, r in zip(given, rasters)]
    else:
        mask_arrays = [read_mask(m, like=r) for m, r in zip(given, rasters)]
    support = _encode(model, backend, device, class_embeddings, target_class or class_name, class_name, rasters,
                      mask_arrays, quiet)
    for line in support.notes:  # e.g. a support smaller than the model input, upscaled
        note(line)
    support.meta.update({"images": [p.name for p in images], "masks": [m.name for m in given]})
    if class_id is not None:
        support.meta["class_id"] = class_id
    return support


def _encode(model: Path, backend: Backend, device: str, class_embeddings: Path, target: str, class_name: str,
            rasters: list[Raster], masks: list[np.ndarray], quiet: bool) -> SupportSet:
    """Load the model and encode the supports, each long step with its spinner."""
    from icpd.commands.progress import step
    from icpd.model.text import load_class_embeddings
    from icpd.runtime.predictor import Predictor

    with step(f"loading {model} ({backend.value})", quiet=quiet):
        predictor = Predictor.load(model, backend=backend.value, device=device)
    emb = load_class_embeddings(class_embeddings, preset=predictor.preset).for_target(target)
    with step(f"encoding {len(rasters)} support image(s) of {class_name!r}", quiet=quiet):
        return predictor.encode_support(rasters, masks, class_name, emb)  # Rasters: messages name the files


def register(app: typer.Typer) -> None:
    app.command("cache-support")(cache_support_cmd)
