"""Shape painters of the synthetic tiles: the canvas, one drawing function per object family, and
the class-to-family tables of both layouts.

Each family draws one instance (or a natural group) of its class with its own shapes, textures and
colours and per-instance variation; :func:`icpd.data.synthetic.render_tile` composes a tile from them.
Every draw consumes the tile's generator in a fixed order, so the data set stays a pure function of
its seed: change a painter and the bytes of ``icpd data synth`` change with it.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

__all__ = ["DLRSD_FAMILIES", "ISAID_FAMILIES", "ON_WATER", "Canvas", "furrows", "jitter", "poly", "rect"]


class Canvas:
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


def jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: float = 18.0) -> np.ndarray:
    """``rgb`` moved by Gaussian noise of std ``amount`` per channel, clipped: a ``(3,)`` float32 colour."""
    return np.clip(np.asarray(rgb, np.float32) + rng.normal(0, amount, 3), 0, 255).astype(np.float32)


def poly(pts: list[tuple[float, float]], cx: float, cy: float, angle: float, scale: float) -> np.ndarray:
    """Unit-shape polygon -> rotated, scaled, translated int32 points (N, 1, 2)."""
    p = np.asarray(pts, np.float64) * scale
    c, s = np.cos(angle), np.sin(angle)
    xy = p @ np.array([[c, s], [-s, c]]) + (cx, cy)
    return np.round(xy).astype(np.int32).reshape(-1, 1, 2)


def rect(w: float, h: float) -> list[tuple[float, float]]:
    """Corners of a ``w`` x ``h`` rectangle centred on the origin (for :func:`poly`)."""
    return [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]


def _line(cv: Canvas, a: np.ndarray, b: np.ndarray, color: float, thick: int = 1) -> None:
    cv2.line(cv.img, tuple(int(v) for v in a), tuple(int(v) for v in b), (color,) * 3, thick)


# -- object families: each draws one instance (or a natural group) of class_id ---------------------
def _ship(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside, on_water=True)
    length, a = rng.uniform(12, 55) * cv.s, rng.uniform(0, np.pi)
    w = rng.uniform(0.16, 0.3)
    hull = [(-0.5, -w / 2), (0.3, -w / 2), (0.5, 0), (0.3, w / 2), (-0.5, w / 2)]
    m = cv.blank()
    cv2.fillPoly(m, [poly(hull, cx, cy, a, length)], 1)
    cv.paint(m, jitter(rng, (200, 200, 195) if rng.random() < 0.6 else (70, 60, 60), 25), cid, 5)
    deck = cv.blank()
    cv2.fillPoly(deck, [poly(rect(0.3, w * 0.5), cx, cy, a, length)], 1)
    cv.paint(deck & m, jitter(rng, (120, 120, 130)), cid, 4)


def _tank(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
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
        cv.paint(m, jitter(rng, (225, 225, 215), 12), cid, 4)
        cv2.circle(cv.img, (int(x), int(y)), max(1, int(0.6 * r)), (170, 170, 165), 1)


def _baseball(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    r, a = rng.uniform(22, 48) * cv.s, rng.uniform(0, 360)
    m = cv.blank()
    cv2.ellipse(m, (int(cx), int(cy)), (int(r), int(r)), a, 0, 90, 1, -1)
    cv.paint(m, jitter(rng, (80, 140, 60)), cid, 5)
    infield = cv.blank()
    cv2.ellipse(infield, (int(cx), int(cy)), (int(0.55 * r), int(0.55 * r)), a, 0, 90, 1, -1)
    cv.paint(infield, jitter(rng, (185, 140, 95)), cid, 6)


def _court(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool, base: tuple[int, int, int],
           size: tuple[float, float], circle: bool) -> None:
    cx, cy = cv.center(rng, inside)
    a, n = rng.uniform(0, np.pi), int(rng.integers(1, 4))
    w = rng.uniform(*size) * cv.s
    h = w * rng.uniform(1.8, 2.2)
    color = jitter(rng, base, 15)
    for k in range(n):
        ox = cx + k * 1.2 * w * np.cos(a)
        oy = cy + k * 1.2 * w * np.sin(a)
        m = cv.blank()
        pts = poly(rect(w, h), ox, oy, a, 1.0)
        cv2.fillPoly(m, [pts], 1)
        cv.paint(m, color, cid, 4)
        cv2.polylines(cv.img, [poly(rect(0.8 * w, 0.85 * h), ox, oy, a, 1.0)], True, (235, 235, 235), 1)
        c, s = np.cos(a), np.sin(a)
        half = np.array([0.4 * w * c, 0.4 * w * s])
        mid = np.array([ox, oy])
        _line(cv, mid - half, mid + half, 235)
        if circle:
            cv2.circle(cv.img, (int(ox), int(oy)), max(1, int(0.15 * w)), (235, 235, 235), 1)


def _tennis(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    base = [(60, 130, 80), (60, 90, 150), (160, 70, 60)][int(rng.integers(3))]
    _court(cv, rng, cid, inside, base, (9, 16), circle=False)


def _basketball(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    _court(cv, rng, cid, inside, (200, 140, 80), (12, 20), circle=True)


def _track(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    L, a = rng.uniform(55, 110) * cv.s, rng.uniform(0, 180)
    w = L * rng.uniform(0.45, 0.6)
    m = cv.blank()
    cv2.ellipse(m, (int(cx), int(cy)), (int(L / 2), int(w / 2)), a, 0, 360, 1, -1)
    cv.paint(m, jitter(rng, (170, 70, 55)), cid, 5)
    inner = cv.blank()
    cv2.ellipse(inner, (int(cx), int(cy)), (int(L / 2 - 0.15 * w), int(0.35 * w)), a, 0, 360, 1, -1)
    cv.paint(inner, jitter(rng, (70, 150, 70)), cid, 5)


def _bridge(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside, on_water=True)
    a, w = rng.uniform(0, np.pi), rng.uniform(5, 13) * cv.s
    L = rng.uniform(0.5, 1.1) * cv.size
    m = cv.blank()
    cv2.fillPoly(m, [poly(rect(L, w), cx, cy, a, 1.0)], 1)
    cv.paint(m, jitter(rng, (150, 150, 145), 15), cid, 5)


def _vehicles(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool, length: tuple[float, float],
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
        cv2.fillPoly(m, [poly(rect(L, W), ox, oy, a + rng.normal(0, 0.05), 1.0)], 1)
        cv.paint(m, jitter(rng, palette[int(rng.integers(len(palette)))], 20), cid, 4)


def _large_vehicle(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    _vehicles(cv, rng, cid, inside, (14, 28), (1, 7), ((210, 210, 210), (200, 60, 50), (60, 80, 160), (90, 90, 90)))


def _small_vehicle(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    pal = ((230, 230, 230), (30, 30, 35), (180, 30, 30), (40, 60, 150), (150, 150, 155))
    _vehicles(cv, rng, cid, inside, (5, 10), (3, 16), pal)


def _mobile_home(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    _vehicles(cv, rng, cid, inside, (14, 24), (3, 13), ((235, 235, 225), (215, 205, 185), (200, 210, 220)))


def _helicopter(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    L, a = rng.uniform(12, 26) * cv.s, rng.uniform(0, np.pi)
    m = cv.blank()
    cv2.fillPoly(m, [poly(rect(0.5, 0.22), cx, cy, a, L)], 1)
    cv2.fillPoly(m, [poly([(0.2, -0.03), (0.75, -0.03), (0.75, 0.03), (0.2, 0.03)], cx, cy, a, L)], 1)
    b = a + rng.uniform(0, np.pi / 2)
    thick = max(1, round(0.06 * L))
    for ang in (b, b + np.pi / 2):
        d = 0.5 * L * np.array([np.cos(ang), np.sin(ang)])
        p, q = np.array([cx, cy]) - d, np.array([cx, cy]) + d
        cv2.line(m, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 1, thick)
    cv.paint(m, jitter(rng, (90, 100, 80) if rng.random() < 0.5 else (200, 200, 200), 20), cid, 4)


def _pool(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    w, a = rng.uniform(6, 26) * cv.s, rng.uniform(0, 180)
    h = w * rng.uniform(0.4, 0.8)
    m = cv.blank()
    if rng.random() < 0.5:
        cv2.ellipse(m, (int(cx), int(cy)), (max(1, int(w / 2)), max(1, int(h / 2))), a, 0, 360, 1, -1)
    else:
        cv2.fillPoly(m, [poly(rect(w, h), cx, cy, np.deg2rad(a), 1.0)], 1)
    cv.paint(m, jitter(rng, (60, 190, 225), 15), cid, 3)


def _roundabout(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    r = rng.uniform(16, 40) * cv.s
    m = cv.blank()
    cv2.circle(m, (int(cx), int(cy)), int(r), 1, -1)
    cv.paint(m, jitter(rng, (120, 120, 120), 12), cid, 5)
    inner = cv.blank()
    cv2.circle(inner, (int(cx), int(cy)), int(r * rng.uniform(0.45, 0.7)), 1, -1)
    cv.paint(inner, jitter(rng, (90, 150, 75)), cid, 6)


def _soccer(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    w, a = rng.uniform(45, 80) * cv.s, rng.uniform(0, np.pi)
    h = w * rng.uniform(1.4, 1.6)
    m = cv.blank()
    cv2.fillPoly(m, [poly(rect(w, h), cx, cy, a, 1.0)], 1)
    cv.paint(m, jitter(rng, (70, 160, 70), 12), cid, 4)
    cv2.polylines(cv.img, [poly(rect(0.9 * w, 0.92 * h), cx, cy, a, 1.0)], True, (235, 235, 235), 1)
    cv2.circle(cv.img, (int(cx), int(cy)), max(1, int(0.15 * w)), (235, 235, 235), 1)


def _plane(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    L, a = rng.uniform(16, 60) * cv.s, rng.uniform(0, 2 * np.pi)
    span, sweep = rng.uniform(0.8, 1.1), rng.uniform(0.05, 0.2)
    shape = [
        (0.5, 0), (0.4, -0.05), (0.1 - sweep, -span / 2), (-0.02 - sweep, -span / 2), (0.0, -0.05),
        (-0.35, -0.05), (-0.47, -0.2), (-0.5, -0.2), (-0.45, 0), (-0.5, 0.2), (-0.47, 0.2), (-0.35, 0.05),
        (0.0, 0.05), (-0.02 - sweep, span / 2), (0.1 - sweep, span / 2), (0.4, 0.05),
    ]
    m = cv.blank()
    cv2.fillPoly(m, [poly(shape, cx, cy, a, L)], 1)
    cv.paint(m, jitter(rng, (225, 225, 228), 15), cid, 4)


def _harbor(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside, on_water=True)
    a, L = rng.uniform(0, np.pi), rng.uniform(40, 110) * cv.s
    n, pier = int(rng.integers(2, 6)), rng.uniform(15, 40) * cv.s
    m = cv.blank()
    cv2.fillPoly(m, [poly(rect(L, 0.12 * L), cx, cy, a, 1.0)], 1)
    c, s = np.cos(a), np.sin(a)
    for k in range(n):
        t = (k + 0.5) / n - 0.5
        px, py = cx + t * L * c, cy + t * L * s
        ox, oy = px - (pier / 2) * s, py + (pier / 2) * c
        cv2.fillPoly(m, [poly(rect(0.06 * L, pier), ox, oy, a, 1.0)], 1)
    cv.paint(m, jitter(rng, (160, 150, 135), 15), cid, 5)


def _blob_mask(cv: Canvas, rng: np.random.Generator, inside: bool, radius: tuple[float, float]) -> np.ndarray:
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
    def draw(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
        m = _blob_mask(cv, rng, inside, radius)
        cv.paint(m, jitter(rng, rgb, 12), cid, grain)
        if speckle:
            x, y, w, h = cv2.boundingRect(m)
            dots = (rng.random((h, w)) < speckle) & m[y:y + h, x:x + w].astype(bool)
            cv.img[y:y + h, x:x + w][dots] *= 0.55

    return draw


def _buildings(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    a, n = rng.uniform(0, np.pi), int(rng.integers(1, 5))
    roof = [(170, 90, 70), (150, 150, 150), (200, 195, 185), (90, 90, 95)][int(rng.integers(4))]
    for k in range(n):
        w, h = rng.uniform(10, 35, 2) * cv.s
        ox, oy = cx + rng.normal(0, 25 * cv.s), cy + rng.normal(0, 25 * cv.s)
        shadow = cv.blank()
        cv2.fillPoly(shadow, [poly(rect(w, h), ox + 3 * cv.s, oy + 3 * cv.s, a, 1.0)], 1)
        cv.paint(shadow, np.float32([45, 45, 45]), 0, 3)
        m = cv.blank()
        cv2.fillPoly(m, [poly(rect(w, h), ox, oy, a, 1.0)], 1)
        cv.paint(m, jitter(rng, roof, 12), cid, 4)


def _field(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    cx, cy = cv.center(rng, inside)
    w, h = rng.uniform(50, 120, 2) * cv.s
    a = rng.uniform(0, np.pi)
    m = cv.blank()
    cv2.fillPoly(m, [poly(rect(w, h), cx, cy, a, 1.0)], 1)
    cv.paint(m, jitter(rng, (150, 170, 80), 20), cid, 4)
    furrows(cv, m, a, rng.uniform(3, 6) * cv.s)


def _pavement(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
    m = cv.blank()
    cx, cy = cv.center(rng, inside)
    a = rng.uniform(0, np.pi)
    d = cv.size * np.array([np.cos(a), np.sin(a)])
    cv2.line(m, (int(cx - d[0]), int(cy - d[1])), (int(cx + d[0]), int(cy + d[1])), 1,
             max(2, int(rng.uniform(8, 22) * cv.s)))
    if rng.random() < 0.5:
        cv2.fillPoly(m, [poly(rect(*(rng.uniform(20, 50, 2) * cv.s)), cx, cy, a, 1.0)], 1)
    cv.paint(m, jitter(rng, (125, 125, 122), 10), cid, 5)


def _sea(cv: Canvas, rng: np.random.Generator, cid: int, inside: bool) -> None:
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
    cv.paint(m, jitter(rng, (40, 80, 120), 12), cid, 3)
    cv.water |= m.astype(bool)


def furrows(cv: Canvas, mask: np.ndarray, angle: float, spacing: float) -> None:
    """Darken stripes ``spacing`` px apart at ``angle`` inside ``mask`` (ploughed fields)."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0:
        return
    yy, xx = np.mgrid[y:y + h, x:x + w].astype(np.float32)
    phase = (xx * np.cos(angle) - yy * np.sin(angle)) / max(spacing, 1.0)
    stripes = (np.sin(2 * np.pi * phase) > 0.3) & mask[y:y + h, x:x + w].astype(bool)
    cv.img[y:y + h, x:x + w][stripes] *= 0.85


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
ON_WATER = {"isaid5i": (1, 7, 15), "dlrsd5i": (7, 14)}  # classes drawn on water: the tile gets some
