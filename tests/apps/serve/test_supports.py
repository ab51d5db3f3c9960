"""`/v1/supports`: readiness follows the classes; PUT a .support body (fingerprint checked in the CLI's
words) or images and masks (encoded as `icpd cache-support` encodes them); DELETE; safe names only."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from icpd.apps.serve.settings import ServeSettings
from icpd.artifacts.support_cache import SupportSet
from icpd.cli import app as cli
from icpd.model.text import ClassEmbeddings, save_class_embeddings
from tests.apps.serve.conftest import png_bytes, scene, start
from tests.apps.serve.test_errors import _png_header

IMAGE = png_bytes(scene(90, 110, 7))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Class embeddings (classes c0..c14), two support images with masks of class c3."""
    d = tmp_path_factory.mktemp("serve-support-files")
    emb = np.random.default_rng(1).standard_normal((15, 32)).astype(np.float32)
    save_class_embeddings(d / "e.safetensors", ClassEmbeddings(emb, tuple(f"c{i}" for i in range(15))))
    rng = np.random.default_rng(0)
    for k, (y, x) in enumerate(((20, 30), (50, 10))):
        cv2.imwrite(str(d / f"s{k}.png"), rng.integers(0, 256, (128, 140, 3), dtype=np.uint8))
        mask = np.zeros((128, 140), np.uint8)
        mask[y : y + 40, x : x + 40] = 255
        cv2.imwrite(str(d / f"m{k}.png"), mask)
    return d


@pytest.fixture(scope="module")
def client(serve_model, files):
    """No support set at start; class embeddings to encode uploads."""
    model, _ = serve_model
    yield from start(ServeSettings(model=model, threads=1, class_embeddings=files / "e.safetensors"))


def _segment(client, classes: str):
    return client.post(f"/v1/segment?classes={classes}", content=IMAGE, headers={"Accept": "image/png"})


def test_not_ready_until_a_support_is_put_then_put_replace_and_delete(client, serve_model):
    _, supports = serve_model
    r = client.get("/readyz")
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json() == {"error": "no support set loaded: PUT one at /v1/supports/{name} (a .support file or images "
                                 "and masks)"}
    assert client.post("/v1/segment", content=IMAGE).status_code == 503
    put = client.put("/v1/supports/boat", content=supports["ship"].read_bytes())
    assert put.status_code == 201, put.text
    assert (put.json()["name"], put.json()["shots"], put.json()["replaced"]) == ("boat", 1, False)
    assert client.get("/readyz").json() == {"status": "ready", "classes": ["boat"]}
    again = client.put("/v1/supports/BOAT", content=supports["tank"].read_bytes())  # names ignore case
    assert again.status_code == 200 and again.json()["replaced"] is True
    assert [s["name"] for s in client.get("/v1/supports").json()["supports"]] == ["BOAT"]
    # the replacement is what segments now: the labels of the tank set
    client.put("/v1/supports/tank", content=supports["tank"].read_bytes())
    assert _segment(client, "boat").content == _segment(client, "tank").content
    deleted = client.delete("/v1/supports/boat")
    assert deleted.status_code == 200 and deleted.json() == {"deleted": "boat", "classes": ["tank"]}
    r = _segment(client, "boat")
    assert r.status_code == 404 and r.json()["error"].endswith("the loaded classes are tank")
    gone = client.delete("/v1/supports/boat")
    assert gone.status_code == 404
    assert gone.json() == {"error": "support 'boat': not loaded; the loaded classes are tank"}
    assert _segment(client, "tank").status_code == 200


def test_a_support_of_another_model_is_refused_in_the_clis_words(client, serve_model, tmp_path):
    model, supports = serve_model
    real = SupportSet.load(supports["ship"])
    other = SupportSet(real.class_name, "ab" * 32, real.shots, real.tensors, {}).save(tmp_path / "other.support")
    r = client.put("/v1/supports/other", content=other.read_bytes())
    assert r.status_code == 422
    served = r.json()["error"]
    (tmp_path / "x.png").write_bytes(IMAGE)
    res = CliRunner().invoke(cli, ["infer", str(tmp_path / "x.png"), "-m", str(model), "-s", str(other), "-o",
                                   str(tmp_path / "out")])
    assert res.exit_code == 2
    cli_words = res.output.strip().split(" was made with model ", 1)[1]
    assert served == "support 'other' (request body) was made with model " + cli_words
    assert cli_words.startswith("abababababab..., not this model (")
    assert cli_words.endswith("recreate it with `icpd cache-support --model <this model dir>`")
    truncated = client.put("/v1/supports/cut", content=supports["ship"].read_bytes()[:200])
    assert truncated.status_code == 422
    assert truncated.json()["error"].startswith("support 'cut' (request body): unreadable or truncated (")
    assert "other" not in client.get("/readyz").json().get("classes", [])


