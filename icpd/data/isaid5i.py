"""iSAID-5i reader (the published layout; the root is always given by the caller).

Layout::

    ROOT/{trn,val}/images/<tile>.png
    ROOT/{trn,val}/semantic_png/<tile>_instance_color_RGB.png   # pixel = class id 1..15, 0 = background
    ROOT/{trn,val}/list/split{f}.txt                            # lines: <label file name>_<NN>

e.g. ``P1092_1648_1904_824_1080_instance_color_RGB.png_04`` = tile ``P1092_1648_1904_824_1080``
contains class 4 (tennis court). Label files may be single-channel or RGB with equal channels
(see :mod:`icpd.data.imageio`); colour-coded labels are refused.
"""

from __future__ import annotations

from pathlib import Path

import torch

from icpd.config import Preset
from icpd.data.episodes import FewShotDataset
from icpd.data.fold_lists import (
    FoldIndex,
    Sample,
    Split,
    check_root,
    make_parser,
    read_fold_lists,
    split_classes,
    split_folds,
)

CLASS_NAMES: tuple[str, ...] = (
    "ship", "storage tank", "baseball diamond", "tennis court", "basketball court",
    "ground track field", "bridge", "large vehicle", "small vehicle", "helicopter",
    "swimming pool", "roundabout", "soccer ball field", "plane", "harbor",
)
LABEL_SUFFIX = "_instance_color_RGB.png"
LINE_FORMAT = "'<tile>_instance_color_RGB.png_<NN>', e.g. 'P1092_1648_1904_824_1080_instance_color_RGB.png_04'"
_parse = make_parser(r"(.+)_instance_color_RGB\.png_(\d{2})")


def list_path(root: str | Path, split: Split, fold: int) -> Path:
    """``ROOT/<split>/list/split<fold>.txt``."""
    return Path(root) / split / "list" / f"split{fold}.txt"


def index_isaid5i(root: str | Path, fold: int, split: Split, skip_missing: bool = False) -> FoldIndex:
    """Read the iSAID-5i lists of ``fold``/``split`` into a :class:`FoldIndex` (checks files exist)."""
    root = check_root(root, "iSAID-5i")
    base = root / split

    def resolve(tile: str) -> Sample:
        return Sample(tile, base / "images" / f"{tile}.png", base / "semantic_png" / f"{tile}{LABEL_SUFFIX}")

    lists = [(f, list_path(root, split, f)) for f in split_folds(fold, split)]
    entries, skipped = read_fold_lists(lists, _parse, resolve, LINE_FORMAT, skip_missing)
    return FoldIndex(entries, split_classes(fold, split), CLASS_NAMES, [p for _, p in lists], skipped=skipped)


class ISAID5i(FewShotDataset):
    """iSAID-5i episodes of one fold and split; see :class:`FewShotDataset` for the items."""

    def __init__(
        self,
        root: str | Path,
        fold: int,
        split: Split,
        shot: int = 1,
        class_embeddings: torch.Tensor | None = None,
        preset: str | Preset = "paper",
        seed: int = 0,
        episodes_per_epoch: int | None = None,
        augment: bool | None = None,
        skip_missing: bool = False,
    ) -> None:
        index = index_isaid5i(root, fold, split, skip_missing)
        super().__init__(index, split, shot, class_embeddings, preset, seed, episodes_per_epoch, augment)
        self.fold = fold
