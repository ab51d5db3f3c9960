"""`icpd bench` says what it will cost before it starts (issue 20: 11 min, 5.1 GiB and 2.5 GB
without a word): measured time with its conditions, peak memory, the disk and where; and it
refuses a cache whose disk is too small for the export."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from icpd.benchmarks.budget import MEASURED, human_bytes, plan_run
from icpd.cli import app

runner = CliRunner()


def test_default_run_says_time_with_conditions_memory_and_disk(tmp_path: Path) -> None:
    cache = tmp_path / "not-yet" / "bench"  # not there yet: free space is read where it will be
    plan = plan_run(None, False, None, None, cache)
    free = shutil.disk_usage(tmp_path).free
    assert plan.preset == "paper" and plan.exports and plan.existing == ()
    assert abs(plan.free_bytes - free) < 1e9  # the disk that will hold it, not another
    text = "\n".join(plan.lines())
    assert text.startswith("icpd bench: preset paper. Measured for `icpd bench (ort-cpu and torch-cpu, 5 rounds)`:")
    assert "3.5 min on a quiet 2-core x86 VM (the README's figure" in text
    assert "11.0 min on a 2-core x86 VM loaded by other jobs, first run, export included (issue 20" in text
    assert "peak memory: 5.1 GiB RSS" in text
    assert f"disk: about 2.6 GB written once to {cache}/paper-<fingerprint> (" in text and "free there)" in text
    assert plan.refusal() is None or plan.free_bytes < 2.9e9


def test_too_little_disk_is_refused_with_the_numbers(tmp_path: Path) -> None:
    plan = dataclasses.replace(plan_run("paper", False, None, None, tmp_path), free_bytes=1_000_000_000)
    assert plan.needs_bytes == int(2_630_000_000 * 1.1)
    assert str(plan.refusal()) == (f"cache_dir={tmp_path}: the paper export needs about 2.9 GB, only 1.0 GB free "
                                   "there; free some space, pass cache_dir on a larger disk, or quick=True (the tiny "
                                   "preset, about 17 MB)")
    assert dataclasses.replace(plan, free_bytes=2_893_000_000).refusal() is None  # 2.893 GB >= 1.1 x 2.63 GB


def test_an_earlier_export_or_a_model_dir_needs_no_disk(tmp_path: Path) -> None:
    earlier = tmp_path / "paper-0123456789ab"
    earlier.mkdir()
    (earlier / "model.json").write_text("{}")
    (tmp_path / "paper-0123456789ab-int8").mkdir()  # an INT8 dir is not the FP32 export
    plan = dataclasses.replace(plan_run(None, False, None, None, tmp_path), free_bytes=0)
    assert plan.existing == (earlier,) and plan.needs_bytes == 0 and plan.refusal() is None
    assert f"an earlier export is in {tmp_path} (paper-0123456789ab)" in "\n".join(plan.lines())
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.json").write_text(json.dumps({"preset": {"name": "tiny"}}))
    plan = dataclasses.replace(plan_run(None, True, model, None, tmp_path), free_bytes=0)
    assert plan.preset == "tiny" and plan.needs_bytes == 0 and plan.refusal() is None
    assert "disk: nothing written (--model" in "\n".join(plan.lines())


def test_presets_without_figures_say_so(tmp_path: Path) -> None:
    lines = plan_run("paper-vgg16", False, None, None, tmp_path).lines()
    assert lines == [("icpd bench: preset paper-vgg16: no measured time, memory or disk figures for it "
                      "(measured: paper, tiny --quick)")]
    assert set(MEASURED) == {("paper", False), ("tiny", True)}


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (999, 16_863_295, 2_630_000_000)] == ["999 B", "16.9 MB", "2.6 GB"]


def test_cli_prints_the_plan_first_and_nothing_with_quiet(tmp_path: Path) -> None:
    """In-process, stopped right after the plan by a model dir that is not one (checked after
    the plan, before any timing): the plan is the first line; -q leaves it out."""
    bad = tmp_path / "m"
    bad.mkdir()
    res = runner.invoke(app, ["bench", "--model", str(bad), "--backends", "ort", "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 2, res.output
    lines = res.output.splitlines()
    assert lines[0] == ("icpd bench: preset of the model dir: no measured time, memory or disk figures for it "
                        "(measured: paper, tiny --quick)")
    assert lines[-1].startswith("error:")
    res = runner.invoke(app, ["bench", "--model", str(bad), "--backends", "ort", "-q"])
    assert res.exit_code == 2 and not res.output.startswith("icpd bench:"), res.output
