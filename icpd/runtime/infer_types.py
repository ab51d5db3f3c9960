"""What an ``icpd infer`` run takes and gives: :class:`InferOptions` (checked once, the tile resolved
per model), the per-scene :class:`InputResult` recorded in ``summary.json``, the run's
:class:`InferSummary`, a scene's :class:`ScenePrediction` and the :class:`InferProgress` events the
CLI draws its bar from. Plain records: the pipeline is :mod:`icpd.runtime.infer`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from icpd.runtime.tiling import min_tile
from icpd.runtime.validation import check_threshold
from icpd.runtime.windowed import ScenePrediction

__all__ = ["MIN_TILE_ANY", "InferOptions", "InferProgress", "InferSummary", "InputResult", "ScenePrediction"]

MIN_TILE_ANY = 32  # min_tile() of the smallest preset (tiny, 128 px input)


@dataclass(frozen=True)
class InferOptions:
    """How to run and what to write. Checked once, when made (ValueError naming the option)."""

    threshold: float = 0.5  # foreground probability a class needs to win a pixel (>=)
    tile: int | None = None  # tile side in scene pixels; None: the model input S (see for_model)
    overlap: int = 32  # pixels shared by neighbouring tiles (blended with a raised cosine)
    batch: int = 8  # tiles per predictor call
    save_probs: bool = False  # also write <stem>_prob_<class>.png (uint8, round(p * 255))
    save_priors: bool = False  # also write <stem>_prior_<class>.png heat maps at scene size
    alpha: float = 0.5  # opacity of the class colours in <stem>_overlay.png
    recursive: bool = False  # descend into sub-folders of folder inputs
    bands: tuple[int, int, int] | None = None  # 1-based band numbers used as R, G, B (None: the file's rules)

    def __post_init__(self) -> None:
        check_threshold(self.threshold)  # the Predictor's rule and words
        if self.tile is not None and self.tile < 1:
            raise ValueError(f"--tile {self.tile}: must be >= 1 pixel (default: the model input size)")
        if self.overlap < 0 or (self.tile is not None and self.overlap >= self.tile):
            bound = f"tile ({self.tile})" if self.tile is not None else "tile"
            hint = f"; e.g. --overlap {self.tile // 4}" if self.tile is not None else ""
            if self.tile is not None and self.tile < MIN_TILE_ANY:
                raise ValueError(
                    f"--tile {self.tile}: too small for any model: tiles are resized to the model input, so one below "
                    f"a quarter of it (>= {MIN_TILE_ANY} px for every preset) is upsampled blur, and the tile count "
                    "grows as 1/tile²; omit --tile to use the model input size")
            raise ValueError(f"--overlap {self.overlap}: must satisfy 0 <= overlap < {bound}{hint}")
        if self.batch < 1:
            raise ValueError(f"--batch {self.batch}: must be >= 1")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"overlay alpha {self.alpha}: must be in [0, 1]")
        if self.bands is not None and (len(self.bands) != 3 or any(b < 1 for b in self.bands)):
            raise ValueError(f"--bands {self.bands}: pass three 1-based band numbers R,G,B, e.g. --bands 4,3,2")

    def for_model(self, model_size: int) -> InferOptions:
        """These options with ``tile`` resolved (None -> the model input ``model_size``), so the
        overlap is checked against the actual tile once, here. ``self`` when the tile is set.

        Raises:
            ValueError: a tile below :func:`~icpd.runtime.tiling.min_tile` (the message says why).
        """
        low = min_tile(model_size)
        if self.tile is not None and self.tile < low:
            raise ValueError(
                f"--tile {self.tile}: the smallest useful tile for this model is {low} px: each tile is resized "
                f"to the model input ({model_size} px), so a smaller one is upsampled more than "
                f"{model_size // low}x (blur, not detail) and the tile count grows as 1/tile²; "
                f"omit --tile for {model_size}")
        return self if self.tile is not None else replace(self, tile=model_size)

    def validate(self, model_size: int) -> int:
        """The tile side for a model of input ``model_size`` (:meth:`for_model`'s tile)."""
        tile = self.for_model(model_size).tile
        return model_size if tile is None else tile


@dataclass
class InputResult:
    """One input's outcome, as recorded in summary.json."""

    path: str
    status: str  # "ok" or "error"
    height: int | None = None
    width: int | None = None
    tiles: int = 0
    seconds: float = 0.0  # read + predict + write, wall clock
    foreground: dict[str, float] = field(default_factory=dict)  # class -> fraction of pixels labelled with it
    pixels: dict[str, int] = field(default_factory=dict)  # class -> pixels labelled with it ("nodata" too)
    area: dict[str, float] | None = None  # class -> area in area_unit (georeferenced scenes)
    area_unit: str | None = None  # e.g. "m²" for a projected CRS in metres
    outputs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # conversions made while reading
    error: str | None = None
    resumed_from: str | None = None  # the earlier run whose complete outputs this scene kept (not redone)


@dataclass
class InferSummary:
    results: list[InputResult]
    class_names: list[str]
    summary_path: Path
    skipped: list[str] = field(default_factory=list)  # inputs inside the output folder
    run_id: str = ""
    interrupted: bool = False

    @property
    def failed(self) -> list[InputResult]:
        return [r for r in self.results if r.status != "ok"]

    @property
    def ok(self) -> bool:
        return not self.failed


class InferProgress(Protocol):
    """Receives progress events (the CLI draws a bar from them)."""

    def start_input(self, path: Path) -> None: ...

    def tiles_done(self, done: int, total: int) -> None: ...

    def finish_input(self, result: InputResult) -> None: ...

    # optional: ``scene_planned(path, height, width, tiles)`` before a scene's tiles start
