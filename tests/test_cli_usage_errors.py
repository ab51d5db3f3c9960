"""Issue 20 §3: every click usage error (a value out of range, a wrong type, a bad choice, a missing
option or argument, an unknown option or command) is ONE line ``error: <option>: <what> (got
<value>); <fix>`` on stderr with exit 2, in every command and sub-command; no boxed panel.
``icpd --version`` prints the package's version without importing torch."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from icpd.cli import app

M = ["-m", "model", "-s", "s.support", "-o", "out"]  # what infer/stream need besides the option under test

# (argv, the exact line on stderr). Values are refused while the options are parsed: no file is read.
CASES = [
    (["infer", "x", *M, "--threads", "0"], "error: --threads: must be >= 1 (got 0); pass a value >= 1"),
    (["infer", "x", *M, "--tile", "0"], "error: --tile: must be >= 1 (got 0); pass a value >= 1"),
    (["infer", "x", *M, "--threshold", "2"],
     "error: --threshold: must be from 0 to 1 (got 2); pass a value from 0 to 1"),
    (["infer", "x", *M, "--batch", "0"], "error: --batch: must be >= 1 (got 0); pass a value >= 1"),
    (["infer", "x", *M, "--tile", "abc"], "error: --tile: not a whole number (got abc); pass an integer >= 1"),
    (["infer", "x", *M, "--backend", "tpu"],
     ("error: --backend: not one of the choices (got tpu); choose one of torch, ort, trt (onnxruntime is ort, "
      "tensorrt is trt)")),
    (["infer", "x", "-s", "s.support", "-o", "out"],
     "error: --model: required option missing (got nothing); give --model PATH (`icpd infer --help` lists them)"),
    (["infer", "x", *M, "--zzzz"],
     "error: --zzzz: no such option of icpd infer; `icpd infer --help` lists them"),
    (["infer", "x", *M, "--quiet=3"], "error: --quiet: a flag, takes no value (got 3); write --quiet alone"),
    (["infer", "x", "-o", "out", "-s", "s.support", "-m"],
     "error: -m: needs a value (got nothing); write -m PATH (`icpd infer --help` lists them)"),
    (["stream", "0", *M[:4], "--every", "0"], "error: --every: must be >= 1 (got 0); pass a value >= 1"),
    (["eval", "--dataset", "isaid5i", "--root", "r", "--fold", "1.5"],
     "error: --fold: not a whole number (got 1.5); pass an integer from 0 to 2"),
    (["train", "--dataset", "isaid5i", "--root", "r", "--fold", "3", "--class-embeddings", "e", "-o", "o"],
     "error: --fold: must be from 0 to 2 (got 3); pass a value from 0 to 2"),
    (["data", "synth", "--out", "d", "--zoom", "9"],
     "error: --zoom: must be from 0.25 to 8 (got 9); pass a value from 0.25 to 8"),
    (["data", "synth", "--out", "d", "--preset", "huge"],
     "error: --preset: unknown preset 'huge'; choose one of paper, paper-vgg16, tiny"),
    (["data", "synth", "--out", "d", "--tiles", "-3"], "error: --tiles: must be >= 1 (got -3); pass a value >= 1"),
    (["bench", "compare"],
     ("error: BASELINE: required argument missing (got nothing); give BASELINE "
      "(`icpd bench compare --help` lists them)")),
    (["bench", "compare", "a.json", "--zzzz"],
     "error: --zzzz: no such option of icpd bench compare; `icpd bench compare --help` lists them"),
    (["export", "--rank-prior", "zz"], ("error: --rank-prior: not one of the choices (got zz); choose one of topk, "
                                        "sort, plugin (onnx is the old name of topk)")),
    (["info", "extra"], ("error: unexpected extra argument(s) (got extra); remove them, or quote a value that "
                         "holds spaces (`icpd info --help` lists them)")),
    (["segment"], "error: segment: no such command of icpd; `icpd --help` lists the commands"),
]


@pytest.mark.parametrize(("argv", "line"), CASES, ids=[" ".join(a[:2]) + " " + a[-1] for a, _ in CASES])
def test_usage_errors_are_one_line_exit_2(argv, line):
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 2, res.output
    assert res.stdout == ""
    assert res.stderr == line + "\n"  # one line: no panel, no "Usage:" block, no traceback


def test_an_unknown_option_with_a_near_name_is_suggested():
    res = CliRunner().invoke(app, ["infer", "x", *M, "--treshold", "0.4"])
    assert res.exit_code == 2
    assert res.stderr == ("error: --treshold: no such option of icpd infer; did you mean --threads or --threshold? "
                          "(`icpd infer --help` lists them)\n")


def _icpd(*argv: str) -> subprocess.CompletedProcess[str]:
    """``icpd ARGV`` the way a user types it (the console script's own ``main``)."""
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    return subprocess.run([sys.executable, "-c", "from icpd.cli import main; main()", *argv],
                          capture_output=True, text=True, timeout=120, env=env, check=False)


def test_usage_errors_in_a_real_process():
    """The console script takes the same path as CliRunner (a range error, a sub-command's missing argument)."""
    res = _icpd("infer", "x", *M, "--threads", "0")
    assert (res.returncode, res.stdout, res.stderr) == (2, "", CASES[0][1] + "\n")
    res = _icpd("bench", "compare")
    assert res.returncode == 2 and res.stderr.splitlines() == [CASES[16][1]]


def test_version_prints_the_package_version_without_torch():
    probe = ("import sys\nfrom icpd.cli import main\nsys.argv = ['icpd', '--version']\ntry:\n    main()\n"
             "except SystemExit as e:\n    code = e.code\n"
             "print(*(m in sys.modules for m in ('torch', 'numpy', 'onnxruntime')), code, file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.stdout == f"icpd {version('icpd')}\n"
    assert res.stderr.split() == ["False", "False", "False", "0"]  # nothing heavy imported; exit 0
    assert CliRunner().invoke(app, ["--version"]).stdout == f"icpd {version('icpd')}\n"


def test_a_bad_value_refused_inside_a_command_names_its_option_too():
    """`fail(typer.BadParameter(..., param_hint=...))` from a command's body: the same form, option first."""
    res = CliRunner().invoke(app, ["bench", "--backends", "tpu"])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith("error: --backends: unknown backend 'tpu'; ") and res.stderr.count("\n") == 1
