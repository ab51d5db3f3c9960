"""Shared fixtures: synthetic trees of both layouts and tiny hand-built trees for bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from icpd.data.synthetic import SynthSummary, synthesize

TILES = 30  # per split: the documented minimum for 5-shot (5 * (K + 1))


@pytest.fixture(scope="session")
def isaid_synth(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return synthesize(tmp_path_factory.mktemp("isaid") / "iSAID-5i", "isaid5i", TILES, seed=3)


@pytest.fixture(scope="session")
def dlrsd_synth(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return synthesize(tmp_path_factory.mktemp("dlrsd") / "DLRSD-5i", "dlrsd5i", TILES, seed=4)


def write(path: Path, array: np.ndarray) -> Path:
    """Write an image with cv2 (RGB arrays are given in RGB order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), array)
    return path


def striped_label(size: int, classes: list[int]) -> np.ndarray:
    """``(size, size)`` label with one horizontal band per class (background between)."""
    label = np.zeros((size, size), np.uint8)
    band = size // (len(classes) + 1)
    for k, c in enumerate(classes):
        label[(k + 1) * band - band // 2:(k + 1) * band, :] = c
    return label


def make_isaid_tree(root: Path, tiles: int = 2, size: int = 32, split: str = "val") -> Path:
    """A tiny valid iSAID-5i tree: ``tiles`` tiles each holding classes 1..15, all lists filled."""
    rng = np.random.default_rng(0)
    lines: dict[int, list[str]] = {0: [], 1: [], 2: []}
    for t in range(tiles):
        name = f"P{t:04d}_0_{size}_0_{size}"
        write(root / split / "images" / f"{name}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        write(root / split / "semantic_png" / f"{name}_instance_color_RGB.png", striped_label(size, list(range(1, 16))))
        for c in range(1, 16):
            lines[(c - 1) // 5].append(f"{name}_instance_color_RGB.png_{c:02d}")
    for f, ls in lines.items():
        (root / split / "list").mkdir(parents=True, exist_ok=True)
        (root / split / "list" / f"split{f}.txt").write_text("\n".join(ls) + "\n")
    return root


def make_dlrsd_tree(root: Path, tiles: int = 2, split: str = "val", list_root: Path | None = None) -> Path:
    """A tiny valid DLRSD-5i tree of 256 px tiles holding classes 1..15."""
    rng = np.random.default_rng(0)
    lists_root = list_root if list_root is not None else root / "DLRSD_5i"
    lines: dict[int, list[str]] = {0: [], 1: [], 2: []}
    for t in range(tiles):
        name = f"airplane{t:02d}"
        write(root / "UCMerced_LandUse" / "Images" / "airplane" / f"{name}.tif",
              rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
        write(root / "DLRSD" / "Labels" / "airplane" / f"{name}.png", striped_label(256, list(range(1, 16))))
        for c in range(1, 16):
            lines[(c - 1) // 5].append(f"{name}__{c}")
    for f, ls in lines.items():
        (lists_root / split).mkdir(parents=True, exist_ok=True)
        (lists_root / split / f"fold{f}.txt").write_text("\n".join(ls) + "\n")
    return root


@pytest.fixture
def isaid_tree(tmp_path: Path) -> Path:
    """A fresh tiny valid iSAID-5i tree (val split, 2 tiles) to break in a test."""
    return make_isaid_tree(tmp_path / "isaid")


@pytest.fixture
def dlrsd_tree(tmp_path: Path) -> Path:
    """A fresh tiny valid DLRSD-5i tree (val split, 2 tiles) to break in a test."""
    return make_dlrsd_tree(tmp_path / "dlrsd")


@pytest.fixture
def write_image():
    """``write(path, array)`` as a fixture, so test modules need not import conftest."""
    return write


@pytest.fixture
def tree_makers():
    """``(make_isaid_tree, make_dlrsd_tree)`` for tests that need a non-default tree."""
    return make_isaid_tree, make_dlrsd_tree
