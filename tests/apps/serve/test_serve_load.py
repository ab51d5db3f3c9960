"""scripts/serve_load.py, the bounded loopback load test of `icpd serve`: a ~3 s run on the tiny preset
gives every field of its report, 0 errors, the server stopped with exit code 0 and the in-process
comparison; it refuses a non-loopback --url and an unbounded duration before loading anything.
Speed is not checked (the machine is shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime.supports import make_supports

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "serve_load.py"


def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_a_short_run_reports_every_field_and_no_errors(tiny_model_dir, tmp_path):
    supports = make_supports(tiny_model_dir, tmp_path)
    out = tmp_path / "report.json"
    proc = run("--model", str(tiny_model_dir), "--support", str(supports[0]), "--support", str(supports[1]),
               "--duration", "3", "--clients", "8", "--threads", "1", "--workers", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert json.loads(proc.stdout[proc.stdout.index("{"):]) == report  # printed and written alike
    assert report["preset"] == "tiny" and report["classes"] == ["ship", "tank"]
    assert (report["clients"], report["duration_s"], report["threads"], report["workers"], report["deadline_s"]) == (
        8, 3.0, 1, 2, 60.0)
    assert report["errors"] == {} and report["requests"] == report["ok"] > 0
    assert report["clients_active"] == 8  # every client sent timed requests (the window opened for all)
    assert 3.0 <= report["wall_s"] < 3.0 + 60  # stops by itself: the duration plus the requests in flight
    assert report["throughput_rps"] == pytest.approx(report["ok"] / report["wall_s"], rel=1e-3)
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert report["rss_before_bytes"] > 50e6 and report["rss_after_bytes"] > 50e6  # a loaded model, from /metrics
    assert report["server_exit_code"] == 0  # SIGTERM: graceful
    assert report["cpu_ms_per_request"]["server"] > 0 and report["cpu_ms_per_request"]["load_client"] > 0
    base = report["in_process"]
    assert base["images"] > 0 and base["throughput_ips"] == pytest.approx(base["images"] / base["wall_s"], rel=1e-3)
    assert base["cpu_ms_per_image"] > 0
    assert report["ratio"] == pytest.approx(report["throughput_rps"] / base["throughput_ips"], abs=1e-3)
    machine = report["machine"]
    assert machine["cpu_cores"] >= 1 and isinstance(machine["cpu_int8_flags"], list) and machine["onnxruntime"]
    assert len(report["load_avg_before"]) == len(report["load_avg_after"]) == 3


@pytest.mark.parametrize(("args", "words"), [
    (("--url", "http://192.0.2.7:8080"),
     "--url 'http://192.0.2.7:8080': this load test sends load only to this machine"),
    (("--url", "http://example.com"), "--url 'http://example.com': this load test sends load only to this machine"),
    (("--duration", "601"), "--duration 601 / --clients 8: give a duration in (0, 600] s"),
    (("--duration", "inf"), "--duration inf / --clients 8: give a duration in (0, 600] s"),
    (("--clients", "0"), "--duration 10 / --clients 0: give a duration in (0, 600] s and 1 to 256 clients"),
])
def test_refuses_other_hosts_and_unbounded_runs(args, words):
    proc = run(*args, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {words}") and proc.stderr.count("\n") == 1  # one line
    assert proc.stdout == ""
