"""What every command shares: the two consoles, the user-error printer, the shared options.

A user error (the project's own error types, bad options) prints one line on stderr and exits 2,
without a traceback; anything else propagates and prints its traceback.

Output: ``out`` (stdout) gets results, ``console`` (stderr) errors, warnings and progress.
``-q/--quiet`` (every long command) hides progress bars and tables; errors, warnings (a
deprecated spelling's note included) and the command's final result line still print.
"""

from __future__ import annotations

import contextlib
import math
import shlex
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from icpd.commands.console import console, out, print_error
from icpd.config import Backend, Precision, RankPriorForm, list_presets

__all__ = [
    "PRESET_HELP",
    "BackendOpt",
    "BandsOpt",
    "DeviceOpt",
    "ModelDirOpt",
    "PrecisionOpt",
    "QuietOpt",
    "RankPriorOpt",
    "ThreadsOpt",
    "console",
    "fail",
    "fail_os_error",
    "finite_number",
    "note",
    "out",
    "parse_backend",
    "parse_bands_option",
    "parse_rank_prior",
    "preset_callback",
    "print_error",
    "process_guard",
    "threads_in_range",
    "workers_in_range",
]


PRESET_HELP = "Model preset (see `icpd info`)."


def preset_callback(value: str | None) -> str | None:
    if value is not None and value not in list_presets():
        raise typer.BadParameter(f"unknown preset {value!r}; choose one of {', '.join(list_presets())}")
    return value


def fail(err: Exception | str) -> NoReturn:
    """Print ``err`` as a one-line user error on stderr and exit with code 2."""
    # raised by a command itself: the form of click's own (the option first)
    if isinstance(err, typer.BadParameter):
        from icpd.commands.usage_errors import usage_error_line

        err = usage_error_line(err)
    print_error(err)
    raise typer.Exit(code=2)


def fail_os_error(err: OSError) -> NoReturn:
    """``error: <path>: <reason>; <fix>`` for an ``OSError`` on a user's path, exit 2."""
    from icpd.io import describe_os_error

    fail(describe_os_error(err))


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a service manager, a batch scheduler), raised like Ctrl-C so that every
    cleanup written for Ctrl-C runs too: temporary folders removed, an infer summary marked
    interrupted, outputs finalised."""


SIGTERM_EXIT = 143  # the shell's code for a process ended by SIGTERM (128 + 15)


@contextlib.contextmanager
def process_guard() -> Iterator[None]:
    """What the ``icpd`` console script wraps every command in (``icpd.cli.main``).

    * SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``) in the main thread; the
      process then exits with 143, as a process killed by SIGTERM would.
    * An ``OSError`` that carries a file name (a read-only output folder, a full disk, a missing
      input) becomes one ``error: <path>: <reason>; <fix>`` line and exit 2; one without a file
      name is not about a user's path and keeps its traceback.
    """
    terminated = threading.Event()

    def on_sigterm(signum: int, frame: object) -> None:
        terminated.set()
        raise Terminated

    previous = None
    if threading.current_thread() is threading.main_thread():  # signal handlers live there only
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    except OSError as err:
        if err.filename is None:
            raise
        try:
            fail_os_error(err)
        except typer.Exit as done:
            raise SystemExit(done.exit_code) from None
    except (SystemExit, KeyboardInterrupt):  # click turns a KeyboardInterrupt into "Aborted!" + exit 1
        if terminated.is_set():
            raise SystemExit(SIGTERM_EXIT) from None
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def note(text: str, to: Console | None = None) -> None:
    """One informational line on stderr, or on ``to`` (markup off: paths may hold [..])."""
    (to or console).print(f"note: {text}", markup=False, highlight=False, soft_wrap=True)


def _not_a_choice(value: object, choices: str) -> str:
    return f"not one of the choices (got {shlex.quote(str(value))}); choose one of {choices}"


# -- the rank-prior form: RankPriorForm.parse reads it (old names too); this adds the CLI's note ----
def parse_rank_prior(value: str | RankPriorForm) -> RankPriorForm:
    """``--rank-prior`` text -> :class:`RankPriorForm` (:meth:`RankPriorForm.parse`); an old name
    (``onnx``) is used with a note giving its new name."""
    try:
        form = RankPriorForm.parse(value)
    except ValueError:  # in the form of click's own choice errors (usage_errors): the option comes first
        raise typer.BadParameter(_not_a_choice(value, RankPriorForm.choices())) from None
    if value != form:  # an old name: the enum compares equal to its value only
        note(f"--rank-prior {value} is now called {form.value}; using {form.value}")
    return form


RANK_PRIOR_HELP = ("How the rank (NDCG) prior is written in the matcher: topk (standard ONNX, "
                   "data-dependent k; fastest on ONNX Runtime CPU), sort (standard ONNX, static shapes: "
                   "TensorRT without a plugin) or plugin (one NdcgPrior node per level: the TensorRT "
                   "plugin). `onnx` is the old name of topk. Default (export): the exporter's, topk.")

# -- options that mean the same thing in every command -----------------------------------------------
ModelDirOpt = Annotated[Path, typer.Option("--model", "-m", help="Exported model directory (`icpd export`).")]


def parse_backend(value: str | Backend) -> Backend:
    """``--backend`` text -> :class:`Backend` through the registry (names and aliases, one message)."""
    from icpd.runtime.backends.registry import choices, resolve

    try:
        return resolve(value)
    except ValueError:  # in the form of click's own choice errors (usage_errors): the option comes first
        raise typer.BadParameter(_not_a_choice(value, choices())) from None


BackendOpt = Annotated[Backend, typer.Option(
    parser=parse_backend, metavar="<torch|ort|trt>",
    help="Runtime: torch (PyTorch eager), ort (ONNX Runtime; also onnxruntime) or trt (TensorRT engines "
         "from `icpd build`; also tensorrt).")]
DeviceOpt = Annotated[str, typer.Option(help="Device: cpu, cuda or cuda:N.")]


def threads_in_range(threads: int | None) -> int | None:
    """--threads against the Predictor's rule (1 to 4 per CPU here), so the refusal names the option."""
    from icpd.runtime.validation import InputError, check_threads

    try:
        return check_threads(threads)
    except InputError as e:
        raise typer.BadParameter(str(e).removeprefix("threads: ")) from None


