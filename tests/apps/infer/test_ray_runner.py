"""`icpd infer --ray` on a local Ray cluster: outputs identical to single-process `icpd infer`,
an actor whose process the test kills mid-run retried with the same outputs, a scene whose file
fails mid-read failed with the single-process message while the run goes on, and a restarted run
resuming from the manifest. One Ray (2 logical CPUs) is started for the module and shut down after it."""

from __future__ import annotations

import faulthandler
import json
import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from icpd.apps.infer.local import InferOptions, collect_inputs, infer_paths
from icpd.cli import app
from icpd.commands.console import cli_text
from icpd.runtime.predictor import Predictor

rasterio = pytest.importorskip("rasterio", reason="rasterio (the icpd[geo] extra) is not installed")
ray = pytest.importorskip("ray", reason="ray (the icpd[ray] extra) is not installed")
pytest.importorskip("ray.data", reason="ray[data] (the icpd[ray] extra) is not installed")
from icpd.apps.infer.ray_runner import infer_paths_ray
from tests.runtime.supports import make_supports
from tests.runtime.test_scene import scene, write_tif

runner = CliRunner()
# batch 2: the 300 x 200 scene (6 tiles of 128 px, 3 x 2) is 3 predictor batches, so blending
# spans batches and a fault can strike in the middle of a scene
OPTIONS = InferOptions(overlap=32, batch=2, save_probs=True)


# each test here takes under 10 s (fault injection and retry included); a retry that hangs must fail
# the test, not hang CI (issue 14: "bounded in time"). pytest.fail raises a BaseException, which the
# driver's per-scene `except Exception` cannot swallow; a driver stuck inside Ray's C++ code, where no
# Python handler runs, is ended by faulthandler (every thread's stack dumped, the process exits).
TIME_LIMIT_S = 180
HARD_LIMIT_S = 300


@pytest.fixture(autouse=True, scope="module")
def hard_time_bound():
    faulthandler.dump_traceback_later(HARD_LIMIT_S * 4, exit=True)  # the module's fixtures and tests together
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def time_bound(hard_time_bound):
    def expire(signum, frame):
        pytest.fail(f"a Ray test ran past {TIME_LIMIT_S} s: a retry or an actor start hung")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TIME_LIMIT_S)
    faulthandler.dump_traceback_later(HARD_LIMIT_S, exit=True)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
    faulthandler.dump_traceback_later(HARD_LIMIT_S * 4, exit=True)  # back to the module's bound


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model(tiny_model_dir, tmp_path_factory):
    supports = make_supports(tiny_model_dir, tmp_path_factory.mktemp("supports"))
    p = Predictor.load(tiny_model_dir, backend="ort", threads=1)
    for s in supports:
        p.add_support(s)
    return tiny_model_dir, supports, p


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """A georeferenced scene larger than a tile grid, one smaller than a tile, one in between."""
    d = tmp_path_factory.mktemp("scenes")
    write_tif(d / "big.tif", scene(200, 300, seed=0))  # H 200, W 300: a 3 x 2 tile grid
    cv2.imwrite(str(d / "small.png"), scene(90, 110, seed=1))  # one reflection-padded tile
    cv2.imwrite(str(d / "mid.png"), scene(150, 140, seed=2))  # 2 x 2 tiles
    return d


@pytest.fixture(scope="module")
def reference(model, scenes, tmp_path_factory):
    """Single-process `infer_paths` outputs of the same scenes and options."""
    out = tmp_path_factory.mktemp("single")
    summary = infer_paths(model[2], [scenes], out, OPTIONS)
    assert summary.ok, [r.error for r in summary.failed]
    return out, summary


def run_ray(model, scenes: Path, out: Path, actors: int = 1, progress=None):
    model_dir, supports, predictor = model
    listed = collect_inputs([scenes], out)
    return infer_paths_ray(predictor, model_dir, supports, listed, out, OPTIONS, actors=actors, threads=1,
                           progress=progress)


