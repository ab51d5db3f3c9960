"""`icpd serve` as a user starts it: a real server process (Triton's own client over the Open Inference
Protocol, a graceful SIGTERM) and the command's refusals (one line, exit 2, nothing started)."""

from __future__ import annotations

import io
import re
import socket
import threading

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from icpd.cli import app as cli
from tests.apps.serve.conftest import TOKEN, png_bytes, scene, wait_for
from tests.apps.serve.live_server import LiveServer

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def auth() -> dict[str, str]:
    """A fresh header dict per call: tritonclient adds its own headers to the dict it is given."""
    return dict(AUTH)


@pytest.fixture(scope="module")
def server(serve_model, tmp_path_factory):
    model, supports = serve_model
    log = tmp_path_factory.mktemp("serve-live") / "serve.log"
    srv = LiveServer(["--model", str(model), "-s", str(supports["ship"]), "-s", str(supports["tank"]), "--threads", "1",
                      "--workers", "1"], log, env={"ICPD_SERVE_TOKEN": TOKEN, "OMP_NUM_THREADS": "1"})
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def _labels(server, rgb: np.ndarray, classes: str) -> np.ndarray:
    r = httpx.post(f"{server.url}/v1/segment?classes={classes}", content=png_bytes(rgb),
                   headers={**AUTH, "Accept": "image/png"}, timeout=60)
    assert r.status_code == 200, r.text
    return np.asarray(Image.open(io.BytesIO(r.content)))


@pytest.mark.parametrize("binary", [True, False], ids=["binary-tensors", "json-tensors"])
def test_tritonclient_infer_equals_v1_segment(server, binary):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=60)
    assert client.is_server_live() and client.is_server_ready(headers=auth())
    assert client.is_model_ready("icpd", headers=auth())
    meta = client.get_model_metadata("icpd", headers=auth())
    assert (meta["inputs"][0]["name"], meta["outputs"][0]["name"]) == ("image", "labels")
    rgb = scene(150, 210, 11)  # two tiles wide: tiled and blended as /v1/segment does
    image = triton.InferInput("image", list(rgb.shape), "UINT8")
    image.set_data_from_numpy(rgb, binary_data=binary)
    result = client.infer("icpd", [image], outputs=[triton.InferRequestedOutput("labels", binary_data=binary)],
                          parameters={"classes": "tank,ship"}, headers=auth())
    labels = result.as_numpy("labels")
    assert labels.dtype == np.uint8 and labels.shape == rgb.shape[:2]
    np.testing.assert_array_equal(labels, _labels(server, rgb, "tank,ship"))
    assert {1, 2} <= set(np.unique(labels).tolist())
    with pytest.raises(triton.InferenceServerException, match="unknown class"):
        client.infer("icpd", [image], parameters={"classes": "plane"}, headers=auth())
    with pytest.raises(triton.InferenceServerException, match="missing or wrong token"):
        client.infer("icpd", [image])


def test_sigterm_finishes_the_request_in_flight_and_exits_0(server):
    """Last in the module: it stops the server."""
    def started_jobs() -> float:
        text = httpx.get(f"{server.url}/metrics", headers=AUTH).text
        m = re.search(r'^icpd_stage_seconds_count\{stage="queue"\} (\S+)', text, re.MULTILINE)
        return float(m.group(1)) if m else 0.0

    before = started_jobs()
    big = png_bytes(scene(900, 1100, 12))  # ~100 tiles: a few seconds on one thread
    answer: dict[str, object] = {}

    def post() -> None:
        r = httpx.post(f"{server.url}/v1/segment", content=big, headers=AUTH, timeout=120)
        answer["status"], answer["json"] = r.status_code, r.json()

    t = threading.Thread(target=post)
    t.start()
    wait_for(lambda: started_jobs() > before, timeout=60)  # a worker holds it: in flight
    assert server.stop(timeout=120) == 0, server.output()[-2000:]
    t.join(120)
    assert answer["status"] == 200, answer
    assert answer["json"]["height"] == 900 and answer["json"]["tiles"] > 50
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz", timeout=5)
    log = server.output()
    assert "Shutting down" in log and "Traceback" not in log