def finite_number(param: typer.CallbackParam, value: float | None) -> float | None:
    """A float option with only a lower bound: ``inf`` passes click's range check, and as a learning rate
    (NaN weights) or a duration (a run that never ends) it is never what the user meant."""
    if value is not None and not math.isfinite(value):
        example = f", e.g. {param.default}" if isinstance(param.default, float) else ""
        raise typer.BadParameter(f"must be a finite number (got {value}); pass a finite value{example}")
    return value


def workers_in_range(workers: int) -> int:
    """--workers (DataLoader processes) within 4 per CPU (at least 16), --threads' bound: 100,000 of them
    forked for minutes, and a run stopped meanwhile left workers behind holding the terminal."""
    from icpd.runtime.validation import max_threads

    cpus, limit = max_threads()
    if workers > limit:
        raise typer.BadParameter(f"must be from 0 to {limit} (got {workers}; this machine has {cpus} CPUs); "
                                 f"pass a value from 0 to {limit}")
    return workers


ThreadsOpt = Annotated[int | None, typer.Option(
    min=1, callback=threads_in_range, help="CPU threads for the backend (default: its own choice).")]
PrecisionOpt = Annotated[Precision, typer.Option(help="Numeric precision: fp32 or fp16.")]
RankPriorOpt = Annotated[RankPriorForm | None, typer.Option(
    parser=parse_rank_prior, metavar="<topk|sort|plugin>", help=RANK_PRIOR_HELP)]
EnginesOpt = Annotated[Path | None, typer.Option(
    help="TensorRT engine dir from `icpd build` (with --backend trt).")]
ThresholdOpt = Annotated[float, typer.Option(
    min=0.0, max=1.0, help="Foreground probability a class needs to win a pixel (>=).")]
TileOpt = Annotated[int | None, typer.Option(
    min=1, help="Tile side in scene pixels for images larger than the model input. "
                "Default: the model input size.")]
OverlapOpt = Annotated[int, typer.Option(min=0, help="Pixels shared by neighbouring tiles (blended).")]
TileBatchOpt = Annotated[int, typer.Option(min=1, help="Tiles per predictor call.")]
QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No progress bars or tables: errors, warnings (deprecated spellings included) and "
                          "the final result line only.")]


def parse_bands_option(value: str | tuple[int, int, int] | None) -> tuple[int, int, int] | None:
    """``--bands 4,3,2`` -> ``(4, 3, 2)`` through :func:`icpd.io.parse_bands`, the one band parser."""
    from icpd.io.raster import BANDS_RULE, BandsError, parse_bands

    try:
        return parse_bands(value)
    except BandsError:  # click names the option first: "--bands: '4,3': expected three ..."
        raise typer.BadParameter(f"{value!r}: {BANDS_RULE}") from None


BandsOpt = Annotated[Any, typer.Option(  # Any: a tuple annotation would make click take three arguments
    "--bands", parser=parse_bands_option, metavar="R,G,B",
    help="Bands of multi-band images to use as red, green, blue: 1-based numbers in file order, e.g. 4,3,2 "
         "(GDAL/QGIS numbering). Needed for 4-band TIFFs (RGB+NIR); default: the file's own RGB.")]
