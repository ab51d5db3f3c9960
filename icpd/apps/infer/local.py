"""Batch inference over scenes of any size: tile, predict, blend, write labels and pictures.

    p = open_predictor("model_dir", ["ship.support", "plane.support"], backend="ort")
    summary = infer_paths(p, ["scenes/"], "out/", InferOptions(overlap=32))

One rule for every scene size: :func:`~icpd.runtime.tiling.plan_tiles` cuts the scene into
square tiles of side ``tile`` (a dimension shorter than a tile is padded by reflection, never
stretched), the tiles go through :meth:`Predictor.predict` in batches (one encoder pass per
tile, one matcher pass per class), and the per-class probabilities are blended by
:class:`~icpd.runtime.tiling.Blender` and cropped to the scene's exact size. A scene smaller
than one tile is thus one reflection-padded tile: its aspect ratio is kept, and a scene one
pixel larger than a tile sees nearly the same pixels, so results do not jump at the tile size.
The label map is the per-pixel argmax over classes, background where the best probability is
below the threshold (:func:`~icpd.runtime.predictor.merge_labels`, the rule of every command).

Scenes run window by window (:mod:`icpd.runtime.scene`): a TIFF is read by windows and
blended and written block by block, so memory follows the tile, batch and overlap, not the
scene's width; what is written per scene is in :mod:`icpd.apps.infer.outputs`. The output folder is
checked for writing and locked for the run, and each run appends a JSONL manifest with the
hashes of every scene's outputs, so a restarted run skips complete scenes
(:mod:`icpd.apps.infer.session`). ``summary.json`` says whether the run was interrupted.

One bad input (not an image, corrupt, unsupported bands) is recorded in the summary with its
error and the run goes on. Every file is written atomically; an input that fails while its
outputs are written has the ones already written removed, so no input is left half-done.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from icpd.apps.infer.options import (
    InferOptions,
    InferProgress,
    InferSummary,
    InputResult,
    ScenePrediction,
)
from icpd.apps.infer.outputs import SceneOutputs, open_source, safe_name
from icpd.apps.infer.session import Manifest, OutLock, check_writable, new_run_id
from icpd.io import ImageError, atomic_write, list_inputs
from icpd.io.viz import colour_hex
from icpd.io.windows import pixel_area
from icpd.runtime.predictor import merge_labels
from icpd.runtime.scene import resize_maps as _resize_maps
from icpd.runtime.scene import run_scene
from icpd.runtime.tiling import Blender, Tile, iter_tile_batches, min_tile, plan_tiles

if TYPE_CHECKING:
    from icpd.runtime.predictor import Predictor

__all__ = [
    "CollectedInputs",
    "InferOptions",
    "InferProgress",
    "InferSummary",
    "InputResult",
    "ScenePrediction",
    "collect_inputs",
    "infer_paths",
    "open_predictor",
    "predict_scene",
    "safe_name",
]

SUMMARY_NAME = "summary.json"
DEFAULT_OPTIONS = InferOptions()  # frozen: one shared default
# ------------------------------------------------------------------------------------------------
# session


def open_predictor(model_dir: str | os.PathLike[str], supports: Sequence[str | os.PathLike[str]], backend: str = "ort",
                   device: str = "cpu", threads: int | None = None,
                   engine_dir: str | os.PathLike[str] | None = None) -> Predictor:
    """Load a model directory and its support caches (one class each, in the given order).

    Raises:
        ValueError (ModelDirError, SupportCacheError, ...): a missing or unusable path, named.
    """
    from icpd.config import Backend
    from icpd.runtime.backends.registry import resolve as resolve_backend
    from icpd.runtime.predictor import Predictor
    from icpd.runtime.validation import DuplicateClassError

    if not supports:
        raise ValueError("no support set given: pass --support CLASS.support (made by `icpd cache-support`)")
    model_path = Path(model_dir)
    if not model_path.is_dir():
        raise ValueError(f"--model {model_path}: not a directory; create one with `icpd export --out {model_path}`")
    for s in supports:  # cheap checks first: loading the sessions takes seconds
        if not Path(s).is_file():
            what = "a folder, not a file" if Path(s).is_dir() else "file not found"
            raise ValueError(f"--support {s}: {what}; create it with `icpd cache-support`")
    if resolve_backend(backend) is Backend.TRT and engine_dir is None:  # an alias (tensorrt) too
        raise ValueError("--backend trt: pass --engines ENGINE_DIR (from `icpd build`)")
    predictor = Predictor.load(model_path, backend=backend, device=device, threads=threads, engine_dir=engine_dir)
    for s in supports:
        try:
            predictor.add_support(s)
        except DuplicateClassError as e:  # the library's words (Predictor.add_support), the option in front
            raise ValueError(f"--support {s}: {e}") from None
    return predictor


# ------------------------------------------------------------------------------------------------
# prediction


def predict_scene(predictor: Predictor, pixels: np.ndarray, options: InferOptions = DEFAULT_OPTIONS,
                  on_tiles: Callable[[int, int], None] | None = None) -> ScenePrediction:
    """Predict every class of ``predictor`` on one (H, W, 3) uint8 RGB scene at full size.

    Every scene is tiled and blended (module docstring): a dimension shorter than the tile is
    padded by reflection and cropped back, never stretched. Tiles of a side other than the
    model input S are resized to S by the predictor (square to square: no distortion) and their
    probabilities resized back to the tile (bilinear). ``on_tiles(done, total)`` is called after
    each predictor call.
    """
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"predict_scene: expected (H, W, 3) uint8 RGB, got {pixels.shape} {pixels.dtype}")
    tile = options.resolve_tile(predictor.preset.image_size)
    height, width = pixels.shape[:2]
    n = len(predictor.class_names)
    tiles: list[Tile] = plan_tiles(height, width, tile, options.overlap)
    blend = Blender(height, width, n, options.overlap)
    prior_blend = Blender(height, width, n, options.overlap) if options.save_priors else None
    done = 0
    for chunk, batch in iter_tile_batches(pixels, tiles, options.batch):
        pred = predictor.predict(batch, options.threshold, priors=options.save_priors)
        for i, t in enumerate(chunk):
            blend.add(t, _resize_maps(pred.probs[i], t.size, t.size))
            if prior_blend is not None and pred.priors is not None:
                prior_blend.add(t, _resize_maps(pred.priors[i], t.size, t.size))
        done += len(chunk)
        if on_tiles is not None:
            on_tiles(done, len(tiles))
    probs = blend.result()
    priors = prior_blend.result() if prior_blend is not None else None
    return ScenePrediction(probs, merge_labels(probs[None], options.threshold)[0], predictor.class_names, len(tiles), priors)


# ------------------------------------------------------------------------------------------------
# files


def output_stems(inputs: Sequence[Path]) -> list[str]:
    """One output stem per input: the file stem, then stem_<ext> where stems collide
    (a.png, a.tif), then stem_<ext>_<k> (same name in two folders)."""
    stems = [p.stem for p in inputs]
    stems = [f"{p.stem}_{p.suffix.lstrip('.').lower()}" if stems.count(s) > 1 else s for p, s in zip(inputs, stems)]
    seen: dict[str, int] = {}
    out = []
    for s in stems:
        k = seen.get(s, 0)
        seen[s] = k + 1
        out.append(s if k == 0 else f"{s}_{k}")
    return out


def resume_key(predictor: Predictor, options: InferOptions) -> dict[str, object]:
    """What makes two runs' outputs the same (the manifest's resume key): options but the
    input listing, the model fingerprint, the support sets' contents."""
    opts = {k: v for k, v in asdict(options).items() if k != "recursive"}
    return {"options": opts, "model": predictor.fingerprint,
            "supports": [[s.class_name, _tensors_hash(s.tensors)] for s in predictor.supports]}


