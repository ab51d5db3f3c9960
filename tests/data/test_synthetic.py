"""Synthetic data sets: deterministic bytes, every class present, readable for 5-shot in every fold."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from icpd.data import DLRSD5i, ISAID5i, synthesize
from icpd.data.imageio import read_label


def _digest(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("layout", ["isaid5i", "dlrsd5i"])
def test_same_seed_same_bytes(tmp_path, layout):
    a = _digest(synthesize(tmp_path / "a", layout, tiles=6, seed=11, size=64).root)
    b = _digest(synthesize(tmp_path / "b", layout, tiles=6, seed=11, size=64).root)
    c = _digest(synthesize(tmp_path / "c", layout, tiles=6, seed=12, size=64).root)
    assert a == b
    assert len(a) > 20
    assert a != c


@pytest.mark.parametrize("layout", ["isaid5i", "dlrsd5i"])
def test_every_class_in_labels_and_lists(layout, isaid_synth, dlrsd_synth):
    summary = isaid_synth if layout == "isaid5i" else dlrsd_synth
    root = summary.root
    assert summary.min_class_tiles() >= 6  # 5-shot needs K + 1 = 6 tiles per class
    for split in ("trn", "val"):
        if layout == "isaid5i":
            labels = sorted((root / split / "semantic_png").glob("*.png"))
            lists = [root / split / "list" / f"split{f}.txt" for f in range(3)]
        else:
            lists = [root / "DLRSD_5i" / split / f"fold{f}.txt" for f in range(3)]
            names = {ln.split("__")[0] for p in lists for ln in p.read_text().split()}
            labels = [root / "DLRSD" / "Labels" / "".join(ch for ch in n if not ch.isdigit()) / f"{n}.png"
                      for n in names]
        assert len(labels) == 30
        present = set()
        for lab in labels:
            present |= set(np.unique(read_label(lab)).tolist())
        assert present == set(range(16))
        listed = {int(ln.rsplit("_", 1)[-1]) for p in lists for ln in p.read_text().split()}
        assert listed == set(range(1, 16))


@pytest.mark.parametrize("fold", [0, 1, 2])
def test_five_shot_every_fold(fold, isaid_synth, dlrsd_synth):
    for cls, summary in ((ISAID5i, isaid_synth), (DLRSD5i, dlrsd_synth)):
        for split in ("trn", "val"):
            ds = cls(summary.root, fold, split, shot=5, preset="tiny")
            assert len(ds) > 0


def test_objects_vary_within_a_class(isaid_synth):
    # intra-class variation: the area of class 9 (small vehicle) differs between tiles
    areas = set()
    for lab in sorted((isaid_synth.root / "trn" / "semantic_png").glob("*.png")):
        n = int((read_label(lab) == 9).sum())
        if n:
            areas.add(n)
    assert len(areas) >= 4


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="layout"):
        synthesize(tmp_path, "pascal", 5, 0)  # type: ignore[arg-type]


def test_isaid5i_labels_are_single_channel_class_ids(isaid_synth):
    """Guards issue 10 defect 11: `icpd data synth` wrote iSAID-5i labels as 3-channel RGB. The
    published semantic_png files are single-channel class-id PNGs, which the authors' loader reads
    with np.array(Image.open(...)) and resizes as (H, W): a 3-channel file breaks that."""
    from PIL import Image

    labels = sorted((isaid_synth.root / "trn" / "semantic_png").glob("*.png"))[:5]
    assert labels
    for path in labels:
        with Image.open(path) as im:
            assert im.mode == "L", (path.name, im.mode)
            arr = np.array(im)
        assert arr.ndim == 2 and arr.dtype == np.uint8
        np.testing.assert_array_equal(arr, read_label(path))
        assert 0 < int(arr.max()) <= 15
        small = np.array(Image.fromarray(arr).resize((arr.shape[1] // 2, arr.shape[0] // 2), Image.NEAREST))
        assert small.shape == (arr.shape[0] // 2, arr.shape[1] // 2)  # the authors' (H, W) resize
