"""The ``icpd`` command line. Thin: each command parses options and calls one library function."""

from __future__ import annotations

from typing import Annotated

import typer

from icpd.commands import (
    bench,
    cache_support,
    data,
    evaluate,
    export,
    infer,
    model,
    selftest,
    serve,
    stream,
    train,
    trt,
    weights,
)
from icpd.commands.help_text import plain_flag_help
from icpd.commands.usage_errors import IcpdGroup

plain_flag_help()  # flags read `--force --no-force`, not `--force --no-force <bool>`
app = typer.Typer(
    name="icpd",
    help="Deploy ICPD-Net few-shot segmentation of remote-sensing imagery: export, cache, build, infer, bench.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=IcpdGroup,  # click's usage errors as one `error:` line, exit 2 (icpd/commands/usage_errors.py)
)


def _print_version(value: bool) -> None:
    """``icpd --version``: ``icpd 0.1.0`` from the installed package's metadata; imports nothing heavy."""
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    from icpd.commands.common import out

    try:
        text = version("icpd")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        from icpd import __version__ as text
    out.print(f"icpd {text}", markup=False, highlight=False)
    raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print the version (icpd X.Y.Z) and exit.")] = False,
) -> None:
    """Deploy ICPD-Net few-shot segmentation of remote-sensing imagery: export, cache, build, infer, bench."""


# The command modules, in the order `icpd --help` lists their commands (explicit: nothing is
# discovered at import).
COMMAND_MODULES = (model, export, cache_support, infer, serve, stream, trt, bench, evaluate, train, data, weights,
                   selftest)
for _module in COMMAND_MODULES:
    _module.register(app)


def main() -> None:
    """The ``icpd`` console script: ``app`` in a process of its own, whose ONNX Runtime sessions
    share one thread pool (``icpd.runtime.backends.ort.share_thread_pool``)."""
    import os
    import sys

    from icpd.commands.common import SIGTERM_EXIT, process_guard
    from icpd.commands.infer import ray_flag_argv

    sys.argv = ray_flag_argv(sys.argv)  # `icpd infer --ray` with no address: Typer options need a value
    if sys.argv[1:] != ["--version"]:  # `icpd --version` stays instant: no numpy, no ONNX Runtime
        from icpd.runtime.backends.ort import share_thread_pool

        share_thread_pool()
    try:
        with process_guard():  # SIGTERM like Ctrl-C; OSError on a path -> one line, exit 2
            app(prog_name="icpd")  # `icpd infer --help` in messages, however it was started
    except SystemExit as done:
        if done.code != SIGTERM_EXIT:
            raise
        # Stopped by SIGTERM: the cleanup has run (temporary folders removed, files closed). Skip
        # the interpreter's finalisation, where threads of torch or ONNX Runtime stopped mid-work
        # can crash the process (CI once saw SIGSEGV instead of 143 after an export was stopped).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(SIGTERM_EXIT)
    except RuntimeError as e:  # torchvision built for another torch: one line saying what to install
        from icpd.commands.torch_check import exit_if_mismatch

        exit_if_mismatch(e)  # any other RuntimeError is raised again
    except ImportError as e:  # a runtime-only install (no `icpd[torch]`) running a command that needs it
        missing = e.name or getattr(e.__cause__, "name", None) or ""
        if missing.partition(".")[0] not in TORCH_EXTRA_MODULES:
            raise
        from icpd.commands.common import fail

        try:
            fail(f"this command needs {missing}, which the runtime-only install leaves out: pip install 'icpd[torch]' "
                 "(machines without an NVIDIA GPU: pip install torch --index-url "
                 "https://download.pytorch.org/whl/cpu first)")
        except typer.Exit as done:
            raise SystemExit(done.exit_code) from None


# Modules of the `torch` extra (pyproject.toml): without them only exported models run.
TORCH_EXTRA_MODULES = frozenset({"torch", "torchvision", "open_clip", "onnx", "onnxscript", "scipy"})


if __name__ == "__main__":
    main()
