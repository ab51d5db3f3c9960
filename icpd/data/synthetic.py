"""Procedurally generated aerial-like tiles in the iSAID-5i or DLRSD-5i layout.

``synthesize(out, layout, tiles, seed)`` writes ``tiles`` tiles for *each* of ``trn`` and ``val``,
with label files and fold lists, so :class:`~icpd.data.isaid5i.ISAID5i` and
:class:`~icpd.data.dlrsd5i.DLRSD5i` read the result unchanged. It is for tests, demos and
smoke-training, not a benchmark.

Each tile has a textured land-cover background (low-frequency colour variation, grain, crop
fields with furrows, roads, water bodies) and several objects, drawn by the painters of
:mod:`icpd.data.synthetic_shapes`; objects may be small, cut by the tile border, and occlude each
other (the later one wins in the label). Ships, bridges and harbours sit on water.

Class coverage: in every run of 5 consecutive tiles of a split, each of the 15 classes is the
*primary* class of exactly one tile and is guaranteed visible there (at least ``MIN_PIXELS``
pixels at 256 px). So ``tiles >= 5 * (K + 1)`` per split (30 for 5-shot) guarantees that
K-shot episodes can be drawn for every class of every fold; extra classes add more. A class is
listed for a tile when it covers at least ``MIN_PIXELS`` pixels (scaled with the tile area).

Output is a pure function of ``(layout, tiles, seed, size, zoom)``: same arguments, same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from icpd.data.fold_lists import NUM_CLASSES, NUM_FOLDS
from icpd.data.synthetic_shapes import (
    DLRSD_FAMILIES,
    ISAID_FAMILIES,
    ON_WATER,
    Canvas,
    furrows,
    jitter,
    poly,
    rect,
)
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


# -- background ----------------------------------------------------------------------------------
def _smooth(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in 0..1, ``(size, size)`` float32."""
    return cv2.resize(rng.random((cells, cells)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)


def _background(rng: np.random.Generator, size: int, water: bool, zoom: float = 1.0) -> Canvas:
    land = [(120, 130, 85), (140, 125, 95), (110, 115, 110), (95, 125, 75)][int(rng.integers(4))]
    base = np.asarray(land, np.float32) + rng.normal(0, 10, 3).astype(np.float32)
    tone = _smooth(rng, size, 4)[..., None] - 0.5
    img = base + 50.0 * tone * np.float32([1.0, 0.9, 0.8])
    cv = Canvas(np.ascontiguousarray(img, dtype=np.float32), np.zeros((size, size), bool), rng, zoom)
    for _ in range(int(rng.integers(0, 4))):  # crop fields with furrows
        m = cv.blank()
        w, h = rng.uniform(40, 140, 2) * cv.s
        a = rng.uniform(0, np.pi)
        cv2.fillPoly(m, [poly(rect(w, h), *(rng.uniform(0, size, 2)), a, 1.0)], 1)
        cv.paint(m, jitter(rng, (130, 150, 80), 25), 0, 5)
        furrows(cv, m, a, rng.uniform(3, 7) * cv.s)
    if water or rng.random() < 0.3:
        lake = _smooth(rng, size, 3)
        cv.water = lake > np.quantile(lake, 1 - rng.uniform(0.3, 0.5))
        cv.paint(cv.water.astype(np.uint8), jitter(rng, (45, 75, 95), 10), 0, 3)
    for _ in range(int(rng.integers(0, 3))):  # roads
        m = cv.blank()
        p = rng.uniform(0, size, 2)
        a = rng.uniform(0, np.pi)
        d = 2 * size * np.array([np.cos(a), np.sin(a)])
        cv2.line(m, tuple(int(v) for v in p - d), tuple(int(v) for v in p + d), 1,
                 max(2, int(rng.uniform(5, 14) * cv.s)))
        cv.paint(m, jitter(rng, (105, 105, 100), 10), 0, 4)
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
    need_water = any(c in ON_WATER[layout] for c in primaries + extras)
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
        raise ValueError(f"need tiles >= 1, size >= 32 and zoom in [0.25, 8], "
                         f"got tiles={tiles}, size={size}, zoom={zoom}")
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
            path = (out / split / "list" / f"split{f}.txt" if layout == "isaid5i"
                    else out / "DLRSD_5i" / split / f"fold{f}.txt")
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
