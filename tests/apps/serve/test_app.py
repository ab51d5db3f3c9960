"""`icpd serve`'s HTTP API through FastAPI's TestClient: every endpoint, the label PNG equal to
`icpd infer`'s file, counts, areas and polygons, authentication and metrics."""

from __future__ import annotations

import hmac
import io
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image  # label PNGs are palette PNGs: Pillow reads the class ids
from typer.testing import CliRunner

from icpd.apps.serve.settings import ServeSettings
from icpd.cli import app as cli
from tests.apps.serve.conftest import AUTH, GEO_TRANSFORM, TOKEN, png_bytes, scene, start, write_geotiff

S = 128


@pytest.fixture(scope="module")
def client(serve_model):
    model, supports = serve_model
    yield from start(ServeSettings(model=model, supports=(supports["ship"], supports["tank"]), threads=1, token=TOKEN))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, Path]:
    """A small PNG (one tile), a PNG larger than one tile (tiled and blended), a GeoTIFF, a GeoTIFF with
    nodata (a black corner), and an RGBA PNG smaller than a quarter of the model input (two notes)."""
    d = tmp_path_factory.mktemp("serve-scenes")
    small, big, rgba = d / "small.png", d / "big.png", d / "rgba.png"
    small.write_bytes(png_bytes(scene(100, 120, 1)))
    big.write_bytes(png_bytes(scene(300, 420, 2)))
    cv2.imwrite(str(rgba), np.dstack([scene(20, 30, 4), np.full((20, 30), 200, np.uint8)]))
    holed = scene(150, 170, 6)
    holed[:40, :50] = 0
    return {"small": small, "big": big, "geo": write_geotiff(d / "geo.tif", scene(200, 260, 3)),
            "nodata": write_geotiff(d / "nodata.tif", holed, nodata=0), "rgba": rgba}


@pytest.fixture(scope="module")
def infer_out(serve_model, scenes, tmp_path_factory) -> Path:
    """`icpd infer` on the three scenes with the classes tank then ship (label 1 tank, 2 ship)."""
    model, supports = serve_model
    out = tmp_path_factory.mktemp("serve-infer")
    res = CliRunner().invoke(cli, ["infer", *map(str, scenes.values()), "-m", str(model), "-s", str(supports["tank"]),
                                   "-s", str(supports["ship"]), "-o", str(out), "--threads", "1", "-q"])
    assert res.exit_code == 0, res.output
    return out


def _segment(client, path: Path, accept: str, query: str = "classes=tank,ship"):
    kind = "image/tiff" if path.suffix == ".tif" else "image/png"
    return client.post(f"/v1/segment?{query}", content=path.read_bytes(),
                       headers={**AUTH, "Accept": accept, "Content-Type": kind})


