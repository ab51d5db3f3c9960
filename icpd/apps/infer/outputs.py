"""Where a scene comes from and what is written for it (``icpd infer``, single process or Ray).

Sources: a TIFF is opened for window reads (:class:`~icpd.io.windows.WindowReader`) when
rasterio is installed; PNG, JPEG (and TIFFs without rasterio) are decoded whole.

Outputs, per scene of stem ``S``:

* every scene up to :data:`WHOLE_MAX_PIXELS`: ``S_labels.png`` (+ georeferencing sidecars),
  ``S_overlay.png``, and with the options ``S_prob_<class>.png`` / ``S_prior_<class>.png``;
  these are assembled in memory (PNG cannot be written by windows);
* larger scenes: ``S_overlay.tif``, ``S_prob_<class>.tif``, ``S_prior_<class>.tif`` instead,
  written block by block (tiled, COG);
* every georeferenced scene (and every scene larger than the limit): ``S_labels.tif``, a tiled
  COG written block by block with the input's CRS and transform, class colours and names;
  where the input declares nodata, pixels that are nodata in all three used bands get
  label 255, declared as the output's nodata, and count in no class.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from icpd.io import Raster, read_image, write_label_png, write_png
from icpd.io.raster import TIFF_SUFFIXES, import_rasterio
from icpd.io.viz import OVERLAY_PALETTE, colorize_labels, heatmap, overlay
from icpd.io.windows import WindowReader, WindowWriter
from icpd.runtime.scene import NODATA_LABEL, ArraySource, SceneSource, SceneStats

if TYPE_CHECKING:
    from icpd.io import GeoInfo

__all__ = ["NODATA_LABEL", "WHOLE_MAX_PIXELS", "OpenedScene", "SceneOutputs", "open_source", "safe_name"]

WHOLE_MAX_PIXELS = 4096 * 4096  # larger scenes: no PNG outputs (they would need the whole scene in memory)


def safe_name(text: str) -> str:
    """A class name as a file-name part: anything but letters, digits, '.', '-' becomes '_'."""
    return re.sub(r"[^A-Za-z0-9.\-]+", "_", text).strip("_") or "class"


class OpenedScene(NamedTuple):
    """One input opened for a run (:func:`open_source`)."""

    source: SceneSource  # windows of the scene as RGB
    geo: GeoInfo | None  # its georeferencing
    notes: tuple[str, ...]  # conversions made while reading
    # the decoded image when read whole (PNG, JPEG, a TIFF without rasterio), for its sidecars
    raster: Raster | None


def open_source(path: Path, bands: tuple[int, int, int] | None = None) -> OpenedScene:
    """One input, opened: a TIFF read by windows when rasterio is here, anything else decoded whole.

    Raises:
        ImageError: unreadable file or pixels refused (the message names the file and the fix).
    """
    if path.suffix.lower() in TIFF_SUFFIXES and import_rasterio() is not None:
        reader = WindowReader(path, bands)
        return OpenedScene(reader, reader.geo, reader.notes, None)
    raster = read_image(path, bands)
    return OpenedScene(ArraySource(raster.pixels), raster.geo, tuple(raster.notes), raster)


def _colormap(classes: int) -> dict[int, tuple[int, int, int]]:
    cmap = {i: tuple(int(v) for v in OVERLAY_PALETTE[i]) for i in range(classes + 1)}  # the overlay's colours
    cmap[NODATA_LABEL] = (0, 0, 0)
    return cmap


class SceneOutputs:
    """The block sink of :func:`~icpd.runtime.scene.run_scene` for one scene: writes (or
    assembles) every output, counts pixels per class. :meth:`finish` returns the files;
    :meth:`abort` removes what was written (an input never half-done)."""

    def __init__(self, out_dir: Path, stem: str, path: Path, scene: OpenedScene, class_names: list[str],
                 alpha: float, save_probs: bool, save_priors: bool) -> None:
        source, geo = scene.source, scene.geo
        self.out_dir, self.stem, self.path, self.source, self.geo = out_dir, stem, path, source, geo
        self.raster = scene.raster
        self.class_names, self.alpha = class_names, alpha
        self.save_probs, self.save_priors = save_probs, save_priors
        self.stats = SceneStats()
        h, w, n = source.height, source.width, len(class_names)
        self.whole = h * w <= WHOLE_MAX_PIXELS
        self._nodata = source.nodata is not None
        self.written: list[Path] = []
        self._writers: list[tuple[str, WindowWriter]] = []
        names = [safe_name(c) for c in class_names]
        try:
            if geo is not None or not self.whole:
                legend = ", ".join(f"{i + 1} {c}" for i, c in enumerate(class_names))
                self._add("labels", WindowWriter(out_dir / f"{stem}_labels.tif", h, w, 1, "uint8", geo,
                                                 NODATA_LABEL if self._nodata else None, _colormap(n),
                                                 [f"labels: 0 background, {legend}"]))
            if self.whole:
                self._labels = np.zeros((h, w), np.uint8)
                self._probs = np.zeros((n, h, w), np.float32) if save_probs else None
                self._priors = np.zeros((n, h, w), np.float32) if save_priors else None
            else:
                self._add("overlay", WindowWriter(out_dir / f"{stem}_overlay.tif", h, w, 3, "uint8", geo,
                                                  resampling="average"))
                for i, name in enumerate(names):
                    if save_probs:
                        prob = out_dir / f"{stem}_prob_{name}.tif"
                        what = [f"{class_names[i]}: round(p * 255)"]
                        self._add(f"prob{i}", WindowWriter(prob, h, w, 1, "uint8", geo, descriptions=what,
                                                           resampling="average"))
                    if save_priors:
                        prior = out_dir / f"{stem}_prior_{name}.tif"
                        self._add(f"prior{i}", WindowWriter(prior, h, w, 3, "uint8", geo,
                                                            resampling="average"))
        except BaseException:
            self.abort()
            raise

    def _add(self, key: str, writer: WindowWriter) -> None:
        self._writers.append((key, writer))

    def _writer(self, key: str) -> WindowWriter | None:
        return next((w for k, w in self._writers if k == key), None)

    def __call__(self, top: int, left: int, probs: np.ndarray, labels: np.ndarray, priors: np.ndarray | None,
                 edges: np.ndarray) -> None:
        """One output block (:data:`~icpd.runtime.scene.BlockSink`): labels carry NODATA_LABEL already."""
        h, w_ = labels.shape
        self.stats.add(labels, len(self.class_names))
        if (w := self._writer("labels")) is not None:
            w.write(top, labels, left)
        if self.whole:
            self._labels[top : top + h, left : left + w_] = labels
            if self._probs is not None:
                self._probs[:, top : top + h, left : left + w_] = probs
            if self._priors is not None and priors is not None:
                self._priors[:, top : top + h, left : left + w_] = priors
            return
        shown = np.where(labels == NODATA_LABEL, 0, labels)
        tinted = overlay(self.source.read(top, left, h, w_), shown, self.alpha, outline=False)
        # outlines from the labels around the block
        tinted[edges] = colorize_labels(shown, OVERLAY_PALETTE)[edges]
        self._writer("overlay").write(top, np.moveaxis(tinted, -1, 0), left)
        for i in range(len(self.class_names)):
            if (w := self._writer(f"prob{i}")) is not None:
                w.write(top, _to_u8(probs[i]), left)
            if (w := self._writer(f"prior{i}")) is not None and priors is not None:
                w.write(top, np.moveaxis(heatmap(np.clip(priors[i], 0.0, 1.0)), -1, 0), left)

    def finish(self) -> list[Path]:
        """Commit the block-written files, write the assembled ones; all paths written."""
        try:
            for _, w in self._writers:
                self.written.append(w.commit())
            self._writers = []
            if self.whole:
                self._write_whole()
        except BaseException:
            self.abort()
            raise
        return self.written

    def _write_whole(self) -> None:
        raster = self.raster
        if raster is not None:
            pixels = raster.pixels
        else:
            pixels = self.source.read(0, 0, self.source.height, self.source.width)
        like = raster if raster is not None else Raster(pixels=pixels, path=self.path, geo=self.geo)
        labels = self._labels
        self.written += write_label_png(self.out_dir / f"{self.stem}_labels.png", labels, like=like,
                                        palette=OVERLAY_PALETTE)  # the overlay's colours, values unchanged
        shown = np.where(labels == NODATA_LABEL, 0, labels) if self._nodata else labels
        self.written.append(write_png(self.out_dir / f"{self.stem}_overlay.png",
                                      overlay(pixels, shown, self.alpha, class_names=self.class_names)))
        names = [safe_name(c) for c in self.class_names]
        if self._probs is not None:
            for name, p in zip(names, self._probs):
                self.written.append(write_png(self.out_dir / f"{self.stem}_prob_{name}.png", _to_u8(p)))
        if self._priors is not None:
            for name, p in zip(names, self._priors):
                self.written.append(write_png(self.out_dir / f"{self.stem}_prior_{name}.png",
                                              heatmap(np.clip(p, 0.0, 1.0), colorbar=True)))

    def abort(self) -> None:
        for _, w in self._writers:
            w.abort()
        self._writers = []
        for f in self.written:
            with contextlib.suppress(OSError):
                f.unlink()
        self.written = []


def _to_u8(p: np.ndarray) -> np.ndarray:
    return np.round(np.clip(p, 0.0, 1.0) * 255.0).astype(np.uint8)
