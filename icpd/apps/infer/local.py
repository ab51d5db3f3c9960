"""Batch inference over scenes of any size: tile, predict, blend, write labels and pictures.

    p = open_predictor("model_dir", ["ship.support", "plane.support"], backend="ort")
    summary = infer_paths(p, ["scenes/"], "out/", InferOptions(overlap=32))

One rule for every scene size: :func:`~icpd.runtime.tiling.plan_tiles` cuts the scene into
square tiles of side ``tile`` (a dimension shorter than a tile is padded by reflection, never
stretched), the tiles go through :meth:`Predictor.predict` in batches (one encoder pass per
tile, one matcher pass per class), and the per-class probabilities are blended
(:func:`~icpd.runtime.scene.run_scene`, the one scene pipeline) and cropped to the scene's exact
size. A scene smaller than one tile is thus one reflection-padded tile: its aspect ratio is kept,
and a scene one pixel larger than a tile sees nearly the same pixels, so results do not jump at the
tile size.
The label map is the per-pixel argmax over classes, background where the best probability is
below the threshold (:func:`~icpd.runtime.predictor.merge_labels`, the rule of every command).

Scenes run window by window (:mod:`icpd.runtime.scene`): a TIFF is read by windows and
blended and written block by block, so memory follows the tile, batch and overlap, not the
scene's width; what is written per scene is in :mod:`icpd.apps.infer.outputs`. The output folder is
checked for writing and locked for the run, and each run appends a JSONL manifest with the
hashes of every scene's outputs, so a restarted run skips complete scenes: the run session
(:mod:`icpd.apps.infer.session`), the same for ``--ray``. ``summary.json`` says whether the run was
interrupted.

One bad input (not an image, corrupt, unsupported bands) is recorded in the summary with its
error and the run goes on. Every file is written atomically; an input that fails while its
outputs are written has the ones already written removed, so no input is left half-done.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from icpd.apps.infer.options import InferOptions, InferProgress, InferSummary, InputResult, ScenePrediction
from icpd.apps.infer.outputs import SceneOutputs, open_source, safe_name
from icpd.apps.infer.session import CollectedInputs, RunSession, Todo, collect_inputs
from icpd.runtime.scene import run_scene

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
    "safe_name",
]

DEFAULT_OPTIONS = InferOptions()  # frozen: one shared default


def open_predictor(model_dir: str | os.PathLike[str], supports: Sequence[str | os.PathLike[str]],
                   backend: str = "ort", device: str = "cpu", threads: int | None = None,
                   engine_dir: str | os.PathLike[str] | None = None) -> Predictor:
    """Load a model directory and its support caches (one class each, in the given order).

    Raises:
        ValueError (ModelDirError, SupportCacheError, ...): a missing or unusable path, named.
    """
    from icpd.config import Backend
    from icpd.errors import ParamError, arg
    from icpd.runtime.backends.registry import resolve as resolve_backend
    from icpd.runtime.predictor import Predictor
    from icpd.runtime.validation import DuplicateClassError

    if not supports:
        raise ParamError(f"no support set given: pass {arg('supports', 'CLASS.support')} (made by "
                         "`icpd cache-support`)", param="supports")
    model_path = Path(model_dir)
    if not model_path.is_dir():
        raise ParamError(f"{arg('model_dir', model_path)}: not a directory; create one with "
                         f"`icpd export --out {model_path}`")
    for s in supports:  # cheap checks first: loading the sessions takes seconds
        if not Path(s).is_file():
            what = "a folder, not a file" if Path(s).is_dir() else "file not found"
            raise ParamError(f"{arg('supports', s)}: {what}; create it with `icpd cache-support`")
    if resolve_backend(backend) is Backend.TRT and engine_dir is None:  # an alias (tensorrt) too
        raise ParamError(f"{arg('backend', 'trt')}: pass {arg('engine_dir', 'ENGINE_DIR')} "
                         "(from `icpd build`)", param="engine_dir")
    predictor = Predictor.load(model_path, backend=backend, device=device, threads=threads,
                               engine_dir=engine_dir)
    for s in supports:
        try:
            predictor.add_support(s)
        except DuplicateClassError as e:  # Predictor.add_support's words, the parameter in front
            raise ParamError(f"{arg('supports', s)}: {e}") from None
    return predictor


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
    out = Path(out_dir)
    listed = inputs if isinstance(inputs, CollectedInputs) else collect_inputs(inputs, out, options.recursive)
    with RunSession(predictor, listed, out, options, progress) as run:
        for todo in run.scenes():
            _infer_one(run, todo)
    return run.summary


def _infer_one(run: RunSession, todo: Todo) -> None:
    """One scene: opened, planned, predicted and blended block by block into its outputs."""
    if run.progress is not None:
        run.progress.start_input(todo.path)
    start = time.perf_counter()
    o, names = run.options, run.predictor.class_names
    scene = None
    try:
        opened = open_source(todo.path, o.bands)
        try:
            scene = run.plan(todo, opened.source.height, opened.source.width, opened.notes, opened.geo)
            sink = SceneOutputs(run.out, todo.stem, todo.path, opened, names, o.alpha, o.save_probs,
                                o.save_priors)
            try:
                assert o.tile is not None  # resolved by the session
                run_scene(run.predictor, opened.source, o.tile, o.overlap, o.batch, o.threshold, sink,
                          o.save_priors, run.progress.tiles_done if run.progress is not None else None,
                          batches=scene.batches)
            except BaseException:
                sink.abort()
                raise
            run.done(scene, sink, time.perf_counter() - start)
        finally:
            opened.source.close()
    except Exception as e:  # noqa: BLE001 - one bad input must not stop the run; the error is recorded
        run.failed(scene if scene is not None else todo, e, time.perf_counter() - start)
