"""DLRSD-5i reader (the published layout; the root is always given by the caller).

Layout::

    ROOT/UCMerced_LandUse/Images/<category>/<name>.tif   # e.g. airplane/airplane00.tif
    ROOT/DLRSD/Labels/<category>/<name>.png             # pixel = class id
    ROOT/DLRSD_5i/{trn,val}/fold{f}.txt                 # lines: <name>__<class id>, e.g. airplane00__1

``category`` is the name without its digits. The list directory can be given separately
(``list_dir``, holding ``{trn,val}/fold{f}.txt``).

Tiles are 256 x 256; a file that is not (UCMerced holds a few 256 x 24x tiles) is resized to
256 x 256 on its own (image bilinear, label nearest) before the usual resize to the preset size;
files more than 10% off are refused. DLRSD labels carry 17 classes: ids 16 (trees) and 17
(water) are not DLRSD-5i classes, so they are accepted in label files and are background in
every episode mask. Any value above 17 is refused.
"""

from __future__ import annotations

import re
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
    "airplane", "bare soil", "buildings", "cars", "chaparral", "court", "dock", "field", "grass",
    "mobile home", "pavement", "sand", "sea", "ship", "storage tanks",
)
NATIVE_SIZE = 256
MAX_LABEL = 17  # DLRSD's 17 classes; 16 (trees) and 17 (water) are background here
LINE_FORMAT = "'<name>__<class id>', e.g. 'airplane00__1'"
_parse = make_parser(r"([A-Za-z_]*[A-Za-z]\d+)__(\d{1,2})")


def category(name: str) -> str:
    """UCMerced category of an image name: the name without digits (``airplane00`` -> ``airplane``)."""
    return re.sub(r"\d", "", name)


def list_path(list_dir: str | Path, split: Split, fold: int) -> Path:
    """``<list_dir>/<split>/fold<fold>.txt`` (``list_dir`` defaults to ``ROOT/DLRSD_5i``)."""
    return Path(list_dir) / split / f"fold{fold}.txt"


def index_dlrsd5i(
    root: str | Path, fold: int, split: Split, list_dir: str | Path | None = None, skip_missing: bool = False
) -> FoldIndex:
    """Read the DLRSD-5i lists of ``fold``/``split`` into a :class:`FoldIndex` (checks files exist)."""
    root = check_root(root, "DLRSD-5i")
    lists_root = root / "DLRSD_5i" if list_dir is None else check_root(list_dir, "DLRSD-5i list")

    def resolve(name: str) -> Sample:
        cat = category(name)
        return Sample(
            name,
            root / "UCMerced_LandUse" / "Images" / cat / f"{name}.tif",
            root / "DLRSD" / "Labels" / cat / f"{name}.png",
        )

    lists = [(f, list_path(lists_root, split, f)) for f in split_folds(fold, split)]
    entries, skipped = read_fold_lists(lists, _parse, resolve, LINE_FORMAT, skip_missing)
    return FoldIndex(
        entries, split_classes(fold, split), CLASS_NAMES, [p for _, p in lists],
        max_label=MAX_LABEL, native_size=NATIVE_SIZE, skipped=skipped,
    )


class DLRSD5i(FewShotDataset):
    """DLRSD-5i episodes of one fold and split; see :class:`FewShotDataset` for the items."""

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
        list_dir: str | Path | None = None,
        skip_missing: bool = False,
    ) -> None:
        index = index_dlrsd5i(root, fold, split, list_dir, skip_missing)
        super().__init__(index, split, shot, class_embeddings, preset, seed, episodes_per_epoch, augment)
        self.fold = fold