def test_health_and_readiness_are_open_the_api_is_not(client):
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "classes": ["ship", "tank"]}
    assert client.get("/v2/health/live").status_code == 200 and client.get("/v2/health/ready").status_code == 200
    for path in ("/v1/model", "/v1/supports", "/metrics", "/v2/models/icpd"):
        r = client.get(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json() == {"error": "missing or wrong token: send the header 'Authorization: Bearer <token>' (the "
                                     "token `icpd serve` was started with)"}
    for wrong in (f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "):
        assert client.get("/v1/model", headers={"Authorization": wrong}).status_code == 401, wrong
    assert client.get("/v1/model", headers=AUTH).status_code == 200


def test_token_is_compared_in_constant_time(client, monkeypatch):
    seen, real = [], hmac.compare_digest

    def spy(a, b):  # the real comparison, recorded
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr("icpd.apps.serve.app.hmac.compare_digest", spy)
    assert client.get("/v1/model", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert seen == [(b"nope", TOKEN.encode())]


def test_model_and_supports_describe_what_is_loaded(client, serve_model):
    from icpd.artifacts.model_dir import ModelDir

    model, _ = serve_model
    info = client.get("/v1/model", headers=AUTH).json()
    assert info["preset"] == "tiny" and info["fingerprint"] == ModelDir.open(model).fingerprint
    assert (info["precision"], info["backend"], info["classes"], info["tile"]) == ("fp32", "ort", ["ship", "tank"], S)
    listed = client.get("/v1/supports", headers=AUTH).json()["supports"]
    assert [(s["name"], s["shots"], s["fingerprint"]) for s in listed] == [("ship", 1, info["fingerprint"]),
                                                                          ("tank", 1, info["fingerprint"])]


@pytest.mark.parametrize("name", ["small", "big", "geo", "nodata", "rgba"])
def test_label_png_is_the_file_icpd_infer_writes(client, scenes, infer_out, name):
    r = _segment(client, scenes[name], "image/png")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    expected = (infer_out / f"{name}_labels.png").read_bytes()
    assert r.content == expected
    labels = np.asarray(Image.open(io.BytesIO(r.content)))
    if name != "rgba":
        assert {1, 2} <= set(np.unique(labels).tolist())  # both classes found: the order tank, ship is exercised
    if name == "nodata":
        assert (labels[:40, :50] == 255).all() and (labels[40:] != 255).all()


def test_notes_are_icpd_infers_for_the_same_file(client, scenes, infer_out):
    summary = json.loads((infer_out / "summary.json").read_text())
    by_name = {Path(entry["path"]).name: entry for entry in summary["inputs"]}
    for name, path in scenes.items():
        doc = _segment(client, path, "application/json").json()
        assert doc["notes"] == by_name[path.name]["notes"], name
        assert doc["pixels"] == by_name[path.name]["pixels"] | {"background": doc["pixels"]["background"]}, name
    rgba = _segment(client, scenes["rgba"], "application/json").json()["notes"]
    assert rgba[0].startswith("RGBA PNG: alpha channel dropped") and "a side below 32 px" in rgba[1]


def test_json_counts_are_the_label_pngs_bincount_with_areas_for_geotiffs(client, scenes):
    for name in ("big", "geo"):
        png = _segment(client, scenes[name], "image/png").content
        doc = _segment(client, scenes[name], "application/json").json()
        counts = np.bincount(np.asarray(Image.open(io.BytesIO(png))).ravel(), minlength=3)
        assert doc["classes"] == ["tank", "ship"]
        assert doc["labels"] == {"0": "background", "1": "tank", "2": "ship"}
        assert doc["pixels"] == {"background": int(counts[0]), "tank": int(counts[1]), "ship": int(counts[2])}
        assert doc["tiles"] > 1 and set(doc["timings"]) == {"decode", "predict", "queue"}
        if name == "geo":
            assert doc["area_unit"] == "m²"
            assert doc["area"] == {"tank": counts[1] * 0.25, "ship": counts[2] * 0.25}  # 0.5 m x 0.5 m pixels
        else:
            assert doc["area"] is None and doc["area_unit"] is None


def test_polygons_are_in_map_coordinates_on_the_labelled_pixels(client, scenes):
    png = _segment(client, scenes["geo"], "image/png").content
    labels = np.asarray(Image.open(io.BytesIO(png)))
    doc = _segment(client, scenes["geo"], "application/json", "classes=tank,ship&polygons=true").json()
    fc = doc["polygons"]
    assert fc["type"] == "FeatureCollection" and fc["coordinates"] == "map (the scene's CRS)"
    assert fc["crs_wkt"].startswith(("PROJCS", "PROJCRS")) and "UTM zone 33N" in fc["crs_wkt"]
    a, _, c, _, e, f = GEO_TRANSFORM
    for feature in fc["features"]:
        label = feature["properties"]["label"]
        assert feature["properties"]["pixels"] == int((labels == label).sum())
        rings = [ring for poly in feature["geometry"]["coordinates"] for ring in poly]
        assert rings, feature["properties"]
        for ring in rings:
            xy = np.asarray(ring)
            assert ring[0] == ring[-1]
            col, row = (xy[:, 0] - c) / a - 0.5, (xy[:, 1] - f) / e - 0.5  # map -> pixel centres
            assert np.allclose(col, np.round(col)) and np.allclose(row, np.round(row))
            # every vertex lies on a pixel of the class (outer rings) or next to it (holes trace the inside)
            assert (labels[np.round(row).astype(int), np.round(col).astype(int)] == label).mean() > 0.5


def test_polygons_of_a_square_with_a_hole_exactly():
    from icpd.apps.serve.geojson import label_polygons
    from icpd.io import GeoInfo

    labels = np.zeros((10, 12), np.uint8)
    labels[2:6, 3:8] = 1  # rows 2..5, cols 3..7
    labels[3:5, 5] = 0  # a hole: the ring through the class pixels around it
    outer = [[3, 2], [3, 5], [7, 5], [7, 2], [3, 2]]  # [col, row] of boundary pixel centres, closed
    hole = [[4, 3], [5, 2], [6, 3], [6, 4], [5, 5], [4, 4], [4, 3]]
    pix = label_polygons(labels, ["ship"], None)
    assert pix["features"][0]["geometry"]["coordinates"] == [[outer, hole]]
    assert pix["coordinates"] == "pixel [col, row]"
    geo = label_polygons(labels, ["ship"], GeoInfo(None, (2.0, 0.0, 100.0, 0.0, -2.0, 50.0)))
    to_map = [[[100.0 + 2 * (c + 0.5), 50.0 - 2 * (r + 0.5)] for c, r in ring] for ring in (outer, hole)]
    assert geo["features"][0]["geometry"]["coordinates"] == [to_map]
    assert label_polygons(np.zeros((4, 4), np.uint8), ["ship"], None)["features"][0]["geometry"]["coordinates"] == []


def test_metrics_count_requests_and_show_the_process(client, scenes):
    def counter(text: str, status: str, endpoint: str = "/v1/segment") -> float:
        m = re.search(r'icpd_requests_total\{endpoint="' + endpoint + '",status="' + status + r'"\} (\S+)', text)
        return float(m.group(1)) if m else 0.0

    before = client.get("/metrics", headers=AUTH).text
    assert _segment(client, scenes["small"], "application/json").status_code == 200
    assert _segment(client, scenes["small"], "application/json", "classes=plane").status_code == 404
    assert client.get("/v1/model").status_code == 401
    after = client.get("/metrics", headers=AUTH).text
    assert counter(after, "200") == counter(before, "200") + 1
    assert counter(after, "404") == counter(before, "404") + 1
    assert counter(after, "401", "unauthenticated") == counter(before, "401", "unauthenticated") + 1
    assert re.search(r"^process_resident_memory_bytes \d", after, re.MULTILINE)
    assert re.search(r"^icpd_supports_loaded 2\.0$", after, re.MULTILINE)
    assert re.search(r'^icpd_stage_seconds_count\{stage="predict"\} [1-9]', after, re.MULTILINE)
    assert re.search(r"^icpd_batch_tiles_count [1-9]", after, re.MULTILINE) and "icpd_queue_depth 0.0" in after


def test_page_is_served_at_the_root_without_the_token(client):
    from icpd.apps.serve.app import STATIC

    if not (STATIC / "index.html").is_file():
        pytest.skip("the page (icpd/apps/serve/static/index.html) is not there yet")
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert client.get("/no-such-file.js").json()["error"].startswith("/no-such-file.js: no such endpoint")
