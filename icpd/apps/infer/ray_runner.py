"""``icpd infer --ray``: many scenes on a Ray cluster with Ray Data, outputs equal to one process.

Pipeline (Ray Data, streaming, order preserved)::

    (scene, tile batch) items --map(read_tiles)--> pixels (B, T, T, 3)    CPU tasks: decode
        --map_batches(TilePredictor, ActorPoolStrategy(actors))--> probs (B, N, S, S)   a Predictor per actor
        --> driver: SceneBlend per scene (block blending) -> SceneOutputs (files), manifest line

* The tile batches are those of single-process ``icpd infer`` (same plan, same batch size) and
  the driver blends with the same code, so the outputs are identical (tested).
* The Predictor loads once per actor; the support caches are read once by the driver, put in
  the object store and fetched by each actor at start (not re-read per task).
* Actors that die are restarted and their task retried (Ray Data's actor-pool defaults
  ``max_restarts=-1``, ``max_task_retries=-1``); a retried batch gives the
  same probabilities, so the output is unchanged (tested by killing an actor's process mid-run).
* The output folder, lock, manifest, resume, summary and per-scene results are the run session of
  :func:`icpd.apps.infer.local.infer_paths` (:class:`~icpd.apps.infer.session.RunSession`).

Every node needs the model directory and the scenes at the same paths (a shared file system);
the driver writes the outputs.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from icpd.apps.infer.options import InferOptions, InferProgress, InferSummary
from icpd.apps.infer.outputs import OpenedScene, SceneOutputs, open_source
from icpd.apps.infer.session import CollectedInputs, PlannedScene, RunSession, error_text
from icpd.cluster import start_ray
from icpd.io.raster import parse_bands
from icpd.runtime.scene import SceneBlend, read_batch
from icpd.runtime.tiling import Tile

if TYPE_CHECKING:
    from icpd.runtime.predictor import Predictor

__all__ = ["RAY_EXTRA_HINT", "TilePredictor", "infer_paths_ray", "init_ray"]

RAY_EXTRA_HINT = "pip install 'icpd[ray]'"
DECODE_CPUS = 0.5  # logical CPUs of one tile-decode task (Ray's bookkeeping: they are light)


def _import_ray():  # -> the ray module
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ImportError(f"the Ray runner needs Ray Data, which is not installed: {RAY_EXTRA_HINT}") from exc
    return ray


def init_ray(address: str | None, actors: int) -> bool:
    """Start a local Ray (``address`` None or ``"local"``) or join ``address`` (``auto``,
    ``ray://host:10001``). Returns True when this call started it (the caller shuts it down)."""
    return start_ray(_import_ray(), address, actors, command="icpd infer")


def actor_cpus(ray: Any, actors: int) -> float:
    """Logical CPUs each predictor actor asks for: 1, or less where ``actors`` would take every
    CPU of the cluster and leave none to the decode tasks (the pipeline would then wait forever)."""
    total = float(ray.cluster_resources().get("CPU", 1.0))
    return min(1.0, (total - DECODE_CPUS) / actors) if total > DECODE_CPUS else total / (actors + 1)


def _open(path: str, bands: Sequence[int] | None):  # -> SceneSource; one per worker and scene
    # Ray hands the row's (4, 3, 2) over as a list, which the cache cannot hash: the one band parser
    # makes it the tuple again first
    return _open_cached(path, parse_bands(bands))


@functools.lru_cache(maxsize=4)
def _open_cached(path: str, bands: tuple[int, int, int] | None):  # -> SceneSource
    return open_source(Path(path), bands)[0]


def read_tiles(item: dict[str, Any]) -> dict[str, Any]:
    """Ray Data ``map`` step: one tile batch's pixels (B, T, T, 3) uint8, or the error text."""
    out = {"scene": item["scene"], "batch": item["batch"], "error": ""}
    try:
        tiles = [Tile(*t) for t in item["tiles"]]
        out["pixels"] = read_batch(_open(item["path"], item["bands"]), tiles)
    except Exception as e:  # noqa: BLE001 - recorded for the scene, the run goes on
        out["error"] = error_text(e)
        size = item["tiles"][0][4]
        out["pixels"] = np.zeros((1, size, size, 3), np.uint8)
    return out


class TilePredictor:
    """Ray Data callable class: a Predictor (and its support sets) per actor, loaded once."""

    def __init__(self, model_dir: str, supports: list[Any], load: dict[str, Any], threshold: float,
                 priors: bool) -> None:
        import ray

        from icpd.runtime.predictor import Predictor

        self.predictor = Predictor.load(model_dir, **load)
        with tempfile.TemporaryDirectory(prefix="icpd-support-") as tmp:
            for i, data in enumerate(ray.get(list(supports))):  # from the object store
                path = Path(tmp) / f"{i}.support"
                path.write_bytes(data)
                self.predictor.add_support(path)
        self.threshold, self.priors = threshold, priors

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list[Any]] = {"scene": [], "batch": [], "error": [], "probs": [], "priors": []}
        for i in range(len(batch["scene"])):
            pixels, error = np.asarray(batch["pixels"][i]), str(batch["error"][i])
            if error:
                probs = priors = np.zeros((0,), np.float32)
            else:
                pred = self.predictor.predict(pixels, self.threshold, priors=self.priors)
                probs = pred.probs.astype(np.float32, copy=False)
                priors = pred.priors if pred.priors is not None else np.zeros((0,), np.float32)
            for key, value in (("scene", batch["scene"][i]), ("batch", batch["batch"][i]), ("error", error),
                               ("probs", probs), ("priors", priors)):
                out[key].append(value)
        return {k: (np.array(v) if k in ("scene", "batch", "error") else _column(v)) for k, v in out.items()}


