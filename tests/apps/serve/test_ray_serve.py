"""`icpd serve --ray --replicas 2` (a real subprocess, local Ray): the same answers as the
single-process `icpd serve` (label PNG bytes, JSON counts), a replica killed under load (its
process, SIGKILL) replaced by Ray with only the requests that were on it failing (500) and the
service answering 200 throughout and afterwards, and SIGTERM ending it with exit code 0.

Like the `icpd infer --ray` tests (tests/apps/infer/test_ray_runner.py): skipped without Ray, and
bounded in time (SIGALRM fails a test that hangs; faulthandler ends a process stuck in Ray's C++)."""

from __future__ import annotations

import faulthandler
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.apps.serve.live_server import LiveServer, support_args
from tests.runtime.supports import make_supports

pytest.importorskip("ray.serve", reason="Ray Serve (ray[serve], the dev extra) is not installed")

pytestmark = pytest.mark.slow  # one local Ray and two servers

# the module, fixtures included (export, Ray, two servers): ~1.5 min quiet, 6.5 min at load 8 on 2 cores
TIME_LIMIT_S = 600
CLIENTS = 4  # concurrent clients during the kill: the bound on the requests a dead replica can take with it


@pytest.fixture(autouse=True, scope="module")
def time_bound():
    def expire(signum, frame):
        pytest.fail(f"the Ray Serve tests ran past {TIME_LIMIT_S} s: a replica start or restart hung")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TIME_LIMIT_S)
    faulthandler.dump_traceback_later(TIME_LIMIT_S * 2, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def servers(tiny_model_dir, tmp_path_factory):
    """(single-process server, Ray Serve server with 2 replicas), same model and supports."""
    d = tmp_path_factory.mktemp("ray-serve")
    args = ["--model", str(tiny_model_dir), *support_args(make_supports(tiny_model_dir, d)), "--threads", "1"]
    ray_server = LiveServer([*args, "--ray", "--replicas", "2"], d / "ray.log")
    single = LiveServer(args, d / "single.log")
    try:
        single.wait_ready()
        ray_server.wait_ready(timeout=120)
        yield single, ray_server
    finally:
        codes = (single.stop(), ray_server.stop())
    assert codes == (0, 0), ray_server.output()[-3000:]


def bodies() -> dict[str, bytes]:
    """A one-tile PNG, a scene larger than a tile (tiled and blended), a JPEG."""
    rng = np.random.default_rng(5)
    out = {}
    cases = (("tile", (128, 128), ".png"), ("scene", (190, 260), ".png"), ("photo", (150, 140), ".jpg"))
    for name, (h, w), ext in cases:
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        img[h // 4 : h // 2, w // 3 : w // 2] = 230
        out[name] = cv2.imencode(ext, img)[1].tobytes()
    return out


def post(url: str, body: bytes, accept: str, classes: str = "tank,ship") -> httpx.Response:
    return httpx.post(f"{url}/v1/segment?classes={classes}&threshold=0.5", content=body,
                      headers={"Accept": accept, "Content-Type": "application/octet-stream"}, timeout=60)


def without_timings(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "timings"}


def replica_pids(server: LiveServer) -> set[int]:
    """Process ids of the Ray Serve replicas under ``server`` (descendants named ray::ServeReplica...)."""
    parents, names = {}, {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
                names[int(p.name)] = (p / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            parents[int(p.name)] = int(stat.rsplit(")", 1)[1].split()[1])

    def under(pid: int) -> bool:
        while pid > 1:
            if pid == server.proc.pid:
                return True
            pid = parents.get(pid, 0)
        return False

    return {pid for pid, name in names.items() if name.startswith("ray::ServeReplica") and under(pid)}


def test_two_replicas_answer_as_the_single_process_server(servers):
    single, ray_server = servers
    for name, body in bodies().items():
        want_png, want_json = post(single.url, body, "image/png"), post(single.url, body, "application/json")
        assert want_png.status_code == want_json.status_code == 200, (name, want_png.text)
        assert want_png.content.startswith(b"\x89PNG")
        for _ in range(3):  # several requests: both replicas answer some of them
            got_png, got_json = post(ray_server.url, body, "image/png"), post(ray_server.url, body, "application/json")
            assert got_png.status_code == got_json.status_code == 200, (name, got_png.text)
            assert got_png.content == want_png.content, f"{name}: label PNG differs from the single-process server"
            assert without_timings(got_json.json()) == without_timings(want_json.json()), name
    assert len(replica_pids(ray_server)) == 2
    page = httpx.get(f"{ray_server.url}/", timeout=30)  # the page, through Ray Serve's proxy too
    assert page.status_code == 200 and page.content == httpx.get(f"{single.url}/", timeout=30).content
    assert b'<script src="app.js"></script>' in page.content


def test_classes_are_fixed_with_several_replicas(servers):
    """A support PUT or DELETE would reach one replica only: refused (409) saying what to do; the
    classes stay as started (the single-process server takes both: tests/apps/serve/test_supports.py)."""
    _, ray_server = servers
    for method, content in (("PUT", b"a .support body"), ("DELETE", None)):
        r = httpx.request(method, f"{ray_server.url}/v1/supports/ship", content=content, timeout=30)
        assert r.status_code == 409, r.text
        assert r.json() == {"error": "PUT/DELETE /v1/supports/ship: this service runs 2 Ray Serve replicas, and a "
                                     "support set changed here would change one of them only; give the classes at "
                                     "start (--support NAME.support), or run one replica (--replicas 1)"}
    for _ in range(4):  # every replica still has both classes
        assert [s["name"] for s in httpx.get(f"{ray_server.url}/v1/supports", timeout=30).json()["supports"]] == [
            "ship", "tank"]


def test_a_replica_killed_under_load_is_replaced(servers):
    single, ray_server = servers
    body = bodies()["tile"]
    want = post(single.url, body, "image/png").content
    before = replica_pids(ray_server)
    assert len(before) == 2, before
    statuses: Counter[int] = Counter()
    wrong: list[str] = []
    examples: dict[int, str] = {}
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=60) as c:
            while not stop.is_set():
                r = c.post(f"{ray_server.url}/v1/segment?classes=tank,ship", content=body,
                           headers={"Accept": "image/png", "Content-Type": "image/png"})
                statuses[r.status_code] += 1
                if r.status_code != 200:
                    examples.setdefault(r.status_code, r.text[:300])
                elif r.content != want:
                    wrong.append("a 200 answer with other bytes")

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)  # as the OOM killer or a lost node would
    killed_at = time.monotonic()
    replaced = set()
    while time.monotonic() - killed_at < 90:
        assert httpx.get(f"{ray_server.url}/healthz", timeout=10).status_code == 200
        replaced = replica_pids(ray_server) - before
        if replaced and len(replica_pids(ray_server)) == 2:
            break
        time.sleep(0.5)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert replaced, f"no new replica within 90 s of killing {victim}: {ray_server.output()[-2000:]}"
    assert not wrong
    failed = {s: n for s, n in statuses.items() if s != 200}
    # only the requests that were on the killed replica fail (at most one per client), and as a 5xx
    assert set(failed) <= {500} and sum(failed.values()) <= CLIENTS, (statuses, examples)
    assert statuses[200] > 2 * CLIENTS, statuses
    # afterwards: every request answered, by both replicas, with the same bytes
    for _ in range(6):
        r = post(ray_server.url, body, "image/png")
        assert r.status_code == 200 and r.content == want
    assert httpx.get(f"{ray_server.url}/readyz", timeout=10).status_code == 200


def test_replicas_get_absolute_paths_and_one_thread_by_default(tmp_path, monkeypatch):
    """A replica's worker has its own working directory (and another node its own disk): relative
    paths are made absolute; the backend threads default to 1 per replica, as `icpd infer --ray`."""
    from icpd.apps.serve.ray_serve import replica_settings
    from icpd.apps.serve.settings import ServeSettings

    monkeypatch.chdir(tmp_path)
    got = replica_settings(ServeSettings(model=Path("m"), supports=(Path("a.support"), Path("sub/b.support")),
                                         class_embeddings=Path("e.safetensors"), token="t", port=9000))
    assert (got.model, got.supports, got.class_embeddings, got.engine_dir) == (
        tmp_path / "m", (tmp_path / "a.support", tmp_path / "sub" / "b.support"), tmp_path / "e.safetensors", None)
    assert (got.threads, got.token, got.port) == (1, "t", 9000)
    assert replica_settings(ServeSettings(model=tmp_path, threads=3)).threads == 3


@pytest.mark.parametrize("replicas", [0, -1, True, 1.5])
def test_replicas_below_one_refused_before_ray_starts(tmp_path, replicas):
    import ray

    from icpd.apps.serve.ray_serve import run_ray_serve
    from icpd.apps.serve.settings import ServeSettings
    from icpd.errors import ParamError

    with pytest.raises(ParamError) as err:
        run_ray_serve(ServeSettings(model=tmp_path), None, replicas)
    assert str(err.value) == f"replicas={replicas}: give a whole number of replicas, at least 1"
    assert not ray.is_initialized()


def test_several_replicas_need_their_classes_at_start(tmp_path):
    """With 2 replicas a support PUT is refused (409), so a service started without --support could
    never become ready: refused at once, before Ray starts, naming the option to give."""
    import ray

    from icpd.apps.serve.ray_serve import run_ray_serve
    from icpd.apps.serve.settings import ServeSettings
    from icpd.commands.console import cli_text
    from icpd.errors import ParamError

    with pytest.raises(ParamError) as err:
        run_ray_serve(ServeSettings(model=tmp_path), None, 2)
    assert cli_text(err.value) == ("--replicas 2 with no --support: several replicas take their classes at start "
                                   "only; give --support NAME.support (once per class)")
    assert not ray.is_initialized()
