"""Predictor over torch and ONNX Runtime; support caches and their refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from icpd.artifacts.support_cache import SupportCacheError, SupportSet
from icpd.runtime.predictor import Predictor, merge_labels


def _scene(seed: int, n: int = 3, size: int = 128) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _masks() -> list[np.ndarray]:
    a = np.zeros((128, 128), np.uint8)
    a[20:60, 30:70] = 1
    b = np.zeros((128, 128), np.uint8)
    b[50:90, 10:40] = 1
    return [a, b]


@pytest.fixture(scope="module")
def predictors(tiny_model_dir):
    return {be: Predictor.load(tiny_model_dir, backend=be) for be in ("torch", "ort")}


@pytest.fixture(scope="module")
def ship(predictors, tiny_embeddings, tmp_path_factory):
    imgs = _scene(0, 2)
    s = predictors["ort"].encode_support(list(imgs), _masks(), "ship", tiny_embeddings)
    return s.save(tmp_path_factory.mktemp("cache") / "ship.support")


def test_ort_agrees_with_torch(predictors, tiny_embeddings):
    imgs = _scene(1)
    out = {}
    for be, p in predictors.items():
        p.reset()
        p.add_support(p.encode_support(list(_scene(0, 2)), _masks(), "ship", tiny_embeddings))
        out[be] = p.predict(imgs, priors=True)
    # each backend encodes its own supports and queries: float32 op-order round-off through the
    # encoder, occasionally a rank-prior near-tie flip; probabilities agree to ~3e-5
    np.testing.assert_allclose(out["ort"].probs, out["torch"].probs, atol=2e-4)
    np.testing.assert_allclose(out["ort"].priors, out["torch"].priors, atol=1e-4)
    assert (out["ort"].labels == out["torch"].labels).mean() > 0.999


def test_support_cache_round_trip(predictors, ship):
    s = SupportSet.load(ship, predictors["ort"].fingerprint)
    assert s.class_name == "ship" and s.shots == 2
    assert s.meta["format"] == "icpd-support" and len(s.meta["content_hash"]) == 64
    assert s.tensors["support_feat_layer00"].shape[0] == 2
    p = predictors["ort"]
    p.reset()
    p.add_support(ship)
    p.predict(_scene(2, 1))


def test_multi_class_equals_per_class(predictors, tiny_embeddings):
    p = predictors["ort"]
    imgs = _scene(3)
    sets = [p.encode_support([im], [m], name, np.roll(tiny_embeddings, i, 0))
            for i, (im, m, name) in enumerate(zip(_scene(4, 2), _masks(), ["ship", "plane"]))]
    p.reset()
    for s in sets:
        p.add_support(s)
    both = p.predict(imgs, threshold=0.3)
    singles = []
    for s in sets:
        p.reset()
        p.add_support(s)
        singles.append(p.predict(imgs).probs[:, 0])
    np.testing.assert_allclose(both.probs, np.stack(singles, 1), atol=1e-6)
    np.testing.assert_array_equal(both.labels, merge_labels(np.stack(singles, 1), 0.3))
    assert both.class_names == ["ship", "plane"]


def test_merge_labels_threshold():
    probs = np.array([[[[0.2, 0.7]], [[0.4, 0.9]]]], np.float32)  # B=1, N=2, H=1, W=2
    assert merge_labels(probs, 0.5).tolist() == [[[0, 2]]]
    assert merge_labels(probs, 0.3).tolist() == [[[2, 2]]]


def test_cache_from_another_model_is_refused(predictors, ship, tiny_model_dir, tmp_path):
    s = SupportSet.load(ship)
    s.fingerprint = "0" * 64
    other = s.save(tmp_path / "other.support")
    with pytest.raises(SupportCacheError, match="cache-support --model"):
        predictors["ort"].add_support(other)


def test_altered_truncated_and_newer_caches_are_refused(ship, tmp_path):
    data = bytearray(ship.read_bytes())
    data[-10] ^= 0xFF  # flip bits in the tensor payload
    (tmp_path / "altered.support").write_bytes(bytes(data))
    with pytest.raises(SupportCacheError, match="hash"):
        SupportSet.load(tmp_path / "altered.support")
    (tmp_path / "cut.support").write_bytes(ship.read_bytes()[: len(data) // 2])
    with pytest.raises(SupportCacheError, match="truncated"):
        SupportSet.load(tmp_path / "cut.support")
    s = SupportSet.load(ship)
    s.meta["format_version"] = 99
    newer = s.save(tmp_path / "newer.support")
    from safetensors import safe_open

    with safe_open(str(newer), "numpy") as f:
        assert json.loads(f.metadata()["icpd"])["format_version"] == 2  # save() writes the current version
    from safetensors.numpy import save_file

    meta = {**s.meta, "format_version": 99}
    save_file(s.tensors, str(newer), metadata={"icpd": json.dumps(meta)})
    with pytest.raises(SupportCacheError, match="newer"):
        SupportSet.load(newer)


def test_empty_masks_and_mismatched_counts_are_refused(predictors, tiny_embeddings):
    p = predictors["ort"]
    with pytest.raises(ValueError, match="every mask is empty"):
        p.encode_support(list(_scene(0, 1)), [np.zeros((128, 128), np.uint8)], "x", tiny_embeddings)
    with pytest.raises(ValueError, match="one mask per image"):
        p.encode_support(list(_scene(0, 2)), _masks()[:1], "x", tiny_embeddings)
    with pytest.raises(ValueError, match="no support set"):
        p.reset()
        p.predict(_scene(0, 1))


def test_cache_support_cli(tiny_model_dir, tmp_path):
    import cv2
    import torch
    from typer.testing import CliRunner

    from icpd.cli import app
    from icpd.model.text import ClassEmbeddings, save_class_embeddings

    emb = ClassEmbeddings(torch.randn(15, 32), tuple(f"c{i}" for i in range(15)))
    save_class_embeddings(tmp_path / "e.safetensors", emb)
    img = _scene(5, 1)[0]
    cv2.imwrite(str(tmp_path / "s.png"), img)
    cv2.imwrite(str(tmp_path / "m.png"), _masks()[0] * 255)
    cv2.imwrite(str(tmp_path / "empty.png"), np.zeros((128, 128), np.uint8))
    args = ["cache-support", "--model", str(tiny_model_dir), "--class-name", "c3", "--image", str(tmp_path / "s.png"),
            "--class-embeddings", str(tmp_path / "e.safetensors"), "--out", str(tmp_path / "c3.support")]
    res = CliRunner().invoke(app, [*args, "--mask", str(tmp_path / "m.png")])
    assert res.exit_code == 0, res.output
    s = SupportSet.load(tmp_path / "c3.support")
    np.testing.assert_allclose(s.tensors["class_embeddings"][0], emb.embeddings[3].numpy())
    res = CliRunner().invoke(app, [*args, "--mask", str(tmp_path / "empty.png"), "--out", str(tmp_path / "e.support")])
    assert res.exit_code == 2 and "empty" in res.output and not (tmp_path / "e.support").exists()


_SHARED_POOL_SCRIPT = """
import sys, numpy as np
from icpd.runtime.backends import ort as ob
if sys.argv[2] == "shared":
    ob.share_thread_pool()