def _refused(args: list[str], env: dict[str, str] | None = None) -> str:
    res = CliRunner().invoke(cli, ["serve", *args], env=env)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


def test_a_non_loopback_host_needs_a_token(serve_model):
    model, supports = serve_model
    line = _refused(["--model", str(model), "-s", str(supports["ship"]), "--host", "0.0.0.0"],
                    env={"ICPD_SERVE_TOKEN": ""})
    assert line == ("error: --host 0.0.0.0: not a loopback address, and no token is set: anyone who reaches it could "
                    "use the service; set ICPD_SERVE_TOKEN (or --token), or pass --insecure on a trusted network")


def test_bad_options_are_one_line(serve_model, tmp_path):
    model, supports = serve_model
    base = ["--model", str(model), "-s", str(supports["ship"])]
    assert _refused([*base, "--workers", "0"]) == ("error: --workers: must be from 1 to 64 (got 0); "
                                                   "pass a value from 1 to 64")
    assert _refused([*base, "--deadline", "inf"]) == ("error: --deadline: must be a finite number (got inf); pass a "
                                                      "finite value, e.g. 60.0")
    assert _refused([*base, "--workers", "2", "--backend", "torch"]) == (
        "error: --workers 2: only --backend ort segments requests at once; with --backend torch use --workers 1 "
        "(Ray Serve replicas scale it)")
    assert _refused([*base, "--replicas", "2"]) == ("error: --replicas 2 goes with --ray; one process serves with "
                                                    "--workers")
    assert _refused([*base, "--tile", "16"]) == ("error: --overlap 32: must be below the tile (--tile 16); "
                                                 "e.g. --overlap 4")
    assert _refused([*base, "--tile", "20", "--overlap", "4"]).startswith(
        "error: --tile 20: the smallest useful tile for this model is 32 px")
    assert _refused(["--model", str(tmp_path), "-s", str(supports["ship"])]) == (
        f"error: model dir {tmp_path}: model.json is missing; re-run `icpd export --out {tmp_path}`")  # as icpd infer
    missing = tmp_path / "nope.support"
    assert _refused(["--model", str(model), "-s", str(missing)]) == (
        f"error: --support {missing}: support cache {missing}: file not found; create it with `icpd cache-support`")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert _refused([*base, "--port", str(port)]).startswith(
            f"error: --host 127.0.0.1 --port {port}: cannot listen there (Address already in use)")


def test_a_support_whose_class_name_is_not_url_safe_is_refused_with_the_fix(serve_model, tmp_path):
    from icpd.artifacts.support_cache import SupportSet

    model, supports = serve_model
    real = SupportSet.load(supports["tank"])
    spaced = SupportSet("storage tank", real.fingerprint, real.shots, real.tensors, {}).save(tmp_path / "st.support")
    line = _refused(["--model", str(model), "-s", str(spaced)])
    assert line.startswith(f"error: --support {spaced}: class name 'storage tank': use 1 to 64 of the characters")
    assert line.endswith(f"PUT it under such a name instead: curl -X PUT --data-binary @{spaced} "
                         "http://HOST:PORT/v1/supports/NAME")


def test_ctrl_c_stops_it_cleanly_too(serve_model, tmp_path):
    import signal

    model, supports = serve_model
    srv = LiveServer(["--model", str(model), "-s", str(supports["ship"]), "--threads", "1", "-q"], tmp_path / "log",
                     env={"OMP_NUM_THREADS": "1"})
    try:
        srv.wait_ready()
        srv.proc.send_signal(signal.SIGINT)
        assert srv.proc.wait(60) == 0, srv.output()[-2000:]
    finally:
        srv.stop()
    assert "Traceback" not in srv.output() and "KeyboardInterrupt" not in srv.output()
