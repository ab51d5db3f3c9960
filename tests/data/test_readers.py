"""Readers and episodes on synthetic trees of both layouts, and bad input on hand-built trees."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from icpd.data import DatasetError, DLRSD5i, ISAID5i, fold_classes, split_classes
from icpd.data.isaid5i import index_isaid5i

EMB = torch.randn(15, 6, generator=torch.Generator().manual_seed(0))


@pytest.fixture(params=["isaid5i", "dlrsd5i"])
def synth(request, isaid_synth, dlrsd_synth):
    """``(dataset class, root)`` of each layout."""
    return (ISAID5i, isaid_synth.root) if request.param == "isaid5i" else (DLRSD5i, dlrsd_synth.root)


def test_folds():
    assert fold_classes(1) == [6, 7, 8, 9, 10]
    assert split_classes(1, "trn") == [1, 2, 3, 4, 5, 11, 12, 13, 14, 15]
    with pytest.raises(ValueError, match="fold"):
        fold_classes(3)


@pytest.mark.parametrize("fold", [0, 2])
def test_splits_read_the_right_lists(synth, fold):
    cls, root = synth
    val = cls(root, fold, "val", shot=1, preset="tiny")
    trn = cls(root, fold, "trn", shot=1, preset="tiny")
    assert {e.class_id for e in val.index.entries} == set(fold_classes(fold))
    assert {e.class_id for e in trn.index.entries} == set(split_classes(fold, "trn"))
    assert len(val) == len(val.index.entries)
    assert len(trn) == len(trn.index.entries)
    assert len(cls(root, fold, "trn", shot=1, preset="tiny", episodes_per_epoch=7)) == 7


def test_episode_shapes_dtypes_and_collate(synth):
    cls, root = synth
    ds = cls(root, 1, "trn", shot=2, class_embeddings=EMB, preset="tiny")
    ep = ds[0]
    assert ep["query"].shape == (3, 128, 128) and ep["query"].dtype == torch.float32
    assert ep["query_mask"].shape == (128, 128) and set(ep["query_mask"].unique().tolist()) <= {0.0, 1.0}
    assert ep["support_images"].shape == (2, 3, 128, 128)
    assert ep["support_masks"].shape == (2, 128, 128)
    assert ep["class_embeddings"].shape == (15, 6)
    assert ep["scale_weights"].shape == (128, 128) and (ep["scale_weights"] >= 1).all()
    assert ep["class_id"].dtype == torch.int64 and ep["class_id"].ndim == 0
    assert isinstance(ep["query_name"], str)
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["support_images"].shape == (3, 2, 3, 128, 128)
    assert batch["class_id"].shape == (3,) and len(batch["query_name"]) == 3


def test_images_are_normalised_with_preset_stats(isaid_synth):
    from icpd.config import get_preset

    ds = ISAID5i(isaid_synth.root, 0, "val", shot=1, preset="tiny")
    p = get_preset("tiny")
    x = ds[0]["query"]
    lo = (0 - torch.tensor(p.mean)) / torch.tensor(p.std)
    hi = (1 - torch.tensor(p.mean)) / torch.tensor(p.std)
    assert (x.amin((1, 2)) >= lo - 1e-5).all() and (x.amax((1, 2)) <= hi + 1e-5).all()


def test_validation_is_deterministic_and_seeded(synth):
    cls, root = synth
    a = cls(root, 0, "val", shot=3, class_embeddings=EMB, preset="tiny", seed=5)
    b = cls(root, 0, "val", shot=3, class_embeddings=EMB, preset="tiny", seed=5)
    c = cls(root, 0, "val", shot=3, class_embeddings=EMB, preset="tiny", seed=6)
    for i in (0, len(a) - 1):
        ea, eb = a[i], b[i]
        for key in ("query", "query_mask", "support_images", "support_masks", "class_embeddings", "scale_weights"):
            assert torch.equal(ea[key], eb[key]), key
    # item i is list line i, whatever the seed
    assert [a.index.entries[i].sample.name for i in range(len(a))] == [a[i]["query_name"] for i in range(len(a))]
    supports = lambda ds: [[s.name for s in ds.episode_plan(i)[2]] for i in range(len(ds))]
    assert supports(a) == supports(b)
    assert supports(a) != supports(c)


def test_training_supports_differ_from_query_and_contain_the_class(synth):
    cls, root = synth
    ds = cls(root, 0, "trn", shot=5, class_embeddings=EMB, preset="tiny", seed=1)
    allowed = set(split_classes(0, "trn"))
    seen_classes = set()
    for i in range(12):
        class_id, query, supports, _, _ = ds.episode_plan(i)
        names = [s.name for s in supports]
        assert query.name not in names and len(set(names)) == 5
        ep = ds[i]
        assert int(ep["class_id"]) == class_id in allowed
        assert ep["query_mask"].sum() > 0
        assert (ep["support_masks"].sum((1, 2)) > 0).all()
        seen_classes.add(class_id)
    assert len(seen_classes) > 3

    def plans() -> list[tuple]:
        return [(c, q.name, tuple(s.name for s in sup)) for c, q, sup, _, _ in map(ds.episode_plan, range(10))]

    epoch0 = plans()
    assert len(set(epoch0)) == 10  # items are seeded per index: no repeats across DataLoader workers
    assert plans() == epoch0  # reproducible
    ds.set_epoch(1)
    assert plans() != epoch0  # a new epoch draws new episodes


def test_training_flips_are_random_per_image(isaid_synth):
    ds = ISAID5i(isaid_synth.root, 0, "trn", shot=1, preset="tiny", augment=True)
    plain = ISAID5i(isaid_synth.root, 0, "trn", shot=1, preset="tiny", augment=False)
    assert any(not torch.equal(ds[i]["query"], plain[i]["query"]) for i in range(8))
    for i in range(8):  # same flip for image and mask: the flipped mask is one of the 4 flips of the plain one
        m, p = ds[i]["query_mask"], plain[i]["query_mask"]
        assert any(torch.equal(m, f) for f in (p, p.flip(0), p.flip(1), p.flip(0).flip(1)))


def test_class_embeddings_target_first_and_permutation(synth):
    cls, root = synth
    ds = cls(root, 2, "val", shot=1, class_embeddings=EMB, preset="tiny")
    orders = set()
    for i in range(min(len(ds), 6)):
        ep = ds[i]
        order = ep["class_order"]
        assert int(order[0]) == int(ep["class_id"])
        assert sorted(order.tolist()) == list(range(1, 16))
        torch.testing.assert_close(ep["class_embeddings"], EMB[order - 1], rtol=0, atol=0)
        orders.add(tuple(order.tolist()))
    assert len(orders) > 1  # the other 14 are shuffled


def test_bad_embeddings_are_refused(isaid_synth):
    with pytest.raises(ValueError, match=r"\(15, D\)"):
        ISAID5i(isaid_synth.root, 0, "val", class_embeddings=torch.randn(14, 4))


# -- bad input -------------------------------------------------------------------------------------
def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="nowhere"):
        ISAID5i(tmp_path / "nowhere", 0, "val")
    with pytest.raises(DatasetError, match="nowhere"):
        DLRSD5i(tmp_path / "nowhere", 0, "val")


def test_missing_list_file(isaid_tree, dlrsd_tree):
    (isaid_tree / "val" / "list" / "split1.txt").unlink()
    with pytest.raises(DatasetError, match="split1.txt"):
        ISAID5i(isaid_tree, 1, "val")
    with pytest.raises(DatasetError, match="trn/fold1.txt"):
        DLRSD5i(dlrsd_tree, 0, "trn")  # tree has val lists only


def test_dlrsd_list_dir_override(tmp_path, tree_makers):
    make_dlrsd_tree = tree_makers[1]
    root = make_dlrsd_tree(tmp_path / "d", list_root=tmp_path / "lists")
    with pytest.raises(DatasetError, match="fold0.txt"):
        DLRSD5i(root, 0, "val")
    assert len(DLRSD5i(root, 0, "val", list_dir=tmp_path / "lists")) == 10


@pytest.mark.parametrize("line", ["P0000_0_32_0_32_instance_color_RGB.png_4", "P0000_0_32_0_32.png_04", "garbage"])
def test_malformed_isaid_line(isaid_tree, line):
    lst = isaid_tree / "val" / "list" / "split0.txt"
    lst.write_text(lst.read_text() + line + "\n")
    with pytest.raises(DatasetError, match="split0.txt line 11") as err:
        ISAID5i(isaid_tree, 0, "val")
    assert "malformed" in str(err.value) and line in str(err.value)


def test_malformed_dlrsd_line_and_wrong_fold_class(dlrsd_tree):
    lst = dlrsd_tree / "DLRSD_5i" / "val" / "fold0.txt"
    good = lst.read_text()
    lst.write_text(good + "airplane00_1\n")
    with pytest.raises(DatasetError, match="fold0.txt line 11"):
        DLRSD5i(dlrsd_tree, 0, "val")
    lst.write_text(good + "airplane00__9\n")
    with pytest.raises(DatasetError, match="class id 9"):
        DLRSD5i(dlrsd_tree, 0, "val")


def test_entries_with_missing_files(isaid_tree):
    (isaid_tree / "val" / "images" / "P0001_0_32_0_32.png").unlink()
    with pytest.raises(DatasetError, match="P0001_0_32_0_32.png") as err:
        ISAID5i(isaid_tree, 0, "val")
    assert "skip_missing" in str(err.value)
    idx = index_isaid5i(isaid_tree, 0, "val", skip_missing=True)
    assert len(idx.skipped) == 5 and len(idx.entries) == 5
    # 1 image left per class: not enough even for 1-shot, and the error says so
    with pytest.raises(DatasetError, match=r"class 1 \(ship\) has 1 image.*1-shot.*needs 2"):
        ISAID5i(isaid_tree, 0, "val", skip_missing=True)


def test_skip_missing_counts(tmp_path, tree_makers):
    make_isaid_tree = tree_makers[0]
    root = make_isaid_tree(tmp_path / "i", tiles=3)
    (root / "val" / "semantic_png" / "P0002_0_32_0_32_instance_color_RGB.png").unlink()
    ds = ISAID5i(root, 0, "val", shot=1, skip_missing=True, preset="tiny")
    assert ds.skipped == 5 and len(ds) == 10


def test_too_few_images_for_shot(isaid_tree):
    with pytest.raises(DatasetError, match=r"class 6 \(ground track field\) has 2 image\(s\).*5-shot.*needs 6"):
        ISAID5i(isaid_tree, 1, "val", shot=5)


def test_label_values_out_of_range(isaid_tree, write_image):
    bad = np.full((32, 32), 16, np.uint8)
    path = write_image(isaid_tree / "val" / "semantic_png" / "P0000_0_32_0_32_instance_color_RGB.png", bad)
    ds = ISAID5i(isaid_tree, 0, "val", shot=1, preset="tiny")
    with pytest.raises(DatasetError, match=path.name):
        ds.check_files()
    with pytest.raises(DatasetError, match=path.name):
        ds[0]


def test_dlrsd_accepts_trees_and_water_as_background(dlrsd_tree, write_image):
    lab = np.full((256, 256), 17, np.uint8)
    lab[:10] = 1
    write_image(dlrsd_tree / "DLRSD" / "Labels" / "airplane" / "airplane00.png", lab)
    ds = DLRSD5i(dlrsd_tree, 0, "val", shot=1, preset="tiny")
    assert ds.check_files() == 2
    ep = ds[0]
    assert int(ep["class_id"]) == 1 and 0 < ep["query_mask"].mean() < 0.1


def test_image_label_size_mismatch(isaid_tree, write_image):
    img = write_image(isaid_tree / "val" / "images" / "P0001_0_32_0_32.png", np.zeros((40, 32, 3), np.uint8))
    ds = ISAID5i(isaid_tree, 0, "val", shot=1, preset="tiny")
    with pytest.raises(DatasetError, match=img.name) as err:
        ds.check_files()
    assert "P0001_0_32_0_32_instance_color_RGB.png" in str(err.value)


def test_dlrsd_off_size_tiles_are_resized_far_off_refused(dlrsd_tree, write_image):
    ucm = dlrsd_tree / "UCMerced_LandUse" / "Images" / "airplane"
    write_image(ucm / "airplane00.tif", np.zeros((247, 256, 3), np.uint8))  # like a few UCMerced tiles
    ds = DLRSD5i(dlrsd_tree, 0, "val", shot=1, preset="tiny")
    assert ds.check_files() == 2
    write_image(ucm / "airplane01.tif", np.zeros((100, 256, 3), np.uint8))
    with pytest.raises(DatasetError, match="airplane01.tif"):
        ds.check_files()


def test_grayscale_images_are_used_as_rgb(isaid_tree, write_image):
    write_image(isaid_tree / "val" / "images" / "P0000_0_32_0_32.png", np.full((32, 32), 77, np.uint8))
    ds = ISAID5i(isaid_tree, 0, "val", shot=1, preset="tiny")
    q = ds[0]["query"]
    assert q.shape == (3, 128, 128)
