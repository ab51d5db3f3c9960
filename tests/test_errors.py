"""Library errors name Python parameters; the command layer prints them as the running command's flags
(icpd.errors, icpd.commands.console.cli_text)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from icpd.commands.console import cli_text, flag_for, name_params
from icpd.errors import ParamError, ParamMessage, arg, render


def test_python_reading_names_the_parameter():
    err = ParamError(f"{arg('tile', 0)}: must be >= 1 pixel; pass {arg('force', True)} or {arg('engines')}")
    assert str(err) == "tile=0: must be >= 1 pixel; pass force=True or engines"
    assert err.args == ("tile=0: must be >= 1 pixel; pass force=True or engines",)
    assert err.param == "tile"  # the first parameter named, unless given
    assert isinstance(err, ValueError)
    assert ParamError(f"{arg('a', 1)} and {arg('b', 2)}", param="b").param == "b"
    assert ParamError("no parameter here").param is None


def test_flag_reading_outside_a_command():
    err = ParamError(f"{arg('max_frames', -1)}: must be >= 0; or pass {arg('force', True)}")
    assert cli_text(err) == "--max-frames -1: must be >= 0; or pass --force"
    assert cli_text(ParamError(f"{arg('model_dir', 'm')}: not a model dir")) == "--model m: not a model dir"
    assert render(err.template, lambda name, value: name.upper()) == "MAX_FRAMES: must be >= 0; or pass FORCE"


def test_values_are_shown_as_written_even_with_braces_and_colons():
    path = Path("/data/{run}:1/out dir")
    err = ParamError(f"{arg('out', path)}: exists")
    assert str(err) == "out=/data/{run}:1/out dir: exists"
    assert cli_text(err) == "--out /data/{run}:1/out dir: exists"


def test_pickles_with_its_parameters():
    """Ray sends a worker's error to the driver: the flags must survive the trip."""

    class BuildFailed(ParamMessage, RuntimeError):
        pass

    for err in (ParamError(f"{arg('tile', 3)}: too small"), ParamError(f"{arg('batch', 0)}: must be >= 1")):
        back = pickle.loads(pickle.dumps(err))
        assert (type(back), str(back), back.param) == (type(err), str(err), err.param)
        assert cli_text(back) == cli_text(err)
    mixed = BuildFailed(f"{arg('out', '/x')}: exists")
    assert isinstance(mixed, RuntimeError)
    assert (cli_text(mixed), str(mixed)) == ("--out /x: exists", "out=/x: exists")


def test_a_rewording_wrapper_is_shown_as_its_cause():
    """``raise ExportError(str(e)) from e`` keeps the cause's flags; a wrapper with words of its own
    keeps them."""
    cause = ParamError(f"{arg('max_ratio', 0.5)}: give a ratio above 0")
    try:
        raise RuntimeError(str(cause)) from cause
    except RuntimeError as wrapped:
        assert cli_text(wrapped) == "--max-ratio 0.5: give a ratio above 0"
    try:
        raise RuntimeError(f"export failed: {cause}") from cause
    except RuntimeError as wrapped:
        assert cli_text(wrapped) == "export failed: max_ratio=0.5: give a ratio above 0"
    assert cli_text("plain text") == "plain text"


def test_arg_takes_parameter_names_only():
    with pytest.raises(ValueError, match="'--tile' is not a Python parameter name"):
        arg("--tile")


def test_the_running_command_decides_the_flag():
    """Inside a command: a declared flag (``name_params``), its option of that Python name (``out_path``
    is ``--out``, ``bound`` is ``--queue``), its option under the usual alias (``out_dir``, ``model_dir``),
    else ``--`` and the name with dashes (also for an alias the command has no option for)."""
    app = typer.Typer()

    @app.command()
    def run(out_path: Annotated[str, typer.Option("--out", "-o")] = "x",
            bound: Annotated[int, typer.Option("--queue")] = 1) -> None:
        name_params(limit="--max-frames")
        names = ("out_path", "bound", "limit", "max_tiles", "out", "out_dir", "model_dir")
        print(*(flag_for(n) for n in names))
        err = ParamError(f"{arg('bound', 0)}: must be >= 1; see {arg('limit')} and {arg('out', 'a b')}")
        print(cli_text(err))

    res = CliRunner().invoke(app, [])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == [
        "--out --queue --max-frames --max-tiles --out --out --model-dir",
        "--queue 0: must be >= 1; see --max-frames and --out a b",
    ]


def test_the_predictors_input_errors_are_param_errors():
    """InputError (Predictor's refusals) is a ParamError: it names its parameter for the CLI too."""
    from icpd.runtime.validation import InputError, check_threads, check_threshold

    with pytest.raises(InputError) as err:
        check_threads(0)
    assert isinstance(err.value, ParamError) and isinstance(err.value, TypeError)
    assert str(err.value) == "threads: must be >= 1 (got 0); pass a value >= 1"
    assert err.value.param == "threads"
    assert cli_text(err.value) == "--threads: must be >= 1 (got 0); pass a value >= 1"
    with pytest.raises(InputError) as err:
        check_threshold(2)
    assert cli_text(err.value) == "--threshold: must be from 0 to 1 (got 2); pass a value from 0 to 1"


def test_every_message_that_names_a_parameter_is_raised_as_a_param_message():
    """``arg()`` in the message of an exception that is no ParamMessage would leave its marks in
    ``str(err)`` (what a Python caller reads): every raise that uses it raises a ParamMessage."""
    import ast
    import importlib
    from pathlib import Path

    import icpd.errors

    root = Path(icpd.errors.__file__).parent
    wrong = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        module = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
                    and isinstance(node.exc.func, ast.Name)):
                continue
            if not any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "arg"
                       for a in node.exc.args for n in ast.walk(a)):
                continue
            name = node.exc.func.id
            cls = getattr(importlib.import_module(module), name, None) or getattr(icpd.errors, name, None)
            if not (isinstance(cls, type) and issubclass(cls, ParamMessage)):
                wrong.append(f"{module}:{node.lineno} raises {name}")
    assert wrong == []


def test_a_param_message_rewording_its_cause_is_shown_as_its_cause():
    """``raise ExportError(str(e)) from e`` with ExportError itself a ParamMessage (icpd export wraps
    the INT8 conversion's errors so): the cause's flags, not the copy's Python words."""

    class Wrapper(ParamMessage, RuntimeError):
        pass

    cause = ParamError(f"{arg('calibration', '/d')}: no images in it")
    try:
        raise Wrapper(str(cause)) from cause
    except Wrapper as wrapped:
        assert str(wrapped) == "calibration=/d: no images in it"
        assert cli_text(wrapped) == "--calibration /d: no images in it"