@pytest.mark.parametrize("name", ["..%2Fx", "%2E%2E", "a" * 65, "bad%20name", "semi%3Bcolon", "%2Fetc%2Fpasswd"])
def test_unsafe_names_are_refused(client, serve_model, name):
    _, supports = serve_model
    r = client.put(f"/v1/supports/{name}", content=supports["ship"].read_bytes())
    assert r.status_code == 422, r.text
    assert "use 1 to 64 of the characters A-Z a-z 0-9 . _ -" in r.json()["error"]
    assert client.delete(f"/v1/supports/{name}").status_code == 422


def test_images_and_masks_put_as_a_form_encode_as_icpd_cache_support(client, serve_model, files, tmp_path):
    model, _ = serve_model
    out = tmp_path / "c3.support"
    res = CliRunner().invoke(cli, ["cache-support", "--model", str(model), "--class-name", "c3", "--class-embeddings",
                                   str(files / "e.safetensors"), "--image", str(files / "s0.png"), "--mask",
                                   str(files / "m0.png"), "--image", str(files / "s1.png"), "--mask",
                                   str(files / "m1.png"), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    form = [("image", ("s0.png", (files / "s0.png").read_bytes(), "image/png")),
            ("mask", ("m0.png", (files / "m0.png").read_bytes(), "image/png")),
            ("image", ("s1.png", (files / "s1.png").read_bytes(), "image/png")),
            ("mask", ("m1.png", (files / "m1.png").read_bytes(), "image/png"))]
    r = client.put("/v1/supports/c3", files=form)
    assert r.status_code in (200, 201), r.text
    assert r.json()["shots"] == 2
    served = client.app.state.service.model().select(["c3"]).supports[0]
    cached = SupportSet.load(out)
    assert sorted(served.tensors) == sorted(cached.tensors)
    for key, value in cached.tensors.items():
        np.testing.assert_array_equal(served.tensors[key], value, err_msg=key)
    assert client.put("/v1/supports/c3file", content=out.read_bytes()).status_code == 201
    assert _segment(client, "c3").content == _segment(client, "c3file").content


def test_a_bad_form_is_one_json_message(client, files):
    img = (files / "s0.png").read_bytes()
    r = client.put("/v1/supports/c3", files=[("image", ("s0.png", img, "image/png"))])
    assert r.status_code == 422
    assert r.json() == {"error": "the form needs one 'mask' part per 'image' part, in the same order (got 1 image(s), "
                                 "0 mask(s))"}
    r = client.put("/v1/supports/c3", files=[("image", ("s0.png", img, "image/png")),
                                             ("mask", ("m.png", png_bytes(scene(10, 10)), "image/png"))])
    assert r.status_code == 422 and r.json()["error"].startswith("support 'c3': mask mask1-m.png")
    unknown = client.put("/v1/supports/nope", files=[("image", ("s0.png", img, "image/png")),
                                                     ("mask", ("m0.png", (files / "m0.png").read_bytes(), "image/png")),
                                                     ("target_class", (None, b"zebra"))])
    assert unknown.status_code == 422 and "zebra" in unknown.json()["error"]
    bomb = client.put("/v1/supports/c3", files=[("image", ("big.png", _png_header(100_000, 100_000), "image/png")),
                                                ("mask", ("m0.png", (files / "m0.png").read_bytes(), "image/png"))])
    assert bomb.status_code == 413 and bomb.json()["error"].startswith("the image declares 100000x100000 (WxH)")
    text = client.put("/v1/supports/c3", files=[("image", ("a.txt", b"not an image", "text/plain")),
                                                ("mask", ("m0.png", (files / "m0.png").read_bytes(), "image/png"))])
    assert text.status_code == 415
    assert client.get("/healthz").status_code == 200
