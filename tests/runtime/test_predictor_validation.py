"""One validation for Python and the CLI (issue 20, sections 2 and 4): ``Predictor`` refuses what
``icpd cache-support`` refuses, in the same words; a ``Raster`` goes wherever an image goes; tiny
supports are refused and small ones noted; a class is added once unless replaced on purpose."""

from __future__ import annotations

import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from icpd.artifacts.support_cache import SupportSet
from icpd.cli import app
from icpd.io import Raster, read_image
from icpd.model.text import ClassEmbeddings, save_class_embeddings
from icpd.runtime.predictor import Predictor, merge_labels
from icpd.runtime.validation import (
    MAX_SHOTS,
    DuplicateClassError,
    InputError,
    check_shots,
    check_threshold,
)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _img(seed: int, h: int = 128, w: int = 128) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mask(h: int = 128, w: int = 128) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[h // 4 : h // 2, w // 4 : w // 2] = 1
    return m


@pytest.fixture(scope="module")
def p(tiny_model_dir):
    return Predictor.load(tiny_model_dir, backend="ort")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Embeddings c0..c14, a 128x128 support, and masks the CLI must refuse as Python does."""
    d = tmp_path_factory.mktemp("val")
    emb = np.random.default_rng(1).standard_normal((15, 32)).astype(np.float32)
    save_class_embeddings(d / "e.safetensors", ClassEmbeddings(emb, tuple(f"c{i}" for i in range(15))))
    cv2.imwrite(str(d / "s.png"), _img(0)[:, :, ::-1])
    cv2.imwrite(str(d / "m.png"), _mask() * 255)
    cv2.imwrite(str(d / "m64.png"), _mask(64, 64) * 255)
    cv2.imwrite(str(d / "m05.png"), (np.arange(128 * 128) % 6).reshape(128, 128).astype(np.uint8))
    cv2.imwrite(str(d / "one.png"), _img(1, 1, 1))
    cv2.imwrite(str(d / "one_m.png"), np.full((1, 1), 255, np.uint8))
    cv2.imwrite(str(d / "small.png"), _img(2, 64, 64))
    cv2.imwrite(str(d / "small_m.png"), _mask(64, 64) * 255)
    return d


def _cli(tiny_model_dir, files, out, image, mask, *extra):
    args = ["cache-support", "--model", str(tiny_model_dir), "--class-name", "c3", "--class-embeddings",
            str(files / "e.safetensors"), "--out", str(out), "--image", str(files / image), "--mask", str(files / mask),
            "-q", *extra]
    return CliRunner().invoke(app, args)


def _py_error(p, files, images, masks, name="c3") -> str:
    emb = np.random.default_rng(1).standard_normal((15, 32)).astype(np.float32)
    with pytest.raises(ValueError) as err:
        p.encode_support(images, masks, name, emb)
    return _flat(str(err.value))


def test_mask_of_another_size_is_refused_in_the_clis_words(p, files, tiny_model_dir, tmp_path):
    """Guards issue 20: encode_support took a 64x64 mask for a 128x128 image."""
    py = _py_error(p, files, [_img(0)], [_mask(64, 64)])
    assert py.startswith("support set 'c3': mask 1 of 1 is 64x64 (HxW) but its image is 128x128. Masks must match")
    res = _cli(tiny_model_dir, files, tmp_path / "x.support", "s.png", "m64.png")
    cli = _flat(res.output)
    assert res.exit_code == 2
    assert f"error: mask {files / 'm64.png'} is 64x64 (HxW) but its image {files / 's.png'}" in cli
    assert py.split("is 128x128.")[1] == cli.split("is 128x128.")[1]  # the same words after the subject
    assert not (tmp_path / "x.support").exists()


def test_non_binary_mask_values_are_refused_in_the_clis_words(p, files, tiny_model_dir, tmp_path):
    """Guards issue 20: encode_support took mask values 0..5 (any non-zero counted as the object)."""
    values = (np.arange(128 * 128) % 6).reshape(128, 128).astype(np.uint8)
    py = _py_error(p, files, [_img(0)], [values])
    assert py.startswith("support set 'c3': mask 1 of 1: values {0, 1, 2, 3, 4, 5} are not binary; "
                         "expected only 0/1 or only 0/255.")
    res = _cli(tiny_model_dir, files, tmp_path / "x.support", "s.png", "m05.png")
    cli = _flat(res.output)
    assert res.exit_code == 2 and f"error: mask {files / 'm05.png'}: values {{0, 1, 2, 3, 4, 5}}" in cli
    assert py.split(": values ")[1] == cli.split(": values ")[1]
    assert "masks must be integer 0/1 or 0/255" in _py_error(p, files, [_img(0)], [_mask().astype(np.float32)])
    mixed = _mask()
    mixed[0, 0] = 255
    assert "values {0, 1, 255} are not binary" in _py_error(p, files, [_img(0)], [mixed])


def test_binary_masks_in_every_accepted_form_give_the_same_support(p, tiny_embeddings):
    """0/1, 0/255, bool and (H, W, 1): one support set, as read_mask gives for 0/1 and 0/255 files."""
    m = _mask()
    ref = p.encode_support([_img(0)], [m], "c3", tiny_embeddings)
    for form in (m * 255, m.astype(bool), m[:, :, None], m.astype(np.uint16)):
        other = p.encode_support([_img(0)], [form], "c3", tiny_embeddings)
        for k, v in ref.tensors.items():
            np.testing.assert_array_equal(other.tensors[k], v, err_msg=k)


def test_a_raster_goes_wherever_an_image_goes(p, files, tiny_embeddings):
    """Guards issue 20 section 4: read_image's Raster gave "images: got object ()"."""
    r = read_image(files / "s.png")
    from_raster = p.encode_support([r], [_mask()], "c3", tiny_embeddings)
    from_pixels = p.encode_support([r.pixels], [_mask()], "c3", tiny_embeddings)
    for k, v in from_pixels.tensors.items():
        np.testing.assert_array_equal(from_raster.tensors[k], v, err_msg=k)
    p.reset()
    p.add_support(from_raster)
    np.testing.assert_array_equal(p.predict(r).probs, p.predict(r.pixels).probs)
    np.testing.assert_array_equal(p.predict([r, Raster(_img(3, 90, 200))]).probs,
                                  p.predict([r.pixels, _img(3, 90, 200)]).probs)
    with pytest.raises(InputError,
                       match=r"^image 2 of 2: got the path 's.png'; expected a uint8 RGB array .*read_image"):
        p.predict([r, "s.png"])
    with pytest.raises(TypeError, match=r"^image 1 of 1: got dict; expected a uint8 RGB array \(H, W, 3\) or an "
                                         r"icpd.io.Raster"):
        p.predict([{}])
    with pytest.raises(ValueError, match=r"^image: 128x128 \(HxW\), 3 band\(s\), float32; expected a uint8 RGB"):
        p.predict(_img(0).astype(np.float32))
    with pytest.raises(ValueError, match=r"^images: an empty list"):
        p.predict([])


def test_threshold_outside_0_1_is_refused_in_the_clis_words(p, files, tiny_embeddings, tmp_path):
    """Guards issue 20: predict(threshold=2) ran (no pixel can reach 2: everything background)."""
    p.reset()
    p.add_support(p.encode_support([_img(0)], [_mask()], "c3", tiny_embeddings))
    for bad in (2, 2.0, -0.1, math.nan, "0.5", True):
        with pytest.raises(ValueError) as err:
            p.predict(_img(1), threshold=bad)
        if isinstance(bad, str | bool):
            assert str(err.value) == f"threshold: not a number (got {bad!r}); pass a number from 0 to 1"
            continue
        assert str(err.value) == f"threshold: must be from 0 to 1 (got {bad}); pass a value from 0 to 1"
        res = CliRunner().invoke(app, ["infer", "x.png", "--model", "m", "--support", "s.support", "--out",
                                       str(tmp_path), f"--threshold={bad}"])
        assert res.exit_code == 2 and _flat(res.output) == f"error: --{err.value}"  # the same words, the flag in front
    with pytest.raises(ValueError, match=r"^threshold: must be from 0 to 1 \(got 2\)"):
        merge_labels(np.zeros((1, 1, 2, 2), np.float32), 2)
    assert check_threshold(0) == 0.0 and check_threshold(1) == 1.0
    assert (p.predict(_img(1), threshold=0.0).labels == 1).all()  # everything reaches 0


def test_the_same_class_twice_is_refused_unless_replaced(p, tiny_embeddings):
    """Guards issue 20: add_support took the same class twice (two labels for one class)."""
    p.reset()
    ship = p.encode_support([_img(0)], [_mask()], "ship", tiny_embeddings)
    plane = p.encode_support([_img(1)], [_mask()], "plane", np.roll(tiny_embeddings, 1, 0))
    ship2 = p.encode_support([_img(2), _img(3)], [_mask(), _mask()], "Ship", tiny_embeddings)
    p.add_support(ship)
    p.add_support(plane)
    with pytest.raises(DuplicateClassError,
                       match=r"^class 'Ship' is given twice \(already added as 'ship', 1 shot\(s\), "
                             r"label 1\); give each class once$"):
        p.add_support(ship2)
    assert p.class_names == ["ship", "plane"]
    assert p.add_support(ship2, replace=True) is ship2
    assert p.class_names == ["Ship", "plane"]  # its place and label kept
    both = p.predict(_img(5)).probs
    p.reset()
    p.add_support(ship2)
    np.testing.assert_array_equal(both[:, 0], p.predict(_img(5)).probs[:, 0])  # the new set answers, not the old
    p.add_support(plane, replace=True)  # a new name: simply added
    assert p.class_names == ["Ship", "plane"]


def test_class_names_are_refused_alike(p, files, tiny_model_dir, tmp_path):
    for bad, words in (("", "empty"), ("  ", "empty"), ("a\nb", "holds a control character"), (3, "must be a string")):
        with pytest.raises(ValueError) as err:
            p.encode_support([_img(0)], [_mask()], bad, np.zeros((15, 32), np.float32))
        assert str(err.value).startswith(f"class name {bad!r}: {words}")
    made = p.encode_support([_img(0)], [_mask()], "c3", np.zeros((15, 32), np.float32))
    with pytest.raises(ValueError, match=r"^class name '': empty"):
        p.add_support(SupportSet("", made.fingerprint, made.shots, made.tensors))  # a SupportSet made by hand
    res = CliRunner().invoke(app, ["cache-support", "--model", str(tiny_model_dir), "--class-name", "",
                                   "--class-embeddings", str(files / "e.safetensors"),
                                   "--out", str(tmp_path / "x.support"),
                                   "--image", str(files / "s.png"), "--mask", str(files / "m.png")])
    py = _py_error(p, files, [_img(0)], [_mask()], "")
    assert res.exit_code == 2 and _flat(res.output) == f"error: --class-name: {py}"


def test_shots_outside_the_models_range_are_refused(p, tiny_embeddings):
    from icpd.export.onnx import MAX_SHOTS as EXPORTED

    assert MAX_SHOTS == EXPORTED  # the runtime's copy of the exported axis (no torch import on that path)
    n = MAX_SHOTS + 1
    with pytest.raises(ValueError, match=rf"^support set 'c3': {n} shot\(s\); this model takes 1 to {MAX_SHOTS} "
                                         r"\(the shots the exported model declares\)"):
        p.encode_support([_img(0)] * n, [_mask()] * n, "c3", tiny_embeddings)
    engines = SimpleNamespace(sidecar=SimpleNamespace(shots=(1, 2, 5)))  # what TrtBackend carries: its profile
    check_shots(5, engines, "support set 'c3'")
    with pytest.raises(ValueError, match=r"6 shot\(s\); this model takes 1 to 5 \(the TensorRT engines' shots profile"):
        check_shots(6, engines, "support set 'c3'")


def test_tiny_supports_are_refused_and_small_ones_noted(p, files, tiny_model_dir, tmp_path, tiny_embeddings):
    """Guards issue 20: a 1x1 px support was upscaled to the model input without a word."""
    py = _py_error(p, files, [_img(1, 1, 1)], [np.ones((1, 1), np.uint8)])
    assert py.startswith("support set 'c3': image 1 of 1 is 1x1 px (HxW), too small to be a support: each support is "
                         "resized to the model input (128x128 px), so a side below 32 px is upsampled more than 4x")
    res = _cli(tiny_model_dir, files, tmp_path / "x.support", "one.png", "one_m.png")
    cli = _flat(res.output)
    assert res.exit_code == 2 and f"error: support set 'c3': image {files / 'one.png'} is 1x1 px (HxW)" in cli
    assert py.split("(HxW)")[1] == cli.split("(HxW)")[1] and not (tmp_path / "x.support").exists()
    # 31 px is refused, 32 px is the smallest accepted
    assert "31x128 px (HxW), too small" in _py_error(p, files, [_img(1, 31, 128)], [_mask(31, 128)])
    small = p.encode_support([_img(1, 32, 128), _img(2)], [_mask(32, 128), _mask()], "c3", tiny_embeddings)
    assert small.notes == [("image 1 of 2: 32x128 px (HxW) upscaled to the model input 128x128 (x4); supports of at "
                            "least 128 px a side keep their detail")]
    assert p.encode_support([_img(2)], [_mask()], "c3", tiny_embeddings).notes == []
    res = _cli(tiny_model_dir, files, tmp_path / "s.support", "small.png", "small_m.png")
    note = f"note: image {files / 'small.png'}: 64x64 px (HxW) upscaled to the model input 128x128 (x2)"
    assert res.exit_code == 0 and note in _flat(res.output), res.output
    assert SupportSet.load(tmp_path / "s.support").notes[0].startswith(f"image {files / 'small.png'}: 64x64 px")


def test_other_public_inputs_are_checked(p, tiny_model_dir):
    with pytest.raises(ValueError) as err:
        Predictor.load(tiny_model_dir, backend="ort", threads=0)
    assert str(err.value) == "threads: must be >= 1 (got 0); pass a value >= 1"
    res = CliRunner().invoke(app, ["infer", "x.png", "--model", "m", "--support", "s.support", "--out", "o",
                                   "--threads", "0"])
    assert res.exit_code == 2 and _flat(res.output) == f"error: --{err.value}"  # the same words, the flag in front
    with pytest.raises(TypeError, match=r"^threads: not a whole number \(got 1.5\)"):
        Predictor.load(tiny_model_dir, backend="ort", threads=1.5)
    with pytest.raises(ValueError,
                       match=r"^encode: images of shape \(1, 3, 64, 64\), float32; expected \(B, 3, 128, 128\)"):
        p.encode(np.zeros((1, 3, 64, 64), np.float32))
    p.reset()
    with pytest.raises(ValueError, match=r"^outputs 'query_prior': give a sequence of names"):
        p.match_classes(p.encode(p.preprocess(_img(0))), "query_prior")
    with pytest.raises(ValueError, match=r"support set 'c3': give the images and the masks as lists"):
        p.encode_support(_img(0), _mask(), "c3", np.zeros((15, 32), np.float32))
    with pytest.raises(ValueError, match=r"^support set 'c3': 2 image\(s\) but 1 mask\(s\); give one mask per image"):
        p.encode_support([_img(0), _img(1)], [_mask()], "c3", np.zeros((15, 32), np.float32))


def test_infer_refuses_a_class_given_twice_in_the_librarys_words(p, tiny_model_dir, tmp_path, tiny_embeddings):
    """`icpd infer --support` twice: Predictor.add_support's refusal, the option and the file in front."""
    ship = p.encode_support([_img(0)], [_mask()], "ship", tiny_embeddings).save(tmp_path / "ship.support")
    other = p.encode_support([_img(1)], [_mask()], "SHIP", tiny_embeddings).save(tmp_path / "other.support")
    cv2.imwrite(str(tmp_path / "scene.png"), _img(2))
    p.reset()
    p.add_support(ship)
    with pytest.raises(DuplicateClassError) as err:
        p.add_support(other)
    res = CliRunner().invoke(app, ["infer", str(tmp_path / "scene.png"), "--model", str(tiny_model_dir), "--support",
                                   str(ship), "--support", str(other), "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 2 and _flat(res.output) == f"error: --support {other}: {err.value}", res.output
    assert str(err.value) == ("class 'SHIP' is given twice (already added as 'ship', 1 shot(s), label 1); "
                              "give each class once")
