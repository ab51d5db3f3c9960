"""Procedurally generated aerial-like tiles in the iSAID-5i or DLRSD-5i layout.

``synthesize(out, layout, tiles, seed)`` writes ``tiles`` tiles for *each* of ``trn`` and ``val``,
with label files and fold lists, so :class:`~icpd.data.isaid5i.ISAID5i` and
:class:`~icpd.data.dlrsd5i.DLRSD5i` read the result unchanged. It is for tests, demos and
smoke-training, not a benchmark.

Each tile has a textured land-cover background (low-frequency colour variation, grain, crop
fields with furrows, roads, water bodies) and several objects. Every class has its own family of
shapes, textures and colours with per-instance variation in size, orientation and colour;
objects may be small, cut by the tile border, and occlude each other (the later one wins in the
label). Ships, bridges and harbours sit on water.

Class coverage: in every run of 5 consecutive tiles of a split, each of the 15 classes is the
*primary* class of exactly one tile and is guaranteed visible there (at least ``MIN_PIXELS``
pixels at 256 px). So ``tiles >= 5 * (K + 1)`` per split (30 for 5-shot) guarantees that
K-shot episodes can be drawn for every class of every fold; extra classes add more. A class is
listed for a tile when it covers at least ``MIN_PIXELS`` pixels (scaled with the tile area).

Output is a pure function of ``(layout, tiles, seed, size, zoom)``: same arguments, same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from icpd.data.episodes import NUM_CLASSES, NUM_FOLDS
from icpd.io.atomic import write_bytes_atomic, write_text_atomic

Layout = Literal["isaid5i", "dlrsd5i"]
SPLITS = ("trn", "val")
MIN_PIXELS = 16  # at 256 px; a class below this in a tile is drawn but not listed
UCM_CATEGORIES = (
    "agricultural", "airplane", "baseballdiamond", "beach", "buildings", "chaparral", "denseresidential",
    "forest", "freeway", "golfcourse", "harbor", "intersection", "mediumresidential", "mobilehomepark",
    "overpass", "parkinglot", "river", "runway", "sparseresidential", "storagetanks", "tenniscourt",
)


@dataclass
class SynthSummary:
    """What :func:`synthesize` wrote."""

    root: Path  # the data set root to give the reader
    layout: str  # "isaid5i" or "dlrsd5i"
    tiles: int  # tiles per split
    seed: int
    size: int  # tile side in pixels
    class_tiles: dict[str, dict[int, int]] = field(default_factory=dict)  # split -> class id -> listed tiles
    list_entries: dict[str, int] = field(default_factory=dict)  # split -> (tile, class) list lines

    def min_class_tiles(self) -> int:
        """Fewest listed tiles of any class in any split (episodes need ``K + 1``)."""
        return min(min(c.values()) for c in self.class_tiles.values())


class _Canvas:
    """A tile being drawn: float RGB image, class-id label, water mask, grain field."""

    def __init__(self, img: np.ndarray, water: np.ndarray, rng: np.random.Generator, zoom: float = 1.0) -> None:
        self.size = img.shape[0]
        self.s = self.size / 256.0 * zoom  # all lengths below are in pixels at 256 px (zoom 1), times s
        self.img = img
        self.label = np.zeros((self.size, self.size), np.uint8)
        self.water = water
        self.grain = rng.standard_normal((self.size, self.size), dtype=np.float32)

    def blank(self) -> np.ndarray:
        return np.zeros((self.size, self.size), np.uint8)

    def paint(self, mask: np.ndarray, color: np.ndarray, class_id: int, grain: float = 6.0) -> None:
        """Fill ``mask`` with ``color`` plus grain; label it ``class_id`` (0 = background only)."""
        x, y, w, h = cv2.boundingRect(mask)
        if w == 0:
            return
        win = np.s_[y:y + h, x:x + w]  # work on the mask's bounding box only: objects are small
        m = mask[win].astype(bool)
        self.img[win][m] = color + grain * self.grain[win][m][:, None]
        if class_id:
            self.label[win][m] = class_id

    def center(self, rng: np.random.Generator, inside: bool, on_water: bool = False) -> tuple[float, float]:
        """A centre: on water if asked and any, else anywhere, partly off-tile 1 time in 4."""
        if on_water and self.water.any():
            idx = np.flatnonzero(self.water)
            y, x = divmod(int(idx[rng.integers(idx.size)]), self.size)
            return float(x), float(y)
        lo, hi = (0.1, 0.9) if inside or rng.random() > 0.25 else (-0.05, 1.05)
        return tuple(rng.uniform(lo, hi, 2) * self.size)  # type: ignore[return-value]


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: float = 18.0) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.normal(0, amount, 3), 0, 255).astype(np.float32)


def _poly(pts: list[tuple[float, float]], cx: float, cy: float, angle: float, scale: float) -> np.ndarray:
    """Unit-shape polygon -> rotated, scaled, translated int32 points (N, 1, 2)."""
    p = np.asarray(pts, np.float64) * scale
    c, s = np.cos(angle), np.sin(angle)
    xy = p @ np.array([[c, s], [-s, c]]) + (cx, cy)
    return np.round(xy).astype(np.int32).reshape(-1, 1, 2)


def _rect(w: float, h: float) -> list[tuple[float, float]]:
    return [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]


def _line(cv: _Canvas, a: np.ndarray, b: np.ndarray, color: float, thick: int = 1) -> None:
    cv2.line(cv.img, tuple(int(v) for v in a), tuple(int(v) for v in b), (color,) * 3, thick)


# -- object families: each draws one instance (or a natural group) of class_id ---------------------
def _ship(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside, on_water=True)
    length, a = rng.uniform(12, 55) * cv.s, rng.uniform(0, np.pi)
    w = rng.uniform(0.16, 0.3)
    hull = [(-0.5, -w / 2), (0.3, -w / 2), (0.5, 0), (0.3, w / 2), (-0.5, w / 2)]
    m = cv.blank()
    cv2.fillPoly(m, [_poly(hull, cx, cy, a, length)], 1)
    cv.paint(m, _jitter(rng, (200, 200, 195) if rng.random() < 0.6 else (70, 60, 60), 25), cid, 5)
    deck = cv.blank()
    cv2.fillPoly(deck, [_poly(_rect(0.3, w * 0.5), cx, cy, a, length)], 1)
    cv.paint(deck & m, _jitter(rng, (120, 120, 130)), cid, 4)


def _tank(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    r, n = rng.uniform(4, 16) * cv.s, int(rng.integers(1, 6))
    cols = int(rng.integers(1, 4))
    for k in range(n):
        x, y = cx + (k % cols) * 2.4 * r, cy + (k // cols) * 2.4 * r
        shadow = cv.blank()
        cv2.circle(shadow, (int(x + 0.3 * r), int(y + 0.3 * r)), int(r), 1, -1)
        cv.paint(shadow, np.float32([50, 50, 45]), 0, 3)
        m = cv.blank()
        cv2.circle(m, (int(x), int(y)), max(1, int(r)), 1, -1)
        cv.paint(m, _jitter(rng, (225, 225, 215), 12), cid, 4)
        cv2.circle(cv.img, (int(x), int(y)), max(1, int(0.6 * r)), (170, 170, 165), 1)


def _baseball(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    r, a = rng.uniform(22, 48) * cv.s, rng.uniform(0, 360)
    m = cv.blank()
    cv2.ellipse(m, (int(cx), int(cy)), (int(r), int(r)), a, 0, 90, 1, -1)
    cv.paint(m, _jitter(rng, (80, 140, 60)), cid, 5)
    infield = cv.blank()
    cv2.ellipse(infield, (int(cx), int(cy)), (int(0.55 * r), int(0.55 * r)), a, 0, 90, 1, -1)
    cv.paint(infield, _jitter(rng, (185, 140, 95)), cid, 6)


def _court(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool, base: tuple[int, int, int],
           size: tuple[float, float], circle: bool) -> None:
    cx, cy = cv.center(rng, inside)
    a, n = rng.uniform(0, np.pi), int(rng.integers(1, 4))
    w = rng.uniform(*size) * cv.s
    h = w * rng.uniform(1.8, 2.2)
    color = _jitter(rng, base, 15)
    for k in range(n):
        ox = cx + k * 1.2 * w * np.cos(a)
        oy = cy + k * 1.2 * w * np.sin(a)
        m = cv.blank()
        pts = _poly(_rect(w, h), ox, oy, a, 1.0)
        cv2.fillPoly(m, [pts], 1)
        cv.paint(m, color, cid, 4)
        cv2.polylines(cv.img, [_poly(_rect(0.8 * w, 0.85 * h), ox, oy, a, 1.0)], True, (235, 235, 235), 1)
        c, s = np.cos(a), np.sin(a)
        half = np.array([0.4 * w * c, 0.4 * w * s])
        mid = np.array([ox, oy])
        _line(cv, mid - half, mid + half, 235)
        if circle:
            cv2.circle(cv.img, (int(ox), int(oy)), max(1, int(0.15 * w)), (235, 235, 235), 1)


def _tennis(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    base = [(60, 130, 80), (60, 90, 150), (160, 70, 60)][int(rng.integers(3))]
    _court(cv, rng, cid, inside, base, (9, 16), circle=False)


def _basketball(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    _court(cv, rng, cid, inside, (200, 140, 80), (12, 20), circle=True)


def _track(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    L, a = rng.uniform(55, 110) * cv.s, rng.uniform(0, 180)
    w = L * rng.uniform(0.45, 0.6)
    m = cv.blank()
    cv2.ellipse(m, (int(cx), int(cy)), (int(L / 2), int(w / 2)), a, 0, 360, 1, -1)
    cv.paint(m, _jitter(rng, (170, 70, 55)), cid, 5)
    inner = cv.blank()
    cv2.ellipse(inner, (int(cx), int(cy)), (int(L / 2 - 0.15 * w), int(0.35 * w)), a, 0, 360, 1, -1)
    cv.paint(inner, _jitter(rng, (70, 150, 70)), cid, 5)


def _bridge(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside, on_water=True)
    a, w = rng.uniform(0, np.pi), rng.uniform(5, 13) * cv.s
    L = rng.uniform(0.5, 1.1) * cv.size
    m = cv.blank()
    cv2.fillPoly(m, [_poly(_rect(L, w), cx, cy, a, 1.0)], 1)
    cv.paint(m, _jitter(rng, (150, 150, 145), 15), cid, 5)


def _vehicles(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool, length: tuple[float, float],
              count: tuple[int, int], palette: tuple[tuple[int, int, int], ...]) -> None:
    cx, cy = cv.center(rng, inside)
    a, n = rng.uniform(0, np.pi), int(rng.integers(*count))
    L = rng.uniform(*length) * cv.s
    W = L * rng.uniform(0.4, 0.5)
    c, s = np.cos(a), np.sin(a)
    for k in range(n):
        row, col = divmod(k, 6)
        # parked side by side along the row direction, rows further out
        ox = cx - col * 1.5 * W * s + row * 1.6 * L * c + rng.normal(0, 0.1 * W)
        oy = cy + col * 1.5 * W * c + row * 1.6 * L * s + rng.normal(0, 0.1 * W)
        m = cv.blank()
        cv2.fillPoly(m, [_poly(_rect(L, W), ox, oy, a + rng.normal(0, 0.05), 1.0)], 1)
        cv.paint(m, _jitter(rng, palette[int(rng.integers(len(palette)))], 20), cid, 4)


def _large_vehicle(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    _vehicles(cv, rng, cid, inside, (14, 28), (1, 7), ((210, 210, 210), (200, 60, 50), (60, 80, 160), (90, 90, 90)))


def _small_vehicle(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    pal = ((230, 230, 230), (30, 30, 35), (180, 30, 30), (40, 60, 150), (150, 150, 155))
    _vehicles(cv, rng, cid, inside, (5, 10), (3, 16), pal)


def _mobile_home(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    _vehicles(cv, rng, cid, inside, (14, 24), (3, 13), ((235, 235, 225), (215, 205, 185), (200, 210, 220)))


def _helicopter(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    L, a = rng.uniform(12, 26) * cv.s, rng.uniform(0, np.pi)
    m = cv.blank()
    cv2.fillPoly(m, [_poly(_rect(0.5, 0.22), cx, cy, a, L)], 1)
    cv2.fillPoly(m, [_poly([(0.2, -0.03), (0.75, -0.03), (0.75, 0.03), (0.2, 0.03)], cx, cy, a, L)], 1)
    b = a + rng.uniform(0, np.pi / 2)
    thick = max(1, round(0.06 * L))
    for ang in (b, b + np.pi / 2):
        d = 0.5 * L * np.array([np.cos(ang), np.sin(ang)])
        p, q = np.array([cx, cy]) - d, np.array([cx, cy]) + d
        cv2.line(m, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 1, thick)
    cv.paint(m, _jitter(rng, (90, 100, 80) if rng.random() < 0.5 else (200, 200, 200), 20), cid, 4)


def _pool(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    w, a = rng.uniform(6, 26) * cv.s, rng.uniform(0, 180)
    h = w * rng.uniform(0.4, 0.8)
    m = cv.blank()
    if rng.random() < 0.5:
        cv2.ellipse(m, (int(cx), int(cy)), (max(1, int(w / 2)), max(1, int(h / 2))), a, 0, 360, 1, -1)
    else:
        cv2.fillPoly(m, [_poly(_rect(w, h), cx, cy, np.deg2rad(a), 1.0)], 1)
    cv.paint(m, _jitter(rng, (60, 190, 225), 15), cid, 3)


def _roundabout(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    r = rng.uniform(16, 40) * cv.s
    m = cv.blank()
    cv2.circle(m, (int(cx), int(cy)), int(r), 1, -1)
    cv.paint(m, _jitter(rng, (120, 120, 120), 12), cid, 5)
    inner = cv.blank()
    cv2.circle(inner, (int(cx), int(cy)), int(r * rng.uniform(0.45, 0.7)), 1, -1)
    cv.paint(inner, _jitter(rng, (90, 150, 75)), cid, 6)


def _soccer(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    w, a = rng.uniform(45, 80) * cv.s, rng.uniform(0, np.pi)
    h = w * rng.uniform(1.4, 1.6)
    m = cv.blank()
    cv2.fillPoly(m, [_poly(_rect(w, h), cx, cy, a, 1.0)], 1)
    cv.paint(m, _jitter(rng, (70, 160, 70), 12), cid, 4)
    cv2.polylines(cv.img, [_poly(_rect(0.9 * w, 0.92 * h), cx, cy, a, 1.0)], True, (235, 235, 235), 1)
    cv2.circle(cv.img, (int(cx), int(cy)), max(1, int(0.15 * w)), (235, 235, 235), 1)


def _plane(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    L, a = rng.uniform(16, 60) * cv.s, rng.uniform(0, 2 * np.pi)
    span, sweep = rng.uniform(0.8, 1.1), rng.uniform(0.05, 0.2)
    shape = [
        (0.5, 0), (0.4, -0.05), (0.1 - sweep, -span / 2), (-0.02 - sweep, -span / 2), (0.0, -0.05),
        (-0.35, -0.05), (-0.47, -0.2), (-0.5, -0.2), (-0.45, 0), (-0.5, 0.2), (-0.47, 0.2), (-0.35, 0.05),
        (0.0, 0.05), (-0.02 - sweep, span / 2), (0.1 - sweep, span / 2), (0.4, 0.05),
    ]
    m = cv.blank()
    cv2.fillPoly(m, [_poly(shape, cx, cy, a, L)], 1)
    cv.paint(m, _jitter(rng, (225, 225, 228), 15), cid, 4)


def _harbor(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside, on_water=True)
    a, L = rng.uniform(0, np.pi), rng.uniform(40, 110) * cv.s
    n, pier = int(rng.integers(2, 6)), rng.uniform(15, 40) * cv.s
    m = cv.blank()
    cv2.fillPoly(m, [_poly(_rect(L, 0.12 * L), cx, cy, a, 1.0)], 1)
    c, s = np.cos(a), np.sin(a)
    for k in range(n):
        t = (k + 0.5) / n - 0.5
        px, py = cx + t * L * c, cy + t * L * s
        ox, oy = px - (pier / 2) * s, py + (pier / 2) * c
        cv2.fillPoly(m, [_poly(_rect(0.06 * L, pier), ox, oy, a, 1.0)], 1)
    cv.paint(m, _jitter(rng, (160, 150, 135), 15), cid, 5)


def _blob_mask(cv: _Canvas, rng: np.random.Generator, inside: bool, radius: tuple[float, float]) -> np.ndarray:
    cx, cy = cv.center(rng, inside)
    r = rng.uniform(*radius) * cv.s
    k = int(rng.integers(7, 13))
    ang = np.sort(rng.uniform(0, 2 * np.pi, k))
    rad = r * rng.uniform(0.55, 1.0, k)
    pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
    m = cv.blank()
    cv2.fillPoly(m, [np.round(pts).astype(np.int32).reshape(-1, 1, 2)], 1)
    return m


def _land_patch(rgb: tuple[int, int, int], grain: float, radius: tuple[float, float], speckle: float = 0.0) -> Callable:
    def draw(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
        m = _blob_mask(cv, rng, inside, radius)
        cv.paint(m, _jitter(rng, rgb, 12), cid, grain)
        if speckle:
            x, y, w, h = cv2.boundingRect(m)
            dots = (rng.random((h, w)) < speckle) & m[y:y + h, x:x + w].astype(bool)
            cv.img[y:y + h, x:x + w][dots] *= 0.55

    return draw


def _buildings(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    a, n = rng.uniform(0, np.pi), int(rng.integers(1, 5))
    roof = [(170, 90, 70), (150, 150, 150), (200, 195, 185), (90, 90, 95)][int(rng.integers(4))]
    for k in range(n):
        w, h = rng.uniform(10, 35, 2) * cv.s
        ox, oy = cx + rng.normal(0, 25 * cv.s), cy + rng.normal(0, 25 * cv.s)
        shadow = cv.blank()
        cv2.fillPoly(shadow, [_poly(_rect(w, h), ox + 3 * cv.s, oy + 3 * cv.s, a, 1.0)], 1)
        cv.paint(shadow, np.float32([45, 45, 45]), 0, 3)
        m = cv.blank()
        cv2.fillPoly(m, [_poly(_rect(w, h), ox, oy, a, 1.0)], 1)
        cv.paint(m, _jitter(rng, roof, 12), cid, 4)


def _field(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    w, h = rng.uniform(50, 120, 2) * cv.s
    a = rng.uniform(0, np.pi)
    m = cv.blank()
    cv2.fillPoly(m, [_poly(_rect(w, h), cx, cy, a, 1.0)], 1)
    cv.paint(m, _jitter(rng, (150, 170, 80), 20), cid, 4)
    _furrows(cv, m, a, rng.uniform(3, 6) * cv.s)


def _pavement(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    m = cv.blank()
    cx, cy = cv.center(rng, inside)
    a = rng.uniform(0, np.pi)
    d = cv.size * np.array([np.cos(a), np.sin(a)])
    cv2.line(m, (int(cx - d[0]), int(cy - d[1])), (int(cx + d[0]), int(cy + d[1])), 1,
             max(2, int(rng.uniform(8, 22) * cv.s)))
    if rng.random() < 0.5:
        cv2.fillPoly(m, [_poly(_rect(*(rng.uniform(20, 50, 2) * cv.s)), cx, cy, a, 1.0)], 1)
    cv.paint(m, _jitter(rng, (125, 125, 122), 10), cid, 5)


def _sea(cv: _Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    side, depth = int(rng.integers(4)), rng.uniform(0.25, 0.5) * cv.size
    xs = np.linspace(0, cv.size, 12)
    edge = depth + rng.normal(0, 6 * cv.s, xs.size).cumsum()
    pts = np.concatenate([np.stack([xs, edge], 1), [[cv.size, -1], [0, -1]]])
    if side & 1:
        pts = pts[:, ::-1]
    if side & 2:
        pts = cv.size - pts
    m = cv.blank()
    cv2.fillPoly(m, [np.round(pts).astype(np.int32).reshape(-1, 1, 2)], 1)
    cv.paint(m, _jitter(rng, (40, 80, 120), 12), cid, 3)
    cv.water |= m.astype(bool)


ISAID_FAMILIES: tuple[Callable, ...] = (
    _ship, _tank, _baseball, _tennis, _basketball, _track, _bridge, _large_vehicle, _small_vehicle,
    _helicopter, _pool, _roundabout, _soccer, _plane, _harbor,
)
DLRSD_FAMILIES: tuple[Callable, ...] = (
    _plane, _land_patch((150, 115, 80), 10, (20, 60)), _buildings, _small_vehicle,
    _land_patch((110, 120, 70), 8, (25, 70), speckle=0.15), _tennis, _harbor, _field,
    _land_patch((80, 140, 60), 9, (25, 70)), _mobile_home, _pavement, _land_patch((220, 205, 160), 5, (20, 60)),
    _sea, _ship, _tank,
)
_ON_WATER = {"isaid5i": (1, 7, 15), "dlrsd5i": (7, 14)}  # classes drawn on water: the tile gets some


# -- background ----------------------------------------------------------------------------------
def _smooth(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in 0..1, ``(size, size)`` float32."""
    return cv2.resize(rng.random((cells, cells)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)


def _furrows(cv: _Canvas, mask: np.ndarray, angle: float, spacing: float) -> None:
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0:
        return
    yy, xx = np.mgrid[y:y + h, x:x + w].astype(np.float32)
    phase = (xx * np.cos(angle) - yy * np.sin(angle)) / max(spacing, 1.0)
    stripes = (np.sin(2 * np.pi * phase) > 0.3) & mask[y:y + h, x:x + w].astype(bool)
    cv.img[y:y + h, x:x + w][stripes] *= 0.85


def _background(rng: np.random.Generator, size: int, water: bool, zoom: float = 1.0) -> _Canvas:
    land = [(120, 130, 85), (140, 125, 95), (110, 115, 110), (95, 125, 75)][int(rng.integers(4))]
    base = np.asarray(land, np.float32) + rng.normal(0, 10, 3).astype(np.float32)
    tone = _smooth(rng, size, 4)[..., None] - 0.5
    img = base + 50.0 * tone * np.float32([1.0, 0.9, 0.8])
    cv = _Canvas(np.ascontiguousarray(img, dtype=np.float32), np.zeros((size, size), bool), rng, zoom)
    for _ in range(int(rng.integers(0, 4))):  # crop fields with furrows
        m = cv.blank()
        w, h = rng.uniform(40, 140, 2) * cv.s
        a = rng.uniform(0, np.pi)
        cv2.fillPoly(m, [_poly(_rect(w, h), *(rng.uniform(0, size, 2)), a, 1.0)], 1)
        cv.paint(m, _jitter(rng, (130, 150, 80), 25), 0, 5)
        _furrows(cv, m, a, rng.uniform(3, 7) * cv.s)
    if water or rng.random() < 0.3:
        lake = _smooth(rng, size, 3)
        cv.water = lake > np.quantile(lake, 1 - rng.uniform(0.3, 0.5))
        cv.paint(cv.water.astype(np.uint8), _jitter(rng, (45, 75, 95), 10), 0, 3)
    for _ in range(int(rng.integers(0, 3))):  # roads
        m = cv.blank()
        p = rng.uniform(0, size, 2)
        a = rng.uniform(0, np.pi)
        d = 2 * size * np.array([np.cos(a), np.sin(a)])
        cv2.line(m, tuple(int(v) for v in p - d), tuple(int(v) for v in p + d), 1, max(2, int(rng.uniform(5, 14) * cv.s)))
        cv.paint(m, _jitter(rng, (105, 105, 100), 10), 0, 4)
    return cv


def render_tile(
    rng: np.random.Generator, size: int, layout: Layout, primaries: list[int], extras: list[int], zoom: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one tile.

    Args:
        rng: the tile's generator.
        size: tile side in pixels.
        layout: picks the class-to-shape-family table.
        primaries: classes guaranteed visible (at least ``MIN_PIXELS`` scaled).
        extras: classes drawn first, which may end up occluded or cut off.
        zoom: ground-resolution factor: every length (objects, fields, roads) is ``zoom`` times longer.

    Returns:
        ``(size, size, 3)`` uint8 RGB image and ``(size, size)`` uint8 label of class ids.
    """
    families = ISAID_FAMILIES if layout == "isaid5i" else DLRSD_FAMILIES
    need_water = any(c in _ON_WATER[layout] for c in primaries + extras)
    cv = _background(rng, size, need_water, zoom)
    min_px = _min_pixels(size, zoom)
    for c in extras:
        families[c - 1](cv, rng, c, False)
    for c in rng.permutation(primaries).tolist():
        families[c - 1](cv, rng, c, False)
    for c in primaries:  # occluded or cut off by a later primary: draw it again, inside, on top
        for _ in range(20):
            if np.count_nonzero(cv.label == c) >= min_px:
                break
            families[c - 1](cv, rng, c, True)
    img = cv2.GaussianBlur(cv.img, (3, 3), 0.6) + 2.0 * rng.standard_normal(cv.img.shape, dtype=np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), cv.label


def _min_pixels(size: int, zoom: float = 1.0) -> int:
    return max(4, round(MIN_PIXELS * (size * zoom / 256.0) ** 2))


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1] if path.suffix == ".png" else []  # speed over size
    ok, buf = cv2.imencode(path.suffix, array, params)
    if not ok:
        raise OSError(f"could not encode {path}")
    write_bytes_atomic(path, buf.tobytes(), fsync=False)


def synthesize(out: Path, layout: Layout, tiles: int, seed: int, size: int = 256, zoom: float = 1.0) -> SynthSummary:
    """Write a synthetic data set in the ``layout`` of iSAID-5i or DLRSD-5i under ``out``.

    Args:
        out: root directory to create (give it to the reader as ``root``).
        layout: ``"isaid5i"`` or ``"dlrsd5i"``.
        tiles: tiles per split (``trn`` and ``val`` each); ``>= 5 * (K + 1)`` for K-shot (30 for 5-shot).
        seed: everything is a function of the seed (same seed, same bytes).
        size: tile side in pixels (the DLRSD reader expects 256).
        zoom: ground-resolution factor (default 1: a tile shows the same ground at any ``size``). 2 draws
            everything twice as long, as imagery of twice the resolution would show it: objects cover 4x
            the tile area. A small network input (the tiny preset's 128 px) needs it to see small objects.

    Returns:
        A :class:`SynthSummary` with the per-class tile counts.
    """
    if layout not in ("isaid5i", "dlrsd5i"):
        raise ValueError(f"layout must be 'isaid5i' or 'dlrsd5i', got {layout!r}")
    if tiles < 1 or size < 32 or not 0.25 <= zoom <= 8:
        raise ValueError(f"need tiles >= 1, size >= 32 and zoom in [0.25, 8], got tiles={tiles}, size={size}, zoom={zoom}")
    out = Path(out)
    summary = SynthSummary(out, layout, tiles, seed, size)
    min_px = _min_pixels(size, zoom)
    for s_idx, split in enumerate(SPLITS):
        split_rng = np.random.default_rng([seed, s_idx])
        blocks = [split_rng.permutation(NUM_CLASSES) + 1 for _ in range((tiles + 4) // 5)]
        lists: list[list[str]] = [[] for _ in range(NUM_FOLDS)]
        counts = dict.fromkeys(range(1, NUM_CLASSES + 1), 0)
        for i in range(tiles):
            rng = np.random.default_rng([seed, s_idx, i])
            primaries = blocks[i // 5][3 * (i % 5): 3 * (i % 5) + 3].tolist()
            pool = [c for c in range(1, NUM_CLASSES + 1) if c not in primaries]
            extras = rng.choice(pool, size=int(rng.integers(0, 4)), replace=False).tolist()
            image, label = render_tile(rng, size, layout, primaries, extras, zoom)
            name = _write_tile(out, layout, split, s_idx * tiles + i, image, label)
            present = np.bincount(label.ravel(), minlength=NUM_CLASSES + 1)
            for c in range(1, NUM_CLASSES + 1):
                if present[c] >= min_px:
                    counts[c] += 1
                    lists[(c - 1) // 5].append(_list_line(layout, name, c))
        for f, lines in enumerate(lists):
            path = out / split / "list" / f"split{f}.txt" if layout == "isaid5i" else out / "DLRSD_5i" / split / f"fold{f}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, "".join(line + "\n" for line in lines), fsync=False)
        summary.class_tiles[split] = counts
        summary.list_entries[split] = sum(len(x) for x in lists)
    return summary


def _write_tile(out: Path, layout: Layout, split: str, g: int, image: np.ndarray, label: np.ndarray) -> str:
    size = image.shape[0]
    if layout == "isaid5i":
        x0, y0 = (g % 7) * size, (g // 7 % 5) * size
        name = f"P{g:04d}_{x0}_{x0 + size}_{y0}_{y0 + size}"
        _write(out / split / "images" / f"{name}.png", image)
        # The published semantic_png files are single-channel class-id PNGs despite the "_RGB" in their
        # names: the authors' loader reads them as (H, W) with np.array(Image.open(...)). (Readers still
        # accept RGB files with equal channels.)
        _write(out / split / "semantic_png" / f"{name}_instance_color_RGB.png", label)
        return name
    cat = UCM_CATEGORIES[g % len(UCM_CATEGORIES)]
    name = f"{cat}{g // len(UCM_CATEGORIES):02d}"
    _write(out / "UCMerced_LandUse" / "Images" / cat / f"{name}.tif", image)
    _write(out / "DLRSD" / "Labels" / cat / f"{name}.png", label)
    return name


def _list_line(layout: Layout, name: str, class_id: int) -> str:
    return f"{name}_instance_color_RGB.png_{class_id:02d}" if layout == "isaid5i" else f"{name}__{class_id}"
