"""One segmentation request on a worker: decode, the one scene pipeline, and the answer's bodies.

The scene goes through :func:`~icpd.runtime.scene.segment_array` (the tiling, blending and labels of
``icpd infer``), with the server's tile, overlap and batch resolved as ``icpd infer`` resolves its
own; nodata pixels of a GeoTIFF get label 255 as in ``icpd infer``'s outputs. The label PNG is
``icpd infer``'s ``<stem>_labels.png`` byte for byte: the same palette PNG encoder and palette.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from icpd.apps.serve.decode import Scene, decode_scene
from icpd.apps.serve.geojson import label_polygons
from icpd.io.viz import OVERLAY_PALETTE
from icpd.io.windows import pixel_area
from icpd.io.writers import encode_palette_png
from icpd.runtime.scene import NODATA_LABEL, segment_array
from icpd.runtime.tiling import small_scene_notes

if TYPE_CHECKING:
    from icpd.apps.serve.metrics import ServeMetrics
    from icpd.apps.serve.service import Job
    from icpd.runtime.predictor import Predictor
    from icpd.runtime.tiling import SceneOptions

__all__ = ["Segmented", "label_png", "result_json", "segment_body", "segment_scene"]


@dataclass
class Segmented:
    """A request's result: labels (H, W) uint8 (0 background, i + 1 = class_names[i], 255 nodata)."""

    labels: np.ndarray
    class_names: list[str]
    scene: Scene
    tiles: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    notes: list[str] = field(default_factory=list)  # what `icpd infer` notes for this scene (decoding, size)


def segment_body(job: Job, predictor: Predictor, data: bytes, suffix: str, bands: tuple[int, int, int] | None,
                 options: SceneOptions, metrics: ServeMetrics) -> Segmented:
    """Decode ``data`` (a request body) and :func:`segment_scene` it."""
    start = time.monotonic()
    scene = decode_scene(data, suffix, bands)
    seconds = time.monotonic() - start
    metrics.stage.labels("decode").observe(seconds)
    result = segment_scene(job, predictor, scene, options, metrics)
    result.timings = {"decode": seconds, **result.timings}
    return result


def segment_scene(job: Job, predictor: Predictor, scene: Scene, options: SceneOptions,
                  metrics: ServeMetrics) -> Segmented:
    """Segment ``scene`` with ``predictor``'s classes (``options``: tile resolved, threshold).

    Stops between predictor calls once the job's deadline passed (``DeadlineExceeded``)."""
    job.check()
    start = time.monotonic()
    seen = [0]

    def on_tiles(done: int, total: int) -> None:
        metrics.batch.observe(done - seen[0])
        seen[0] = done
        job.check()

    assert options.tile is not None  # resolved by the service (SceneOptions.for_model)
    pred = segment_array(predictor, scene.pixels, options.tile, options.overlap, options.batch, options.threshold,
                         on_tiles=on_tiles)
    labels = pred.labels if scene.nodata is None else np.where(scene.nodata, np.uint8(NODATA_LABEL), pred.labels)
    seconds = time.monotonic() - start
    metrics.stage.labels("predict").observe(seconds)
    h, w = labels.shape
    notes = [*scene.notes, *small_scene_notes(h, w, options.tile, predictor.preset.image_size)]
    return Segmented(labels, list(pred.class_names), scene, pred.tiles, {"predict": seconds}, notes)


def label_png(result: Segmented) -> bytes:
    """The label map as ``icpd infer``'s ``<stem>_labels.png`` (palette PNG, the overlay's colours)."""
    return encode_palette_png(result.labels, OVERLAY_PALETTE)


def result_json(result: Segmented, polygons: bool) -> dict[str, Any]:
    """Per-class pixel counts (== the label PNG's bincount), areas for georeferenced input, notes, timings
    and, with ``polygons``, the masks as GeoJSON (map coordinates for georeferenced input)."""
    names = result.class_names
    counts = np.bincount(result.labels.ravel(), minlength=256)
    pixels = {"background": int(counts[0]), **{c: int(counts[i + 1]) for i, c in enumerate(names)}}
    if counts[NODATA_LABEL]:
        pixels["nodata"] = int(counts[NODATA_LABEL])
    h, w = result.labels.shape
    doc: dict[str, Any] = {
        "classes": names,
        "labels": {"0": "background", **{str(i + 1): c for i, c in enumerate(names)}},
        "height": h, "width": w, "tiles": result.tiles,
        "pixels": pixels,
        "area": None, "area_unit": None,
        "notes": result.notes,
        "timings": {k: round(v, 6) for k, v in result.timings.items()},
    }
    area = pixel_area(result.scene.geo)
    if area is not None:
        doc["area"] = {c: float(counts[i + 1]) * area[0] for i, c in enumerate(names)}
        doc["area_unit"] = area[1]
    if polygons:
        doc["polygons"] = label_polygons(result.labels, names, result.scene.geo)
    return doc
