"""Every error status of the service, each one JSON message, and the server answering normally after it."""

from __future__ import annotations

import json
import struct
import threading
import time
import zlib

import pytest

from icpd.apps.serve.settings import ServeSettings
from tests.apps.serve.conftest import png_bytes, scene, start, wait_for

SMALL = png_bytes(scene(60, 80, 5))


@pytest.fixture(scope="module")
def client(serve_model):
    """One worker, one queue slot, 3 s deadline, 0.25 MiB bodies, 200,000 pixels; no token."""
    model, supports = serve_model
    yield from start(ServeSettings(model=model, supports=(supports["ship"], supports["tank"]), threads=1, workers=1,
                                   queue=1, deadline=3.0, max_body_mb=0.25, max_pixels=200_000))


def _ok(client) -> None:
    """The server still answers a normal request."""
    r = client.post("/v1/segment", content=SMALL, headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    assert r.json()["pixels"]["background"] + r.json()["pixels"]["ship"] + r.json()["pixels"]["tank"] == 60 * 80


def _error(r, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and "\n" not in body["error"]
    return body["error"]


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height RGB pixels, with one tiny IDAT: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def test_unknown_class_is_404_listing_the_loaded_ones(client):
    msg = _error(client.post("/v1/segment?classes=ship,plane", content=SMALL), 404)
    assert msg == "classes=ship,plane: unknown class(es) 'plane'; the loaded classes are ship, tank"
    _ok(client)


def test_body_over_the_limit_is_413(client):
    msg = _error(client.post("/v1/segment", content=b"\x89PNG\r\n\x1a\n" + bytes(300_000)), 413)
    assert msg.startswith("the body is larger than this server's limit of 0.25 MiB (--max-body-mb)")
    _ok(client)


def test_decompression_bomb_header_is_413_before_decoding(client):
    bomb = _png_header(100_000, 100_000)
    assert len(bomb) < 200
    msg = _error(client.post("/v1/segment", content=bomb, headers={"Content-Type": "image/png"}), 413)
    assert msg.startswith("the image declares 100000x100000 (WxH) = 10,000,000,000 pixels, more than this server's "
                          "limit of 200,000 (--max-pixels)")
    _ok(client)


@pytest.mark.parametrize(("body", "kind", "expected"), [
    (b"GIF89a" + bytes(100), "image/gif", "Content-Type 'image/gif': this server reads PNG, JPEG and TIFF"),
    (b"hello, not an image", "text/plain", "the body (starting b'hello, n', 19 bytes) is not a PNG, JPEG or TIFF"),
], ids=["gif", "text"])
def test_unsupported_media_is_415(client, body, kind, expected):
    assert _error(client.post("/v1/segment", content=body, headers={"Content-Type": kind}), 415).startswith(expected)
    _ok(client)


@pytest.mark.parametrize(("query", "body", "expected"), [
    ("threshold=2", SMALL, "threshold: Input should be less than or equal to 1 (got '2')"),
    ("threshold=abc", SMALL, "threshold: Input should be a valid number"),
    ("classes=..%2Fx", SMALL, "class '../x': use 1 to 64 of the characters A-Z a-z 0-9 . _ -"),
    ("classes=ship,SHIP", SMALL, "classes=ship,SHIP: classes ['ship', 'SHIP'] repeat one; the loaded classes are"),
    ("bands=1,2", SMALL, "bands='1,2': expected three 1-based band numbers in R,G,B order"),
    ("bands=4,3,2", SMALL, "image request-body.png: 60x80 (HxW), 3 band(s), uint8; bands=(4, 3, 2) is not valid"),
    ("", b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "image request-body.png could not be decoded as an image"),
    ("", b"", "the body is empty: send the image file's bytes as the body"),
], ids=["threshold-range", "threshold-text", "class-path", "class-twice", "bands-two", "bands-missing", "truncated",
        "empty"])
def test_bad_parameters_and_undecodable_pixels_are_422(client, query, body, expected):
    assert _error(client.post(f"/v1/segment?{query}", content=body), 422).startswith(expected)
    _ok(client)


def test_an_accept_the_service_cannot_give_is_406(client):
    msg = _error(client.post("/v1/segment", content=SMALL, headers={"Accept": "text/html"}), 406)
    assert msg.startswith("Accept 'text/html': /v1/segment answers image/png (the label map) or application/json")
    _ok(client)


def _block(service, slots: int) -> threading.Event:
    """Occupy ``slots`` of the service's worker + queue with jobs that wait for the returned event."""
    release = threading.Event()
    jobs = [service.submit(lambda job: release.wait(30), time.monotonic() + 60) for _ in range(slots)]
    release.jobs = jobs  # the caller waits for them to finish before asking for a normal answer
    return release


def test_full_queue_is_503_with_retry_after(client):
    service = client.app.state.service
    release = _block(service, 2)  # the one worker and the one queue slot
    try:
        wait_for(lambda: service._waiting == 1)
        r = client.post("/v1/segment", content=SMALL)
        msg = _error(r, 503)
        assert msg.startswith("busy: 1 worker(s) busy and 1 request(s) waiting (the queue is full); retry after ")
        assert int(r.headers["retry-after"]) >= 1
        assert f"retry after {r.headers['retry-after']} s" in msg
    finally:
        release.set()
    for job in release.jobs:  # the blocking jobs must be done, or the normal request meets a full queue
        job.future.result(timeout=30)
    _ok(client)


def test_deadline_is_504_and_the_abandoned_request_is_skipped(client):
    service = client.app.state.service
    release = _block(service, 1)
    try:
        start = time.monotonic()
        msg = _error(client.post("/v1/segment", content=SMALL), 504)
        assert 3.0 <= time.monotonic() - start < 10.0
        assert msg.startswith("deadline of 3 s passed (3.0 s of it waiting for a worker); send a smaller image")
    finally:
        release.set()
    wait_for(lambda: service._waiting == 0)  # the abandoned request left the queue unsegmented
    _ok(client)


def test_unknown_endpoint_and_method_are_json_too(client):
    assert _error(client.get("/v1/nothing"), 404) == ("/v1/nothing: no such endpoint; "
                                                      "the API is listed in the README (Serving)")
    assert _error(client.get("/v1/segment"), 405) == "GET /v1/segment: method not allowed here"
    _ok(client)


def _infer(client, header: dict, raw: bytes = b"", name: str = "icpd"):
    body = json.dumps(header).encode()
    headers = {"Inference-Header-Content-Length": str(len(body))} if raw else {}
    return client.post(f"/v2/models/{name}/infer", content=body + raw, headers=headers)


def test_open_inference_protocol_errors_are_json_too(client):
    image = {"name": "image", "datatype": "UINT8", "shape": [4, 5, 3]}
    assert _error(_infer(client, {"inputs": [image]}, bytes(60), name="other"), 404) == (
        "model 'other': this server serves 'icpd'")
    assert _error(_infer(client, {"inputs": [{**image, "datatype": "FP32"}]}), 422).startswith(
        "infer request: input 'image' FP32 [4, 5, 3]; expected 'image' UINT8 [H, W, 3] or [B, H, W, 3]")
    sized = {**image, "parameters": {"binary_data_size": 60}}
    assert _error(_infer(client, {"inputs": [sized]}, bytes(59)), 422).startswith(
        "input 'image': binary_data_size 60 and 59 bytes after the header; a UINT8 [4, 5, 3] tensor is 60 bytes")
    assert _error(_infer(client, {"inputs": [{**image, "data": [300] * 60}]}), 422).startswith(
        "input 'image': 'data' must hold 60 integers from 0 to 255")
    huge = {"name": "image", "datatype": "UINT8", "shape": [1000, 1000, 3], "parameters": {"binary_data_size": 1}}
    assert _error(_infer(client, {"inputs": [huge]}, b"\x00"), 413).startswith(
        "input 'image': 1000x1000 (WxH) = 1,000,000 pixels, more than this server's limit of 200,000")
    pixels = {**image, "data": list(range(60))}
    assert _error(_infer(client, {"inputs": [pixels], "parameters": {"threshold": 3}}), 422).startswith(
        "parameter threshold: 3; give a number from 0 to 1")
    ok = _infer(client, {"inputs": [pixels], "parameters": {"classes": "tank"}})
    assert ok.status_code == 200, ok.text
    out = ok.json()["outputs"][0]
    assert (out["name"], out["datatype"], out["shape"], len(out["data"])) == ("labels", "UINT8", [4, 5], 20)
    assert client.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    _ok(client)
