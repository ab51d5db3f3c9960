"""The ``icpd`` command line. Thin: each command parses options and calls one library function."""

from __future__ import annotations

import typer

from icpd.commands import (
    bench,
    cache_support,
    data,
    evaluate,
    export,
    infer,
    model,
    stream,
    train,
    trt,
    weights,
)
from icpd.commands.help_text import plain_flag_help

plain_flag_help()  # flags read `--force --no-force`, not `--force --no-force <bool>`
app = typer.Typer(
    name="icpd",
    help="Deploy ICPD-Net few-shot segmentation of remote-sensing imagery: export, cache, build, infer, bench.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# The command modules, in the order `icpd --help` lists their commands (explicit: nothing is
# discovered at import).
COMMAND_MODULES = (model, export, cache_support, infer, stream, trt, bench, evaluate, train, data, weights)
for _module in COMMAND_MODULES:
    _module.register(app)


def main() -> None:
    """The ``icpd`` console script: ``app`` in a process of its own, whose ONNX Runtime sessions
    share one thread pool (``icpd.runtime.backends.ort.share_thread_pool``)."""
    from icpd.runtime.backends.ort import share_thread_pool

    share_thread_pool()
    app()


if __name__ == "__main__":
    main()