from icpd.runtime.predictor import Predictor
p = Predictor.load(sys.argv[1], backend="ort", threads=2)
b = p.backend
print(*[s.get_session_options().use_per_session_threads for s in (b.pre, b.enc, b.mat)])
p.add_support(sys.argv[3])
imgs = np.random.default_rng(1).integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
np.save(sys.argv[4], p.predict(imgs).probs)
"""


@pytest.mark.parametrize("mode", ["shared", "per-session"])
def test_shared_thread_pool_gives_the_same_predictions(tiny_model_dir, ship, tmp_path, mode):
    """`icpd` runs its ONNX Runtime sessions on one pool; a fresh process, since the pool is process-wide."""
    import subprocess
    import sys

    out = tmp_path / "probs.npy"
    proc = subprocess.run([sys.executable, "-c", _SHARED_POOL_SCRIPT, str(tiny_model_dir), mode, str(ship), str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    per_session = proc.stdout.split()
    assert per_session == (["False"] * 3 if mode == "shared" else ["True"] * 3)
    p = Predictor.load(tiny_model_dir, backend="ort")
    p.add_support(ship)
    imgs = np.random.default_rng(1).integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
    np.testing.assert_allclose(np.load(out), p.predict(imgs).probs, atol=1e-6)


def test_a_single_image_is_a_batch_of_one(predictors, ship):
    """Defect 6: predict((H, W, 3)) used to iterate over the rows ("got (W, 3)")."""
    p = predictors["ort"]
    p.reset()
    p.add_support(ship)
    img = _scene(6, 1)[0]  # (128, 128, 3)
    single = p.predict(img)
    assert single.labels.shape == (1, 128, 128) and single.probs.shape == (1, 1, 128, 128)
    np.testing.assert_array_equal(single.probs, p.predict(img[None]).probs)
    mixed = p.predict([img, np.ascontiguousarray(img[:100]), img])  # sizes may differ within a list
    np.testing.assert_allclose(mixed.probs[[0, 2]], np.concatenate([single.probs] * 2), atol=1e-6)


def test_load_takes_the_backend_enum_and_refuses_unknown_names(tiny_model_dir):
    from icpd.config import Backend

    assert Predictor.load(tiny_model_dir, backend=Backend.ORT).backend_name == "ort"
    with pytest.raises(ValueError, match=r"^backend='onnx': choose one of torch, ort, trt"):
        Predictor.load(tiny_model_dir, backend="onnx")


def test_load_verify_checks_every_file_hash(tiny_model_dir, tmp_path):
    """Predictor.load(verify=True) passes through to ModelDir.open: same-size corruption is caught."""
    import shutil

    from icpd.artifacts.model_dir import ModelDirError

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    data = bytearray((d / "model.safetensors").read_bytes())
    from icpd.artifacts.model_dir import SAMPLE_BLOCK_BYTES, SAMPLE_BLOCKS

    step = (len(data) - SAMPLE_BLOCK_BYTES) / (SAMPLE_BLOCKS - 1)
    data[SAMPLE_BLOCK_BYTES + int(step - SAMPLE_BLOCK_BYTES) // 2] ^= 0xFF  # same size, between two sampled blocks
    (d / "model.safetensors").write_bytes(bytes(data))
    Predictor.load(d, backend="ort")  # sizes and sampled blocks only: opens
    with pytest.raises(ModelDirError, match="model.safetensors"):
        Predictor.load(d, backend="ort", verify=True)


def test_intermediate_outputs_by_name(predictors, tiny_embeddings):
    p = predictors["ort"]
    p.reset()
    for i, name in enumerate(["ship", "plane"]):
        p.add_support(p.encode_support(list(_scene(7 + i, 1)), _masks()[i : i + 1], name,
                                       np.roll(tiny_embeddings, i, 0)))
    imgs = _scene(8, 2)
    g = p.preset.clip_grid
    pred = p.predict(imgs, outputs=("query_prior", "pyramid_l3"))
    assert set(pred.outputs) == {"query_prior", "pyramid_l3"} and pred.priors is None
    assert pred.outputs["query_prior"].shape == (2, 2, g, g)
    assert pred.outputs["pyramid_l3"].shape[:2] == (2, 2)
    with_priors = p.predict(imgs, priors=True)
    assert with_priors.outputs == {}
    np.testing.assert_array_equal(with_priors.priors, pred.outputs["query_prior"])
    np.testing.assert_array_equal(with_priors.probs, pred.probs)
    with pytest.raises(ValueError, match="the matcher has logits, query_prior"):
        p.predict(imgs, outputs=("pyramid_l9",))


def test_encode_support_picks_the_target_from_class_embeddings(predictors, tmp_path):
    """Stretch (issue 16): ClassEmbeddings in file order + class_name -> that class's row first,
    the same support set as `icpd cache-support --class-name`; a name not in the file is refused."""
    import cv2
    import torch
    from typer.testing import CliRunner

    from icpd.cli import app
    from icpd.model.text import ClassEmbeddings, load_class_embeddings, save_class_embeddings

    emb = ClassEmbeddings(torch.randn(15, 32, generator=torch.Generator().manual_seed(3)),
                          tuple(f"c{i}" for i in range(15)))
    p = predictors["ort"]
    img, mask = _scene(9, 1)[0], _masks()[0]
    s = p.encode_support([img], [mask], "c2", emb)
    np.testing.assert_array_equal(s.tensors["class_embeddings"], emb.for_target("c2").numpy())
    same = p.encode_support([img], [mask], "c2", emb.for_target("c2").numpy())  # an array: target first
    assert all(np.array_equal(s.tensors[n], same.tensors[n]) for n in s.tensors)
    with pytest.raises(ValueError, match="'boat' is not in the class embeddings; known: c0, c1"):
        p.encode_support([img], [mask], "boat", emb)

    save_class_embeddings(tmp_path / "e.safetensors", emb)
    from_file = load_class_embeddings(tmp_path / "e.safetensors", preset=p.preset)  # numpy rows, as users get them
    loaded = p.encode_support([img], [mask], "c2", from_file)
    assert all(np.array_equal(s.tensors[n], loaded.tensors[n]) for n in s.tensors)
    cv2.imwrite(str(tmp_path / "s.png"), img[..., ::-1])  # the CLI reads RGB from a BGR file
    cv2.imwrite(str(tmp_path / "m.png"), mask * 255)
    res = CliRunner().invoke(app, ["cache-support", "--model", str(p.model_dir.path), "--class-name", "c2",
                                   "--image", str(tmp_path / "s.png"), "--mask", str(tmp_path / "m.png"),
                                   "--class-embeddings", str(tmp_path / "e.safetensors"),
                                   "--out", str(tmp_path / "c2.support")])
    assert res.exit_code == 0, res.output
    cli = SupportSet.load(tmp_path / "c2.support", p.fingerprint)
    for n, t in s.tensors.items():
        np.testing.assert_allclose(cli.tensors[n], t, atol=1e-6, err_msg=n)