def outputs(folder: Path) -> dict[str, bytes]:
    """Every scene output file (not the run's bookkeeping) by name."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and p.name != "summary.json" and not p.name.startswith(".")}


def assert_same_outputs(out: Path, ref: Path) -> None:
    got, want = outputs(out), outputs(ref)
    assert sorted(got) == sorted(want)
    assert {"big_labels.tif", "big_prob_ship.png", "small_labels.png", "mid_prob_tank.png"} <= set(want)
    for name in want:
        if name.endswith(".tif"):  # GeoTIFF: same pixels and georeferencing (bytes also carry GDAL's layout)
            with rasterio.open(out / name) as a, rasterio.open(ref / name) as b:
                np.testing.assert_array_equal(a.read(), b.read(), err_msg=name)
                assert (a.crs, a.transform, a.nodata) == (b.crs, b.transform, b.nodata), name
        else:
            assert got[name] == want[name], f"{name} differs from single-process icpd infer"


def per_class(summary_json: Path) -> dict[str, tuple]:
    doc = json.loads(summary_json.read_text())
    return {Path(r["path"]).name: (r["status"], r["height"], r["width"], r["tiles"], r["pixels"], r["area"])
            for r in doc["inputs"]}


def test_ray_outputs_equal_single_process_with_two_actors(local_ray, model, scenes, reference, tmp_path):
    ref_out = reference[0]
    summary = run_ray(model, scenes, tmp_path / "out", actors=2)
    assert summary.ok, [r.error for r in summary.failed]
    assert_same_outputs(tmp_path / "out", ref_out)
    assert per_class(tmp_path / "out" / "summary.json") == per_class(ref_out / "summary.json")
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["ray"]["actors"] == 2
    big = next(r for r in summary.results if r.path.endswith("big.tif"))
    assert big.tiles == 6 and big.area_unit == "m²" and sum(big.pixels.values()) <= 200 * 300


def _actor_pids() -> set[int]:
    """The processes of this machine's predictor actors: Ray titles an actor's process after it
    (``ray::MapWorker(MapBatches(TilePredictor))...``, in /proc/PID/cmdline)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
        except OSError:  # ended meanwhile, or not ours to read
            continue
        if title.startswith(b"ray::") and b"TilePredictor" in title:
            pids.add(int(entry.name))
    return pids


class KillTheActor:
    """Progress events of a run: when the first tiles come back (more are still to come), the test
    kills the predictor actor's process (SIGKILL: as when a node is lost); records what it killed when."""

    def __init__(self) -> None:
        self.killed: set[int] = set()
        self.at: tuple[int, int] | None = None  # (tiles done, of total) when killed

    def start_input(self, path): ...
    def scene_planned(self, path, height, width, tiles): ...
    def finish_input(self, result): ...

    def tiles_done(self, done: int, total: int) -> None:
        if self.at is None:
            self.killed, self.at = _actor_pids(), (done, total)
            for pid in self.killed:
                os.kill(pid, signal.SIGKILL)


def test_killed_actor_is_retried_and_outputs_are_unchanged(local_ray, model, scenes, reference, tmp_path):
    """The actor's process is killed by the test mid-run (1 actor; 6 batches of 3 scenes): Ray restarts
    it and retries its batches; every output equals single-process `icpd infer`."""
    fault = KillTheActor()
    summary = run_ray(model, scenes, tmp_path / "out", progress=fault)
    assert fault.killed and fault.at is not None and fault.at[0] < fault.at[1], (fault.killed, fault.at)
    assert summary.ok, [r.error for r in summary.failed]
    assert_same_outputs(tmp_path / "out", reference[0])


def test_a_scene_failing_mid_read_is_failed_with_the_local_message_and_the_run_goes_on(local_ray, model,
                                                                                          tmp_path):
    """A GeoTIFF whose second 256 px block is garbage: its first tile batch reads, the next fails in the
    decode task. The scene is failed with the message single-process `icpd infer` gives (one failed-scene
    text), nothing of it is left in the output folder, and the other scenes are segmented."""
    bad = tmp_path / "in"
    bad.mkdir()
    tif = write_tif(bad / "torn.tif", scene(200, 300, seed=4))
    with rasterio.open(tif) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_1_0", "TIFF", bidx=1))  # block column 1, row 0
        size = int(ds.get_tag_item("BLOCK_SIZE_1_0", "TIFF", bidx=1))
    with tif.open("r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * size)  # not a deflate stream
    cv2.imwrite(str(bad / "ok.png"), scene(150, 140, seed=2))
    local = infer_paths(model[2], [bad], tmp_path / "local", OPTIONS)
    summary = run_ray(model, bad, tmp_path / "ray")
    errors = {Path(r.path).name: r.error for r in summary.results}
    assert errors == {Path(r.path).name: r.error for r in local.results}
    assert errors["ok.png"] is None
    # what happened and where: the window being read (the first row's last tile: 128 px tiles, flush with the
    # right edge), GDAL's reason from rasterio's __cause__ chain (the damaged block), not "Read failed. See
    # previous exception for details."
    torn = errors["torn.tif"]
    assert torn.startswith(f"image {tif}: reading rows 0..127, columns 172..299 failed (torn.tif, band 1: "
                           "IReadBlock failed at X offset 1, Y offset 0: "), torn
    assert torn.endswith("); the file looks corrupt or truncated: export or copy it again"), torn
    assert "Read failed" not in torn
    assert sorted(p.name for p in (tmp_path / "ray").iterdir() if p.name.startswith("torn")) == []
    ok = "ok_labels.png"
    assert (tmp_path / "ray" / ok).read_bytes() == (tmp_path / "local" / ok).read_bytes()


def test_restarted_run_skips_complete_scenes_and_redoes_partial_ones(local_ray, model, scenes, reference,
                                                                     tmp_path):
    out = tmp_path / "out"
    model_dir, supports, _ = model
    argv = ["infer", str(scenes), "--model", str(model_dir),
            *[a for s in supports for a in ("--support", str(s))], "--out", str(out), "--overlap", "32",
            "--batch", "2", "--save-probs", "--threads", "1", "-q", "--ray", "local"]
    res = runner.invoke(app, argv)
    assert res.exit_code == 0, res.output
    assert "3 of 3 scene(s) segmented" in res.output
    # a run killed while writing `mid` leaves a subset of its files; `small` has a damaged file
    (out / "mid_prob_tank.png").unlink()
    good = (out / "small_overlay.png").read_bytes()
    (out / "small_overlay.png").write_bytes(good[:-7])
    res = runner.invoke(app, argv)
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "summary.json").read_text())
    redone = {Path(r["path"]).name: not any("not redone" in n for n in r["notes"]) for r in doc["inputs"]}
    assert redone == {"big.tif": False, "mid.png": True, "small.png": True}
    assert len(list((out / "runs").glob("*.jsonl"))) == 2
    assert_same_outputs(out, reference[0])


