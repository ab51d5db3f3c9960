"""What an ``icpd infer`` run takes and gives: :class:`InferOptions` (checked once, the tile resolved
per model), the per-scene :class:`InputResult` recorded in ``summary.json``, the run's
:class:`InferSummary`, a scene's :class:`ScenePrediction` and the :class:`InferProgress` events the
CLI draws its bar from. Plain records: the pipeline is :mod:`icpd.apps.infer.local`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from icpd.io.raster import parse_bands
from icpd.runtime.scene import ScenePrediction
from icpd.runtime.tiling import SceneOptions

__all__ = ["InferOptions", "InferProgress", "InferSummary", "InputResult", "ScenePrediction"]


@dataclass(frozen=True)
class InferOptions(SceneOptions):
    """How to run and what to write: the scene options (threshold, tile, overlap, batch) and the
    outputs of a file run. Checked once, when made (ValueError naming the option)."""

    save_probs: bool = False  # also write <stem>_prob_<class>.png (uint8, round(p * 255))
    save_priors: bool = False  # also write <stem>_prior_<class>.png heat maps at scene size
    alpha: float = 0.5  # opacity of the class colours in <stem>_overlay.png
    recursive: bool = False  # descend into sub-folders of folder inputs
    bands: tuple[int, int, int] | None = None  # 1-based band numbers used as R, G, B (None: the file's rules)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"overlay alpha {self.alpha}: must be in [0, 1]")
        object.__setattr__(self, "bands", parse_bands(self.bands))  # the one band parser ("4,3,2" too)


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
    """Receives progress events (the CLI draws a bar from them), from the local and the Ray runner."""

    def start_input(self, path: Path) -> None:
        """A scene starts (local runner; Ray runs scenes side by side and does not call it)."""
        ...

    def scene_planned(self, path: Path, height: int, width: int, tiles: int) -> None:
        """A scene of ``height x width`` px was opened and cut into ``tiles`` tiles (before they run)."""
        ...

    def tiles_done(self, done: int, total: int) -> None:
        """``done`` of ``total`` tiles predicted (of the scene locally, of the run on Ray)."""
        ...

    def finish_input(self, result: InputResult) -> None:
        """A scene is finished: done, failed, or complete in an earlier run (``resumed_from``)."""
        ...
