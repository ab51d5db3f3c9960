"""One ``icpd infer`` run into an output folder, the same for the local and the Ray runner.

    with RunSession(predictor, listed, out, options, progress) as run:
        for todo in run.scenes():                 # scenes earlier runs completed are resumed here
            scene = run.plan(todo, height, width, notes, geo)   # tiles planned once
            ...                                   # predict, blend, write (SceneOutputs)
            run.done(scene, outputs, seconds)     # or run.failed(todo, error, seconds)

* **Writable first**: :func:`check_writable` creates the folder and a probe file before the run
  starts, so an unwritable ``--out`` is one clear error, not a traceback at the end.
* **One run per folder**: :func:`icpd.io.locks.exclusive_lock` holds ``OUT.lock`` beside the
  folder for the run; a second run into the same folder is refused with the holder's pid, a lock
  left by a killed run is taken over.
* **Manifest and resume** (:mod:`icpd.apps.infer.manifest`): one line per finished scene; a scene
  complete in an earlier run with the same :func:`resume_key` is not redone.
* **Results**: one :class:`InputResult` per scene, in input order in ``summary.json``, written
  when the run ends however it ends (``"interrupted": true`` after Ctrl-C). A scene that fails is
  recorded with :func:`scene_error`'s message and the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from icpd.apps.infer.manifest import Manifest, new_run_id
from icpd.apps.infer.options import InferOptions, InferProgress, InferSummary, InputResult
from icpd.io import ImageError, atomic_write, list_inputs
from icpd.io.atomic import ensure_writable
from icpd.io.locks import exclusive_lock
from icpd.io.viz import colour_hex
from icpd.io.windows import pixel_area
from icpd.runtime.scene import plan_batches
from icpd.runtime.tiling import Tile, small_scene_notes

if TYPE_CHECKING:
    from types import TracebackType

    from icpd.apps.infer.outputs import SceneOutputs
    from icpd.io import GeoInfo
    from icpd.runtime.predictor import Predictor

__all__ = ["SUMMARY_NAME", "CollectedInputs", "PlannedScene", "RunSession", "Todo", "check_writable",
           "collect_inputs", "error_text", "output_stems", "resume_key", "scene_error", "scene_result"]

SUMMARY_NAME = "summary.json"


def check_writable(out: Path) -> None:
    """Create ``out`` (and parents) and check it can be written (``icpd.io.ensure_writable``).

    Raises:
        ValueError: the folder cannot be created or written (the message names it, why, and the fix).
    """
    try:
        ensure_writable(out, folder=True, create=True)
    except OSError as exc:
        from icpd.errors import ParamError, arg

        raise ParamError(f"{arg('out', out)}: cannot write there ({exc.strerror or exc}); pass a writable "
                         "folder or fix its permissions") from None


class CollectedInputs(NamedTuple):
    """The images of a run, listed once (:func:`collect_inputs`)."""

    paths: list[Path]  # images to segment, in order
    skipped: list[str]  # images inside the output folder (outputs of an earlier run), not segmented


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder)
    except ValueError:
        return False
    return True


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


def output_stems(inputs: list[Path]) -> list[str]:
    """One output stem per input: the file stem, then stem_<ext> where stems collide
    (a.png, a.tif), then stem_<ext>_<k> (same name in two folders)."""
    stems = [p.stem for p in inputs]
    stems = [f"{p.stem}_{p.suffix.lstrip('.').lower()}" if stems.count(s) > 1 else s
             for p, s in zip(inputs, stems)]
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


def error_text(error: BaseException) -> str:
    """A scene's error as its summary states it: the message of an input's error, else the type too."""
    if isinstance(error, (ImageError, ValueError, OSError)):
        return str(error)
    return f"{type(error).__name__}: {error}"


def scene_error(path: Path, error: BaseException) -> str:
    """The failed-scene message (one for every runner): :func:`error_text`, naming the file."""
    msg = error_text(error)
    return msg if str(path) in msg else f"{path}: {msg}"


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


class Todo(NamedTuple):
    """A scene of the run not complete in an earlier one."""

    index: int  # in the run's inputs
    path: Path
    stem: str  # of its output files


@dataclass
class PlannedScene:
    """A scene opened once and planned: its result so far (size, notes, tiles) and its tile batches
    (:func:`~icpd.runtime.scene.plan_batches`, the plan every step of the run uses)."""

    todo: Todo
    result: InputResult
    batches: list[list[Tile]]
    geo: GeoInfo | None


class RunSession:
    """The lifecycle of one run (module docstring): a context manager; ``summary`` is the result.

    Raises (on entry): ValueError: no support set, an unwritable ``out``; LockHeldError (a ValueError):
    another run writes ``out``.
    """

    def __init__(self, predictor: Predictor, listed: CollectedInputs, out: Path, options: InferOptions,
                 progress: InferProgress | None = None, extra: dict[str, object] | None = None) -> None:
        if not predictor.supports:
            raise ValueError("no support set: add one to the predictor first (predictor.add_support(path), "
                             "e.g. a CLASS.support file from `icpd cache-support`)")
        self.predictor, self.listed, self.out = predictor, listed, out
        self.progress, self.extra = progress, extra
        # the tile, resolved once for every scene
        self.options = options.for_model(predictor.preset.image_size)
        self.summary = InferSummary([], predictor.class_names, out / SUMMARY_NAME, listed.skipped,
                                    new_run_id())
        self._results: dict[int, InputResult] = {}
        self._stack = ExitStack()
        self.manifest: Manifest | None = None

    def __enter__(self) -> RunSession:  # noqa: PYI034 - final class
        check_writable(self.out)
        with ExitStack() as stack:
            stack.enter_context(exclusive_lock(self.out, "infer"))
            self.manifest = Manifest(self.out, self.summary.run_id, resume_key(self.predictor, self.options))
            self._stack = stack.pop_all()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._stack:
            if kind is not None and issubclass(kind, KeyboardInterrupt):
                self.summary.interrupted = True
            self.write_summary()

    def scenes(self) -> Iterator[Todo]:
        """The scenes to do, in input order; a scene complete in an earlier run is finished here
        (its earlier result, noted) instead."""
        assert self.manifest is not None, "scenes() outside the session's with-block"
        for i, (path, stem) in enumerate(zip(self.listed.paths, output_stems(self.listed.paths))):
            entry = self.manifest.complete(path)
            if entry is None:
                yield Todo(i, path, stem)
                continue
            result = InputResult(**entry["result"])
            result.resumed_from = str(entry["run"])
            result.notes = [*result.notes,
                            f"complete in run {entry['run']} (outputs checked by sha256): not redone"]
            self._finish(i, result)

    def plan(self, todo: Todo, height: int, width: int, notes: Iterable[str],
             geo: GeoInfo | None) -> PlannedScene:
        """Plan an opened scene of ``height x width`` px once: its tile batches and its result so far."""
        o, size = self.options, self.predictor.preset.image_size
        assert o.tile is not None  # resolved in __init__
        batches = plan_batches(height, width, o.tile, o.overlap, o.batch)
        result = InputResult(path=str(todo.path), status="ok", height=height, width=width,
                             tiles=sum(len(b) for b in batches),
                             notes=[*notes, *small_scene_notes(height, width, o.tile, size)])
        if self.progress is not None:
            self.progress.scene_planned(todo.path, height, width, result.tiles)
        return PlannedScene(todo, result, batches, geo)

    def done(self, scene: PlannedScene, outputs: SceneOutputs, seconds: float) -> None:
        """A scene whose every block went to ``outputs``: its files committed, its result recorded.
        A failure while committing removes what was written (``outputs.finish``) and is raised."""
        written = outputs.finish()
        result = scene_result(scene.result, outputs, self.predictor.class_names)
        result = replace(result, outputs=[str(p) for p in written], seconds=round(seconds, 4))
        self._finish(scene.todo.index, result, written)

    def failed(self, scene: Todo | PlannedScene, error: BaseException, seconds: float = 0.0) -> None:
        """A scene that failed: recorded with :func:`scene_error`'s message; the run goes on."""
        todo = scene.todo if isinstance(scene, PlannedScene) else scene
        if isinstance(scene, PlannedScene):
            base = scene.result
        else:
            base = InputResult(path=str(todo.path), status="ok")
        result = replace(base, status="error", error=scene_error(todo.path, error), outputs=[],
                         seconds=round(seconds, 4))
        self._finish(todo.index, result, [])

    def _finish(self, index: int, result: InputResult, written: list[Path] | None = None) -> None:
        if written is not None and self.manifest is not None:
            self.manifest.record(Path(result.path), asdict(result), written)
        self._results[index] = result
        self.summary.results[:] = [self._results[i] for i in sorted(self._results)]
        if self.progress is not None:
            self.progress.finish_input(result)

    def write_summary(self) -> None:
        """``summary.json``: the run, the model, the classes and their colours, the options, every
        scene's result (also when the run was interrupted)."""
        p, s, results = self.predictor, self.summary, self.summary.results
        doc = {
            "run": s.run_id,
            "interrupted": s.interrupted,  # True: stopped by Ctrl-C (SIGINT); inputs not listed were not run
            "manifest": str(self.manifest.path) if self.manifest is not None else None,
            "model": str(p.model_dir.path),
            "backend": p.backend_name,
            "classes": p.class_names,
            "labels": {str(i + 1): c for i, c in enumerate(p.class_names)} | {"0": "background"},
            "colours": {c: colour_hex(i + 1) for i, c in enumerate(p.class_names)},  # of the overlays
            "options": asdict(self.options),  # tile resolved (for_model)
            "ok": sum(r.status == "ok" for r in results),
            "failed": sum(r.status != "ok" for r in results),
            "skipped_inside_out_dir": s.skipped,
            **(self.extra or {}),
            "inputs": [asdict(r) for r in results],
        }
        with atomic_write(s.summary_path) as tmp:
            tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")