def test_an_actor_that_cannot_start_stops_the_run_with_one_clear_error(local_ray, model, scenes, tmp_path):
    """A node without the model dir: the actors die in their constructor; the run stops (no endless
    restarts) with a ValueError naming the cause, and the summary is still written."""
    _, supports, predictor = model
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"^the Ray run stopped: .*model dir /nonexistent/icpd-model"):
        infer_paths_ray(predictor, "/nonexistent/icpd-model", supports, collect_inputs([scenes], out), out,
                        OPTIONS, threads=1)
    assert json.loads((out / "summary.json").read_text())["inputs"] == []


def test_ray_auto_from_another_process_joins_the_running_cluster_with_relative_paths(local_ray, model, scenes,
                                                                                     reference, tmp_path):
    """`icpd infer --ray auto` in a process of its own joins the cluster already running on this
    machine (this module's) and gives the single-process outputs. Its paths are relative to its
    own folder, which the cluster's workers do not share (they were sent as given and the actors
    failed with "model dir model: not a directory")."""
    import os
    import shutil
    import subprocess
    import sys

    model_dir, supports, _ = model
    work = tmp_path / "work"
    work.mkdir()
    (work / "model").symlink_to(model_dir)
    (work / "scenes").symlink_to(scenes)
    for s in supports:
        shutil.copy(s, work / s.name)
    code = "import sys; from icpd.cli import main; sys.argv = ['icpd', *sys.argv[1:]]; main()"
    args = [sys.executable, "-c", code, "infer", "scenes", "--model", "model",
            *[a for s in supports for a in ("--support", s.name)], "--out", "out", "--overlap", "32",
            "--batch", "2", "--save-probs", "--threads", "1", "-q", "--ray", "auto"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=150, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "3 of 3 scene(s) segmented" in proc.stdout
    assert json.loads((work / "out" / "summary.json").read_text())["ray"]["address"] == "auto"
    assert_same_outputs(work / "out", reference[0])


def test_an_address_where_no_cluster_answers_is_one_clear_error(monkeypatch):
    """ray.init's ConnectionError (no cluster, wrong port, a token the cluster refuses) becomes the
    user's error naming --ray and its value, with what to check."""
    from icpd.apps.infer import ray_runner

    def refuse(**kwargs):
        raise ConnectionError(f"Failed to connect to Ray cluster at {kwargs['address']}")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    refusal = (r"^address=10\.0\.0\.9:6379: could not join a Ray cluster there "
               r"\(Failed to connect to Ray cluster at 10\.0\.0\.9:6379\)\. Check the address")
    with pytest.raises(ValueError, match=refusal) as err:
        ray_runner.init_ray("10.0.0.9:6379", 1)
    assert "RAY_AUTH_TOKEN" in str(err.value)
    assert "no address (`icpd infer --ray` alone) starts a local Ray" in str(err.value)
    assert cli_text(err.value).startswith("--ray 10.0.0.9:6379: could not join")  # icpd infer --ray's words
