"""Issue 20, section 1, the class of defect: every command that writes an output claims it before its work
(icpd.io.outputs.claim_output). A second run writing the same output is refused at once with one
`error:` line naming the output and the first run's pid (exit 2), instead of both "succeeding" (the
last writer winning) or failing late; an output that cannot be written fails at once, the same way.

The inputs given below do not exist: a command that claimed its output first reports the output (and
nothing is read, loaded or written); one that did its work first reports the missing input instead.
Where a run is long, the "other run" is the test process holding the lock through the same helper
(the locks are not re-entrant, so in one process the second claim is refused too); the synthetic data
set and the weights cache are also raced by real processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from icpd.cli import app
from icpd.io.locks import exclusive_lock, lock_path

ICPD = [sys.executable, "-c", "from icpd.cli import main; main()"]


def _flat(text: str) -> str:
    return " ".join(text.split())


def _cases(tmp: Path, out: Path) -> dict[str, tuple[list[str], Path, str]]:
    """name -> (argv with the output at ``out``, the path the command claims, the command the lock names)."""
    missing = tmp / "missing"  # every input: absent
    train = ["train", "--dataset", "isaid5i", "--root", str(missing), "--fold", "0", "--class-embeddings",
             str(missing / "e.safetensors"), "--preset", "tiny", "--out", str(out), "-q"]
    return {
        "data synth": (["data", "synth", "--out", str(out), "--tiles", "5", "--size", "32", "-q"], out, "data synth"),
        "train": (train, out, "train"),
        "train --resume": ([*train, "--resume"], out, "train"),
        "convert-checkpoint": (["convert-checkpoint", str(missing / "a.pt"), "--out", str(out), "--preset", "tiny"],
                               out, "convert-checkpoint"),
        "embed-text": (["embed-text", "--clip-weights", str(missing / "clip.pt"), "--classes", "ship,harbor",
                        "--out", str(out), "--preset", "tiny"], out, "embed-text"),
        "eval --json": (["eval", "--dataset", "isaid5i", "--root", str(missing), "--fold", "0", "--checkpoint",
                         str(missing / "c.safetensors"), "--json", str(out), "-q"], out, "eval"),
        "predict": (["predict", "--checkpoint", str(missing / "c.safetensors"), "--query", str(missing / "q.png"),
                     "--support", str(missing / "s.png"), "--mask", str(missing / "m.png"), "--class-embeddings",
                     str(missing / "e.safetensors"), "--target-class", "ship", "--out", str(out)],
                    out / "q_mask.png", "predict"),
        "export": (["export", "--random-weights", "--preset", "tiny", "--out", str(out), "-q"], out, "export"),
        "build": (["build", "--model", str(missing / "model"), "--out", str(out), "-q"], out, "build"),
        "selftest": (["selftest", "--device", "cpu", "--out", str(out), "-q"], out, "selftest"),
        "bench ab --json": (["bench", "ab", str(missing / "a"), str(missing / "b"), "--json", str(out)], out, "bench"),
        "bench --json": (["bench", "--quick", "--cache-dir", str(tmp / "cache"), "--json", str(out), "-q"], out,
                         "bench"),
        "bench --report": (["bench", "--quick", "--cache-dir", str(tmp / "cache"), "--report", str(out), "-q"], out,
                           "bench"),
    }


def _unwritable_only(tmp: Path, out: Path) -> dict[str, list[str]]:
    """Outputs shared by design (caches: waited for, not refused), checked writable before the work all the same."""
    missing = tmp / "missing"
    return {
        "build --timing-cache": ["build", "--model", str(missing / "model"), "--out", str(tmp / "engines"),
                                 "--timing-cache", str(out), "-q"],
        "bench --cache-dir": ["bench", "--quick", "--cache-dir", str(out), "-q"],
        "fetch-weights --cache-dir": ["fetch-weights", "vgg16", "--download", "--cache-dir", str(out)],
    }


CASES = list(_cases(Path("t"), Path("o")))


@pytest.mark.parametrize("name", CASES)
def test_a_second_run_into_the_same_output_is_refused_at_once(name, tmp_path):
    """Guards issue 20: none of these commands took a lock, so two runs both wrote the output in turn."""
    argv, claimed, command = _cases(tmp_path, tmp_path / "out")[name]
    with exclusive_lock(claimed, command):
        t0 = time.monotonic()
        res = CliRunner().invoke(app, argv)
        took = time.monotonic() - t0
        assert lock_path(claimed).is_file()  # the refused run left the holder's lock alone
    assert res.exit_code == 2, (name, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.output, (name, res.output)
    assert _flat(res.stderr).startswith(
        f"error: {claimed} is being written by another `icpd {command}` run (pid {os.getpid()} on "), res.stderr
    assert f"If that run no longer exists, delete {claimed}.lock" in _flat(res.stderr)
    assert took < 60, took  # imports on a loaded machine; no data read, no model built (the inputs are missing)
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == []  # nothing written, the lock gone


@pytest.mark.parametrize("name", CASES + list(_unwritable_only(Path("t"), Path("o"))))
def test_an_output_through_a_file_fails_before_any_work(name, tmp_path, monkeypatch):
    """Guards issue 20: an unwritable output (here a path through a file, which even root cannot write)
    was found only when the result was written, after the work (or, for train, as a traceback)."""
    import torch.hub

    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded"))
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    both = {**{k: v[0] for k, v in _cases(tmp_path, afile / "out").items()},
            **_unwritable_only(tmp_path, afile / "out")}
    res = CliRunner().invoke(app, both[name])
    assert res.exit_code == 2, (name, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.output, (name, res.output)
    assert _flat(res.stderr).startswith(f"error: {afile}: "), res.stderr
    assert "is not a folder; a part of the path is a file where a folder is needed; check the path" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"] and afile.read_text() == "not a folder"


@pytest.mark.parametrize(("name", "arg"), [("eval", "--json"), ("convert-checkpoint", "--out"),
                                           ("embed-text", "--out")])
def test_a_file_output_that_is_a_folder_fails_before_any_work(name, arg, tmp_path):
    """A folder given where the command writes a file: refused up front, naming it."""
    folder = tmp_path / "out"
    folder.mkdir()
    argv, _, _ = _cases(tmp_path, folder)[name if name != "eval" else "eval --json"]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 2, res.output
    assert _flat(res.stderr) == f"error: {folder}: Is a directory; it is a folder; name a file", res.stderr


def test_predict_runs_of_other_queries_share_the_folder(tmp_path):
    """The predict claim is the query's outputs, not the folder: another query's run is not refused."""
    argv, claimed, _ = _cases(tmp_path, tmp_path / "out")["predict"]
    with exclusive_lock(claimed.with_name("other_mask.png"), "predict"):
        res = CliRunner().invoke(app, argv)
    assert res.exit_code == 2 and "is being written" not in res.output
    assert f"error: checkpoint {tmp_path / 'missing' / 'c.safetensors'}: file not found" in _flat(res.stderr)


@pytest.mark.slow  # ~25 s: the first run must still be drawing while a second Python process starts
def test_two_real_data_synth_runs_into_one_folder(tmp_path):
    """Two `icpd data synth` processes: the second is refused (exit 2, the first's pid) while the first
    draws; the first finishes and its tree is exactly what a lone run writes."""
    out = tmp_path / "data"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"}
    cmd = [*ICPD, "data", "synth", "--out", str(out), "--tiles", "800", "--size", "96", "-q"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not lock_path(out).exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first run never took its lock"
            time.sleep(0.02)
        assert json.loads(lock_path(out).read_text())["pid"] == first.pid
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 2 and second.stdout == "", second
    assert _flat(second.stderr).startswith(f"error: {out} is being written by another `icpd data synth` run "
                                           f"(pid {first.pid} on "), second.stderr
    # Refused naming the first run's pid: the first held its lock then (it may finish before the second
    # process exits on a quiet machine, so whether it is still running afterwards proves nothing).
    assert first.returncode == 0, stderr
    assert stdout.startswith(f"wrote {out} ")
    assert not lock_path(out).exists()


def test_fetch_weights_waits_for_a_download_of_the_same_file(tmp_path, monkeypatch):
    """The weights cache is shared by design: a second fetch of the same file waits for the first (one
    note naming its pid) and returns the file it wrote, without downloading it again."""
    import torch.hub

    from icpd.model.pretrained import SOURCES

    target = tmp_path / "cache" / SOURCES["vgg16"].filename
    script = ("import sys, time\nfrom pathlib import Path\nfrom icpd.io.locks import exclusive_lock\n"
              "with exclusive_lock(sys.argv[1], 'fetch-weights'):\n    print('held', flush=True)\n    time.sleep(1.5)\n"
              "    Path(sys.argv[1]).write_bytes(b'weights')\n")
    first = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "held"
        calls: list[str] = []
        monkeypatch.setattr(torch.hub, "download_url_to_file", lambda url, dst, progress: calls.append(url))
        t0 = time.monotonic()
        res = CliRunner().invoke(app, ["fetch-weights", "vgg16", "--download", "--cache-dir", str(target.parent)])
        took = time.monotonic() - t0
    finally:
        first.wait(timeout=60)
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(target) and target.read_bytes() == b"weights" and calls == []
    assert _flat(res.stderr).startswith(f"note: {target} is being written by another `icpd fetch-weights` run (pid "
                                        f"{first.pid}, started "), res.stderr
    assert "waiting for it to finish" in res.stderr and res.stderr.count("note:") == 1
    assert took >= 0.5  # it waited
    assert not lock_path(target).exists()



@pytest.mark.parametrize("folder", ["/proc", "/sys"])
def test_eval_json_on_a_read_only_file_system_fails_before_the_evaluation(folder, tmp_path):
    """The case the issue names: `icpd eval --json` onto an unwritable path (here procfs / sysfs, which root
    cannot write either) fails at once, naming the folder, not after the whole evaluation."""
    if not Path(folder, "self" if folder == "/proc" else "kernel").is_dir():
        pytest.skip(f"no {folder} here")
    argv, _, _ = _cases(tmp_path, Path(folder) / "scores.json")["eval --json"]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert _flat(res.stderr).startswith(f"error: {folder}: "), res.stderr