def _column(arrays: list[np.ndarray]) -> np.ndarray:
    """A column of arrays; an object array when their shapes differ (last batch of a scene)."""
    if len({a.shape for a in arrays}) == 1:
        return np.stack(arrays)
    col = np.empty(len(arrays), dtype=object)
    col[:] = arrays
    return col


class _Scene:
    """Driver-side state of one planned scene: from its first batch on, its blend and outputs.

    The scene is opened once to plan it and closed again: an archive of hundreds of scenes would
    otherwise hold every file open (and every PNG decoded) in the driver from the start. It is
    reopened when its first batch comes back (a second header read; for uint16 GeoTIFFs a second
    histogram pass, for PNG/JPEG a second decode).
    """

    def __init__(self, planned: PlannedScene, options: InferOptions, classes: list[str]) -> None:
        self.planned, self.options, self.classes = planned, options, classes
        self.start = time.perf_counter()
        self.failed = False
        self.opened: OpenedScene | None = None
        self.blend: SceneBlend | None = None
        self.sink: SceneOutputs | None = None

    def add(self, out: Path, probs: np.ndarray, priors: np.ndarray | None) -> None:
        o, todo = self.options, self.planned.todo
        if self.sink is None:
            self.start = time.perf_counter()  # first batch back: the scene's own time starts
            self.opened = opened = open_source(todo.path, o.bands)
            assert o.tile is not None  # resolved by the session
            self.blend = SceneBlend(opened.source.height, opened.source.width, len(self.classes), o.tile,
                                    o.overlap, o.threshold, o.save_priors, self.planned.batches,
                                    opened.source)
            self.sink = SceneOutputs(out, todo.stem, todo.path, opened, self.classes, o.alpha, o.save_probs,
                                     o.save_priors)
        assert self.blend is not None
        for rows in self.blend.add(probs, priors):
            self.sink(*rows)

    @property
    def done(self) -> bool:
        return self.blend is not None and self.blend.done

    def close(self) -> None:
        if self.sink is not None and not self.done:
            self.sink.abort()
        if self.opened is not None:
            self.opened.source.close()
        self.opened = self.blend = self.sink = None  # closed twice (the run's finally): a no-op


def _cause(error: BaseException) -> str:
    """The innermost ``SomeError: message`` line of a Ray error's text (it nests the remote traceback)."""
    lines = [ln.strip() for ln in str(error).splitlines()]
    causes = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception): ", ln)]
    return causes[-1] if causes else (lines[0] if lines else type(error).__name__)


def infer_paths_ray(predictor: Predictor, model_dir: str | os.PathLike[str], supports: list[Path],
                    listed: CollectedInputs, out_dir: str | os.PathLike[str], options: InferOptions,
                    address: str | None = None, actors: int = 1, backend: str = "ort",
                    threads: int | None = None, progress: InferProgress | None = None, device: str = "cpu",
                    engine_dir: str | os.PathLike[str] | None = None) -> InferSummary:
    """:func:`icpd.apps.infer.local.infer_paths` on Ray: same outputs, summary, manifest and resume.

    ``predictor`` (loaded in the driver with ``supports``) gives class names, fingerprints and
    sizes; the actors load their own from ``model_dir``. ``actors``: predictor actors (one per
    GPU on a GPU cluster); ``threads``: ONNX Runtime threads per actor (default 1). ``device``
    other than ``cpu``: each actor asks Ray for one GPU and uses the one Ray gives it (``cuda``,
    as Ray sets ``CUDA_VISIBLE_DEVICES``); ``engine_dir``: TensorRT engines (``backend="trt"``),
    at the same path on every node.
    """
    ray = _import_ray()
    session = RunSession(predictor, listed, Path(out_dir), options, progress,
                         {"ray": {"address": address or "local", "actors": actors}})
    started = init_ray(address, actors)
    try:
        with session as run:
            # absolute paths: workers on other nodes (or a joined cluster's workers here) have their own cwd
            engines = None if engine_dir is None else str(Path(engine_dir).resolve())
            load = {"backend": backend, "threads": threads or 1,
                    "device": "cpu" if device == "cpu" else "cuda", "engine_dir": engines}
            _run(ray, run, str(Path(model_dir).resolve()), supports, actors, load)
    finally:
        if started:
            ray.shutdown()
    return session.summary


