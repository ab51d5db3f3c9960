"""A bounded load test of `icpd serve` on loopback, and the same images through the Predictor in one
process for comparison (README "Serving on Ray and measured numbers").

    python scripts/serve_load.py [--preset tiny|paper | --model DIR --support A.support ...]
                                 [--clients 8] [--duration 10] [--threads 1] [--workers 2]
                                 [--url http://127.0.0.1:PORT --token T] [--json report.json]

1. Starts `icpd serve` itself on a free loopback port (``--threads``, ``--workers``, the supports),
   or takes ``--url`` of a server already running on loopback (any other host is refused: this
   script sends load, and only to this machine).
2. ``--clients`` threads, each with its own keep-alive connection, POST the request images
   (seeded tile-sized PNGs, one model input each) to ``/v1/segment`` with every loaded class and
   ``Accept: image/png`` for ``--duration`` seconds after one warm-up request each; it stops by
   itself (``--duration`` at most 600 s; every request has a timeout). Reported: requests,
   throughput, p50/p95/p99 latency of the answered requests, errors by status, and the server's
   RSS (``/metrics`` ``process_resident_memory_bytes``) before and after.
3. With the server stopped (when it started it), the same decoded images through
   ``Predictor.predict`` in this process for the same duration, ``--workers`` threads each with its
   own ``Predictor.fork()`` of one model loaded with ``--threads`` ONNX Runtime threads: the same
   thread count as the server. ``ratio`` = service throughput / in-process throughput.

Prints the report as JSON (and writes it to ``--json``): the machine (CPU model, flags, cores),
the load average before and after, and every setting. Exit 1 when a request failed.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_models import default_work, model_dir_for, png_bytes, request_images, supports_for

MAX_DURATION_S = 600.0
REQUEST_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 180.0


def fail(message: str) -> None:
    """A user error: one line on stderr, exit 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def percentile(samples: list[float], q: float) -> float | None:
    return float(np.percentile(samples, q)) if samples else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_loopback(url: str) -> str:
    """``url`` without a trailing slash; refused unless its host is loopback."""
    from icpd.apps.serve.settings import is_loopback

    host = urlparse(url).hostname or ""
    if urlparse(url).scheme not in ("http", "https") or not is_loopback(host):
        fail(f"--url {url!r}: this load test sends load only to this machine; give http://127.0.0.1:PORT "
             "(or localhost, [::1])")
    return url.rstrip("/")


def icpd_command() -> list[str]:
    """The `icpd` console script beside this Python, else the same entry point through ``-c``."""
    script = Path(sys.executable).with_name("icpd")
    return [str(script)] if script.is_file() else [sys.executable, "-c", "from icpd.cli import main; main()"]


def start_server(model: Path, supports: list[Path], port: int, threads: int, workers: int, deadline: float,
                 log: Path) -> subprocess.Popen:
    cmd = [*icpd_command(), "serve", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
           "--threads", str(threads), "--workers", str(workers), "--deadline", f"{deadline:g}"]
    for s in supports:
        cmd += ["--support", str(s)]
    env = {k: v for k, v in os.environ.items() if k != "ICPD_SERVE_TOKEN"}  # loopback, no token
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_ready(client: httpx.Client, url: str, server: subprocess.Popen | None, log: Path | None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise RuntimeError(f"icpd serve exited with {server.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):  # not listening yet
            if client.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} was not ready within {READY_TIMEOUT_S:.0f} s")


def server_process(client: httpx.Client, url: str, headers: dict[str, str]) -> dict[str, float]:
    """The server's ``process_resident_memory_bytes`` and ``process_cpu_seconds_total`` from its
    ``/metrics`` (a name it lacks is left out)."""
    text = client.get(f"{url}/metrics", headers=headers, timeout=30).text
    names = ("process_resident_memory_bytes", "process_cpu_seconds_total")
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.split(" ")[0] in names}


