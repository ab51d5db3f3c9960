"""The fold lists of the HSNet-style ``*-5i`` benchmarks: which classes a fold holds, and the
(image, class) entries of one split read from its list files, every line and file checked.

Folds: 15 classes, 3 folds of 5; fold ``f``'s novel classes are ids ``5f+1 .. 5f+5``. Training
reads the lists of the other two folds, validation the list of fold ``f``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from icpd.data.imageio import DatasetError

NUM_CLASSES = 15
NUM_FOLDS = 3
Split = Literal["trn", "val"]


def fold_classes(fold: int) -> list[int]:
    """Novel (validation) class ids of ``fold``: ``5f+1 .. 5f+5``."""
    check_fold(fold)
    per = NUM_CLASSES // NUM_FOLDS
    return list(range(per * fold + 1, per * fold + per + 1))


def split_classes(fold: int, split: Split) -> list[int]:
    """Class ids an episode of ``split`` may target: fold ``fold``'s for ``val``, the rest for ``trn``."""
    check_split(split)
    novel = fold_classes(fold)
    if split == "val":
        return novel
    return [c for c in range(1, NUM_CLASSES + 1) if c not in novel]


def split_folds(fold: int, split: Split) -> list[int]:
    """Folds whose lists ``split`` reads: ``[fold]`` for ``val``, the other two for ``trn``."""
    check_fold(fold)
    check_split(split)
    return [fold] if split == "val" else [f for f in range(NUM_FOLDS) if f != fold]


def check_fold(fold: int) -> None:
    if fold not in range(NUM_FOLDS):
        raise ValueError(f"fold must be 0, 1 or 2, got {fold!r}")


def check_split(split: str) -> None:
    if split not in ("trn", "val"):
        raise ValueError(f"split must be 'trn' or 'val', got {split!r}")


@dataclass(frozen=True)
class Sample:
    """One image of a data set and its label file."""

    name: str  # identifier used in lists and episode names
    image: Path  # RGB image file
    label: Path  # class-id label file


@dataclass(frozen=True)
class ListEntry:
    """One line of a fold list: an image that contains ``class_id``."""

    sample: Sample
    class_id: int  # 1..15


@dataclass
class FoldIndex:
    """The (image, class) entries of one split of one fold, read from the list files."""

    entries: list[ListEntry]  # in list order; validation walks these
    classes: list[int]  # class ids episodes may target
    class_names: tuple[str, ...]  # names of ids 1..15
    list_files: list[Path]  # lists the entries came from
    max_label: int = NUM_CLASSES  # largest value allowed in label files
    native_size: int | None = None  # bring each file to this side first (DLRSD: 256), else None
    skipped: list[str] = field(default_factory=list)  # list lines skipped for missing files

    def by_class(self) -> dict[int, list[Sample]]:
        """Distinct images per class, in first-listed order."""
        out: dict[int, dict[str, Sample]] = {c: {} for c in self.classes}
        for e in self.entries:
            out.setdefault(e.class_id, {}).setdefault(e.sample.name, e.sample)
        return {c: list(s.values()) for c, s in out.items()}


LineParser = Callable[[str], "tuple[str, int] | None"]
SampleResolver = Callable[[str], Sample]


def read_fold_lists(
    list_files: Sequence[tuple[int, Path]],
    parse_line: LineParser,
    resolve: SampleResolver,
    line_format: str,
    skip_missing: bool = False,
) -> tuple[list[ListEntry], list[str]]:
    """Read fold lists into entries, checking every line and that its files exist.

    Args:
        list_files: ``(fold, path)`` pairs; a line's class must belong to its fold.
        parse_line: line -> ``(sample name, class id)``, or None when malformed.
        resolve: sample name -> :class:`Sample` with its file paths.
        line_format: the expected line format with an example, for error messages.
        skip_missing: skip (and report) entries whose files are missing instead of failing.

    Returns:
        The entries and the skipped lines (``"<list>:<line no>: <reason>"``).
    """
    entries: list[ListEntry] = []
    missing: list[str] = []
    for fold, path in list_files:
        if not path.is_file():
            raise DatasetError(
                f"list file {path} does not exist; check the data set root (and the list directory, if you "
                "gave one) — the fold lists ship with the benchmark"
            )
        allowed = fold_classes(fold)
        for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            line = raw.strip()
            if not line:
                continue
            parsed = parse_line(line)
            if parsed is None:
                raise DatasetError(f"list file {path} line {lineno}: malformed entry {line!r}; expected {line_format}")
            name, class_id = parsed
            if class_id not in allowed:
                raise DatasetError(
                    f"list file {path} line {lineno}: class id {class_id} in {line!r} is not one of fold {fold}'s "
                    f"classes {allowed[0]}..{allowed[-1]}; is this list in the right place?"
                )
            sample = resolve(name)
            absent = [p for p in (sample.image, sample.label) if not p.is_file()]
            if absent:
                missing.append(f"{path}:{lineno}: missing {', '.join(str(p) for p in absent)}")
                continue
            entries.append(ListEntry(sample, class_id))
    if missing and not skip_missing:
        shown = "\n  ".join(missing[:5])
        more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DatasetError(
            f"{len(missing)} list entries point at missing files:\n  {shown}{more}\n"
            "Restore the files, fix the lists, or pass skip_missing=True to skip these entries "
            "(the count is then in dataset.skipped)"
        )
    return entries, missing


def check_root(root: str | Path, what: str) -> Path:
    """Return ``root`` as a Path, or raise naming it when it is not a directory."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{what} root {root} does not exist or is not a directory; pass the folder you unpacked")
    return root


def make_parser(pattern: str) -> LineParser:
    """A line parser from a regex with two groups: sample name and class id."""
    rx = re.compile(pattern)

    def parse(line: str) -> tuple[str, int] | None:
        m = rx.fullmatch(line)
        return None if m is None else (m.group(1), int(m.group(2)))

    return parse