def _plan(run: RunSession) -> tuple[dict[int, _Scene], list[dict[str, Any]]]:
    """Every scene to do, opened once to plan it (then closed), and the pipeline's items: one per
    tile batch. Scenes that cannot be opened are recorded as failed here."""
    scenes: dict[int, _Scene] = {}
    items: list[dict[str, Any]] = []
    for todo in run.scenes():
        try:
            opened = open_source(todo.path, run.options.bands)
            try:
                planned = run.plan(todo, opened.source.height, opened.source.width, opened.notes, opened.geo)
            finally:
                opened.source.close()
        except Exception as e:  # noqa: BLE001 - one bad input must not stop the run
            run.failed(todo, e)
            continue
        scenes[todo.index] = _Scene(planned, run.options, run.predictor.class_names)
        where = str(Path(todo.path).resolve())  # absolute: the decode tasks run in the workers' own cwd
        items += [{"scene": todo.index, "batch": j, "path": where, "bands": run.options.bands,
                   "tiles": [(t.y, t.x, t.h, t.w, t.size) for t in chunk]}
                  for j, chunk in enumerate(planned.batches)]
    return scenes, items


def _run(ray: Any, run: RunSession, model_dir: str, supports: list[Path], actors: int,
         load: dict[str, Any]) -> None:
    scenes, items = _plan(run)
    if not items:
        return
    total_tiles = sum(s.planned.result.tiles for s in scenes.values())
    tiles_done = 0
    options, progress = run.options, run.progress
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # scenes arrive whole and in order: strip blending
    ctx.enable_progress_bars = False  # the CLI draws its own (scenes, tiles/s, ETA)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-dataset INFO lines
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled": ours
    logging.getLogger("ray.data.exceptions").setLevel(logging.CRITICAL)  # its stack dump: we raise one line
    refs = [ray.put(Path(s).read_bytes()) for s in supports]  # the object store, fetched once per actor
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), 64 * max(actors, 1)))
    ds = ds.map(read_tiles, num_cpus=DECODE_CPUS)
    ds = ds.map_batches(
        TilePredictor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=actor_cpus(ray, actors), num_gpus=0 if load["device"] == "cpu" else 1,
        fn_constructor_kwargs={"model_dir": model_dir, "supports": refs, "load": load,
                               "threshold": options.threshold, "priors": options.save_priors})
    # no max_restarts / max_task_retries here: Ray Data's actor pools default to -1 / -1
    # (restart dead actors, retry their tasks), and passing them is deprecated in Ray 2.60
    try:
        for row in ds.iter_rows():
            scene = scenes[int(row["scene"])]
            tiles_done += len(scene.planned.batches[int(row["batch"])])
            if progress is not None:
                progress.tiles_done(tiles_done, total_tiles)
            if scene.failed:
                continue
            try:
                if row["error"]:
                    raise ValueError(str(row["error"]))
                priors = np.asarray(row["priors"]) if options.save_priors else None
                scene.add(run.out, np.asarray(row["probs"]), priors)
                if scene.done:
                    assert scene.sink is not None
                    run.done(scene.planned, scene.sink, time.perf_counter() - scene.start)
                    scene.close()
            except Exception as e:  # noqa: BLE001 - recorded for the scene, the run goes on
                scene.failed = True
                scene.close()
                run.failed(scene.planned, e)
    except ray.exceptions.RayError as e:  # an actor that cannot start, a batch that raises: not retried
        raise ValueError(f"the Ray run stopped: {_cause(e)}. Every node needs the model dir ({model_dir}) "
                         "and the scenes at the same paths; scenes completed so far are in the manifest "
                         "(run again to go on)") from None
    finally:
        for s in scenes.values():
            s.close()
