"""A label map as GeoJSON: one MultiPolygon feature per class, holes kept.

Rings are OpenCV's contours (``cv2.findContours``, two-level hierarchy: outer boundaries and their
holes) through the centres of each region's boundary pixels; a ring of fewer than three points (a
region one pixel wide) has no area and is left out. Coordinates: for a georeferenced scene, map
coordinates in the scene's CRS (the affine transform at pixel centres, ``x = a*(col+0.5) +
b*(row+0.5) + c``); else pixel coordinates ``[col, row]`` (y down).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from icpd.io import GeoInfo

__all__ = ["label_polygons"]


def _coords(ring: np.ndarray, geo: GeoInfo | None) -> list[list[float]]:
    """(P, 1, 2) contour points [col, row] -> a closed GeoJSON ring."""
    pts = ring.reshape(-1, 2).astype(np.float64)
    if geo is not None:
        a, b, c, d, e, f = geo.transform
        col, row = pts[:, 0] + 0.5, pts[:, 1] + 0.5  # pixel centres
        pts = np.stack([a * col + b * row + c, d * col + e * row + f], axis=1)
    out = pts.tolist()
    return [*out, out[0]]


def class_polygons(mask: np.ndarray, geo: GeoInfo | None) -> list[list[list[list[float]]]]:
    """(H, W) bool -> GeoJSON polygon coordinates: each [outer ring, hole rings...]."""
    contours, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    links = hierarchy[0]  # per contour: next, previous, first child, parent
    polygons = []
    for i, contour in enumerate(contours):
        if links[i][3] != -1 or len(contour) < 3:
            continue  # a hole (added below, with its outer ring) or a ring without area
        rings = [_coords(contour, geo)]
        child = links[i][2]
        while child != -1:
            if len(contours[child]) >= 3:
                rings.append(_coords(contours[child], geo))
            child = links[child][0]
        polygons.append(rings)
    return polygons


def label_polygons(labels: np.ndarray, class_names: list[str], geo: GeoInfo | None) -> dict[str, Any]:
    """(H, W) uint8 labels (i + 1 = class_names[i]) -> a GeoJSON FeatureCollection, one feature per class."""
    features = []
    for i, name in enumerate(class_names):
        mask = labels == i + 1
        features.append({
            "type": "Feature",
            "properties": {"class": name, "label": i + 1, "pixels": int(np.count_nonzero(mask))},
            "geometry": {"type": "MultiPolygon", "coordinates": class_polygons(mask, geo) if mask.any() else []},
        })
    doc: dict[str, Any] = {"type": "FeatureCollection", "features": features,
                           "coordinates": "map (the scene's CRS)" if geo is not None else "pixel [col, row]"}
    if geo is not None and geo.crs_wkt:
        doc["crs_wkt"] = geo.crs_wkt
    return doc