def _tensors_hash(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{a.dtype}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_summary(path: Path, predictor: Predictor, options: InferOptions, summary: InferSummary,
                  manifest: Path | None = None, extra: dict[str, object] | None = None) -> None:
    results = summary.results
    doc = {
        "run": summary.run_id,
        "interrupted": summary.interrupted,  # True: stopped by Ctrl-C (SIGINT); inputs not listed were not run
        "manifest": str(manifest) if manifest is not None else None,
        "model": str(predictor.model_dir.path),
        "backend": predictor.backend_name,
        "classes": predictor.class_names,
        "labels": {str(i + 1): c for i, c in enumerate(predictor.class_names)} | {"0": "background"},
        "colours": {c: colour_hex(i + 1) for i, c in enumerate(predictor.class_names)},  # of the overlays
        "options": asdict(options),  # tile resolved (for_model)
        "ok": sum(r.status == "ok" for r in results),
        "failed": sum(r.status != "ok" for r in results),
        "skipped_inside_out_dir": summary.skipped,
        **(extra or {}),
        "inputs": [asdict(r) for r in results],
    }
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------------------------
# driver


class CollectedInputs(NamedTuple):
    """The images of a run, listed once (:func:`collect_inputs`)."""

    paths: list[Path]  # images to segment, in order
    skipped: list[str]  # images inside the output folder (outputs of an earlier run), not segmented


def collect_inputs(inputs: Iterable[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
                   recursive: bool = False) -> CollectedInputs:
    """Images to segment (files, folders expanded by list_inputs) and those skipped because they
    lie inside ``out_dir`` (outputs of an earlier run).

    Raises:
        ValueError: nothing to segment (the message names the paths given).
        ImageError: an input that does not exist or is not an image type.
    """
    given = [Path(p) for p in inputs]
    if not given:
        raise ValueError("no inputs: pass image files or folders of PNG/JPEG/TIFF images")
    found = list_inputs(given, recursive=recursive)
    out = Path(out_dir).resolve()
    paths = [p for p in found if not _inside(p, out)]
    skipped = [str(p) for p in found if _inside(p, out)]
    if not paths:
        where = ", ".join(str(p) for p in given)
        extra = f" ({len(skipped)} inside the output folder {out_dir} skipped)" if skipped else ""
        raise ValueError(f"no images (.png .jpg .jpeg .tif .tiff) found in {where}{extra}")
    return CollectedInputs(paths, skipped)


def infer_paths(predictor: Predictor, inputs: CollectedInputs | Iterable[str | os.PathLike[str]],
                out_dir: str | os.PathLike[str], options: InferOptions = DEFAULT_OPTIONS,
                progress: InferProgress | None = None) -> InferSummary:
    """Segment every image in ``inputs`` (files or folders, or a :class:`CollectedInputs` listed
    already by :func:`collect_inputs` for this ``out_dir``) into ``out_dir``.

    Writes per input what :mod:`icpd.apps.infer.outputs` says (``<stem>_labels.png``/``.tif``,
    ``<stem>_overlay.png``/``.tif``, ...), ``runs/<run>.jsonl`` (the manifest) and
    ``summary.json`` (also when interrupted; then ``"interrupted": true``). Images already inside
    ``out_dir`` are skipped, and so are scenes an earlier run completed (manifest, hash-checked).

    Raises:
        ValueError: bad options, no support set, no images found, an unwritable or busy ``out_dir``
            (nothing is written then).
        ImageError: an input path that does not exist or is not an image type.
    """
    options = options.for_model(predictor.preset.image_size)  # the tile, resolved once for every scene
    if not predictor.supports:
        raise ValueError("no support set: pass --support CLASS.support")
    out = Path(out_dir)
    listed = inputs if isinstance(inputs, CollectedInputs) else collect_inputs(inputs, out, options.recursive)
    check_writable(out)
    summary = InferSummary([], predictor.class_names, out / SUMMARY_NAME, listed.skipped, new_run_id())
    with OutLock(out, summary.run_id):
        manifest = Manifest(out, summary.run_id, resume_key(predictor, options))
        try:
            for path, stem in zip(listed.paths, output_stems(listed.paths)):
                done = manifest.complete(path)
                if done is not None:
                    result = resumed_result(done)
                else:
                    result, written = _infer_one(predictor, path, out, stem, options, progress)
                    manifest.record(path, asdict(result), written)
                summary.results.append(result)
                if progress is not None:
                    progress.finish_input(result)
        except KeyboardInterrupt:
            summary.interrupted = True
            raise
        finally:
            write_summary(summary.summary_path, predictor, options, summary, manifest.path)
    return summary


def resumed_result(entry: dict[str, object]) -> InputResult:
    """The :class:`InputResult` of a scene an earlier run completed (its manifest entry)."""
    result = InputResult(**entry["result"])  # type: ignore[arg-type]
    result.resumed_from = str(entry["run"])
    result.notes = [*result.notes, f"complete in run {entry['run']} (outputs checked by sha256): not redone"]
    return result


def scene_result(result: InputResult, outputs: SceneOutputs, class_names: list[str]) -> InputResult:
    """``result`` with the per-class statistics of a finished scene's outputs (a new record;
    ``result`` is left as it was)."""
    counts = outputs.stats.counts
    total = max(int(outputs.source.height) * int(outputs.source.width), 1)
    pixels = {c: int(counts[i + 1]) for i, c in enumerate(class_names)}
    nodata = total - int(counts.sum())
    if nodata:
        pixels["nodata"] = nodata
    foreground = {c: float(counts[i + 1]) / total for i, c in enumerate(class_names)}
    area = pixel_area(outputs.geo)
    if area is None:
        return replace(result, pixels=pixels, foreground=foreground)
    return replace(result, pixels=pixels, foreground=foreground, area_unit=area[1],
                   area={c: float(counts[i + 1]) * area[0] for i, c in enumerate(class_names)})


def _infer_one(predictor: Predictor, path: Path, out: Path, stem: str, options: InferOptions,
               progress: InferProgress | None) -> tuple[InputResult, list[Path]]:
    if progress is not None:
        progress.start_input(path)
    start = time.perf_counter()
    result = InputResult(path=str(path), status="ok")
    written: list[Path] = []
    try:
        source, geo, notes = open_source(path, options.bands)
        try:
            result.height, result.width, result.notes = source.height, source.width, list(notes)
            tile = options.resolve_tile(predictor.preset.image_size)
            result.tiles = len(plan_tiles(source.height, source.width, tile, options.overlap))
            result.notes += small_scene_notes(source.height, source.width, tile, predictor.preset.image_size)
            planned = getattr(progress, "scene_planned", None)
            if planned is not None:
                planned(path, source.height, source.width, result.tiles)
            sink = SceneOutputs(out, stem, path, source, geo, predictor.class_names, options.alpha,
                                options.save_probs, options.save_priors)
            try:
                run_scene(predictor, source, tile, options.overlap, options.batch, options.threshold, sink,
                          options.save_priors, progress.tiles_done if progress is not None else None)
                written = sink.finish()
            except BaseException:
                sink.abort()
                raise
            result = scene_result(result, sink, predictor.class_names)
            result.outputs = [str(p) for p in written]
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
    except Exception as e:  # noqa: BLE001 - one bad input must not stop the run; the error is recorded
        msg = str(e) if isinstance(e, (ImageError, ValueError, OSError)) else f"{type(e).__name__}: {e}"
        result.status = "error"
        result.error = msg if str(path) in msg else f"{path}: {msg}"
    result.seconds = round(time.perf_counter() - start, 4)
    return result, written


def small_scene_notes(height: int, width: int, tile: int, model_size: int) -> list[str]:
    """A note for a scene with a side below :func:`~icpd.runtime.tiling.min_tile` (a quarter of the
    model input, where tiles and supports are refused as blur): it is segmented, padded by reflection
    to one tile, but the user should know how little the network saw."""
    low = min_tile(model_size)
    if min(height, width) >= low:
        return []
    return [(f"{height}x{width} px (HxW): a side below {low} px (a quarter of the model input, {model_size} px); "
             f"padded by reflection to the {tile} px tile, never stretched: so few pixels give unreliable masks")]