def cpu_seconds() -> float:
    """CPU time of this process so far, every thread (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_clients(url: str, bodies: list[bytes], classes: list[str], clients: int, duration: float,
                headers: dict[str, str], timeout: float = REQUEST_TIMEOUT_S) -> dict:
    """``clients`` threads POSTing ``bodies`` round-robin for ``duration`` s (after one warm-up each)."""
    query = f"{url}/v1/segment?classes={','.join(classes)}"
    latencies: list[float] = []
    statuses: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}
    lock = threading.Lock()
    window = [0.0, 0.0]  # start, stop (time.monotonic)
    active: set[int] = set()  # clients that made at least one timed request

    def open_window() -> None:  # run by the barrier before it lets anyone through: no client sees 0
        window[0] = time.monotonic()
        window[1] = window[0] + duration

    start = threading.Barrier(clients + 1, action=open_window)

    def client(k: int) -> None:
        h = {**headers, "Accept": "image/png", "Content-Type": "image/png"}
        with httpx.Client(timeout=timeout) as c:
            c.post(query, content=bodies[k % len(bodies)], headers=h)  # warm-up: connection, first call
            start.wait()
            i = k
            while time.monotonic() < window[1]:
                t0 = time.perf_counter()
                try:
                    r = c.post(query, content=bodies[i % len(bodies)], headers=h)
                    status, text = str(r.status_code), r.text[:200] if r.status_code != 200 else ""
                except Exception as e:  # noqa: BLE001 - a transport error is counted, not fatal
                    status, text = type(e).__name__, str(e)[:200]
                elapsed = time.perf_counter() - t0
                with lock:
                    active.add(k)
                    statuses[status] += 1
                    if status == "200":
                        latencies.append(elapsed)
                    else:
                        examples.setdefault(status, text)
                i += clients

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait(timeout=READY_TIMEOUT_S)
    for t in threads:
        t.join(timeout=duration + timeout)
    wall = time.monotonic() - window[0]
    ok = statuses.get("200", 0)
    ms = [1000 * v for v in latencies]
    return {"requests": sum(statuses.values()), "ok": ok, "clients_active": len(active), "wall_s": round(wall, 3),
            "throughput_rps": round(ok / wall, 3),
            "latency_ms": {q: _round(percentile(ms, n)) for q, n in (("p50", 50), ("p95", 95), ("p99", 99))},
            "errors": {s: n for s, n in statuses.items() if s != "200"}, "error_examples": examples}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def _int(v: float | None) -> int | None:
    return None if v is None else int(v)


def _per(seconds: float, n: int) -> float | None:
    return round(1000 * seconds / n, 2) if n else None


def in_process(model: Path, supports: list[Path], images: list[np.ndarray], threads: int, workers: int,
               duration: float) -> dict:
    """The same images through ``Predictor.predict``: ``workers`` threads, each its own fork."""
    from icpd.runtime.predictor import Predictor

    base = Predictor.load(model, backend="ort", threads=threads)
    forks = []
    for _ in range(workers):
        p = base.fork()
        for s in supports:
            p.add_support(s)
        p.predict(images[0])  # warm-up
        forks.append(p)
    counts = [0] * workers
    stop_at = time.monotonic() + duration

    def work(k: int) -> None:
        i = k
        while time.monotonic() < stop_at:
            forks[k].predict(images[i % len(images)])
            counts[k] += 1
            i += workers

    t0, cpu0 = time.monotonic(), cpu_seconds()
    pool = [threading.Thread(target=work, args=(k,)) for k in range(workers)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall, cpu = time.monotonic() - t0, cpu_seconds() - cpu0
    return {"images": sum(counts), "wall_s": round(wall, 3), "throughput_ips": round(sum(counts) / wall, 3),
            "cpu_ms_per_image": _per(cpu, sum(counts))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="tiny", help="the benchmarks' seeded export of this preset")
    ap.add_argument("--model", type=Path, help="a model dir instead of --preset (then give --support)")
    ap.add_argument("--support", type=Path, action="append", default=[], help="support caches (default: seeded)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=10.0, help=f"seconds of load (at most {MAX_DURATION_S:.0f})")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (server and in-process)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker threads (both)")
    ap.add_argument("--deadline", type=float, default=60.0,
                    help="the started server's --deadline (s): 8 clients queue for --workers; a slow model needs more")
    ap.add_argument("--url", help="a running server on loopback instead of starting one")
    ap.add_argument("--token", default=os.environ.get("ICPD_SERVE_TOKEN"), help="its token (--url)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the in-process comparison")
    ap.add_argument("--json", type=Path, help="also write the report here")
    args = ap.parse_args()
    if not 0 < args.duration <= MAX_DURATION_S or not 1 <= args.clients <= 256:
        fail(f"--duration {args.duration:g} / --clients {args.clients}: give a duration in (0, {MAX_DURATION_S:.0f}] s "
             "and 1 to 256 clients")

    url = check_loopback(args.url) if args.url else None  # before anything is loaded

    from icpd.artifacts.model_dir import ModelDir
    from icpd.benchmarks.env import collect_environment

    model = args.model if args.model is not None else model_dir_for(args.preset, None)
    supports = args.support or supports_for(model, default_work())
    preset = ModelDir.open(model).preset
    images = request_images(preset.image_size)
    bodies = [png_bytes(img) for img in images]
    load_before = os.getloadavg()
    server = log = None
    if url is None:
        url = f"http://127.0.0.1:{free_port()}"
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"serve_load_{os.getpid()}.log"
        server = start_server(model, supports, int(urlparse(url).port or 0), args.threads, args.workers,
                              args.deadline, log)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token and args.url else {}
    try:
        with httpx.Client() as c:
            wait_ready(c, url, server, log)
            listed = c.get(f"{url}/v1/supports", headers=headers, timeout=30).json()
            classes = [s["name"] if isinstance(s, dict) else s for s in listed.get("supports", listed)]
            before, client_cpu = server_process(c, url, headers), cpu_seconds()
            service = run_clients(url, bodies, classes, args.clients, args.duration, headers,
                                  max(REQUEST_TIMEOUT_S, args.deadline + 30))
            client_cpu, after = cpu_seconds() - client_cpu, server_process(c, url, headers)
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
    report = {"url": url, "preset": preset.name, "model": str(model), "classes": classes,
              "image_px": preset.image_size, "clients": args.clients, "duration_s": args.duration,
              "threads": args.threads, "workers": args.workers,
              "deadline_s": None if args.url else args.deadline, **service,
              "rss_before_bytes": _int(before.get("process_resident_memory_bytes")),
              "rss_after_bytes": _int(after.get("process_resident_memory_bytes")),
              # where the CPU went, per request (the clients' warm-up requests included): beside the
              # in-process figure, what HTTP, decoding and encoding cost, and what the load client took
              "cpu_ms_per_request": {
                  "server": _per(after.get("process_cpu_seconds_total", 0) - before.get("process_cpu_seconds_total", 0),
                                 service["requests"] + args.clients),
                  "load_client": _per(client_cpu, service["requests"] + args.clients)},
              "server_exit_code": None if server is None else server.returncode}
    if not args.no_baseline:
        report["in_process"] = in_process(model, supports, images, args.threads, args.workers, args.duration)
        report["ratio"] = round(report["throughput_rps"] / report["in_process"]["throughput_ips"], 3)
    env = collect_environment()
    report["machine"] = {k: env.get(k) for k in ("cpu_model", "cpu_int8_flags", "cpu_cores", "cpu_cores_usable", "os")}
    report["machine"]["onnxruntime"] = env["packages"]["onnxruntime"]
    report["load_avg_before"], report["load_avg_after"] = load_before, os.getloadavg()
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)
    sys.exit(1 if report["errors"] else 0)


if __name__ == "__main__":
    main()
