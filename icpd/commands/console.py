"""The two consoles every command prints to, and the one-line error printer.

``out`` (stdout) gets results, ``console`` (stderr) errors, warnings and progress. Its own module
so that the usage-error formatter (:mod:`icpd.commands.usage_errors`) and the shared options
(:mod:`icpd.commands.common`) both print through it without importing each other.

Library errors name Python parameters (:mod:`icpd.errors`: ``tile=0: must be >= 1 pixel``); printed
here they name the running command's flags instead (``--tile 0: must be >= 1 pixel``): :func:`cli_text`.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from icpd.errors import ParamMessage, render

__all__ = ["cli_text", "console", "flag_for", "name_params", "out", "print_error"]


class _ResultConsole(Console):
    """stdout console that never wraps lines when stdout is not a terminal (a pipe, a log file,
    a CI capture): machine-read lines such as ``logits max |ORT - torch| = 3.4e-07`` stay whole."""

    @property  # type: ignore[override]
    def soft_wrap(self) -> bool:
        return self._soft_wrap or not self.is_terminal

    @soft_wrap.setter
    def soft_wrap(self, value: bool) -> None:
        self._soft_wrap = value


console = Console(stderr=True)  # errors, warnings and progress
out: Console = _ResultConsole()  # results


_PARAM_FLAGS = "icpd.param_flags"  # click context meta key: the command's {parameter: flag} exceptions
# Library parameters that commands spell differently (where the running command has that option).
_FLAG_ALIASES = {
    "model_dir": "--model", "src_dir": "--model",  # build_engines, convert_model_dir_*: `--model MODEL_DIR`
    "out_dir": "--out", "engine_dir": "--engines",
    "exclude": "--int8-exclude", "min_speedup": "--int8-min-speedup",  # convert_model_dir_int8 (icpd export)
    "queue_size": "--queue",  # StreamOptions.queue_size (icpd stream)
    "address": "--ray",  # infer_paths_ray(address=): `icpd infer --ray ADDRESS`
    "precisions": "--precision",  # BenchConfig.precisions (icpd bench --precision fp32,int8)
    "supports": "--support", "masks": "--mask",  # lists of files: one repeatable option each
}


def _context() -> Any:
    from typer._click import globals as click_globals

    return click_globals.get_current_context(silent=True)


def name_params(**flags: str) -> None:
    """Declare, for the running command, the flag of a library parameter whose name differs from the
    command's own parameter and from :data:`_FLAG_ALIASES` (``name_params(limit="--max-frames")``)."""
    ctx = _context()
    if ctx is not None:
        ctx.meta.setdefault(_PARAM_FLAGS, {}).update(flags)


def flag_for(name: str) -> str:
    """The running command's flag for the library parameter ``name``: one declared with
    :func:`name_params`, else the command's option of that Python name (``out_path`` is ``--out``),
    else its option spelled as the library's usual alias (``model_dir`` is ``--model``), else ``--``
    and the name with dashes (``max_frames`` -> ``--max-frames``)."""
    dashed = "--" + name.replace("_", "-")
    ctx = _context()
    if ctx is None:
        return _FLAG_ALIASES.get(name, dashed)
    declared = ctx.meta.get(_PARAM_FLAGS, {})
    if name in declared:
        return str(declared[name])
    flags: dict[str, str] = {}  # the command's options: Python name -> first long flag
    for param in getattr(ctx.command, "params", ()):
        longs = [o for o in getattr(param, "opts", ()) if o.startswith("--")]
        if longs:
            flags[str(param.name)] = longs[0]
    if name in flags:
        return flags[name]
    alias = _FLAG_ALIASES.get(name)
    return alias if alias is not None and alias in flags.values() else dashed


def _flag_words(name: str, value: str | None) -> str:
    """A parameter as the command line writes it: ``--tile 0``; a switch given True: ``--force``."""
    flag = flag_for(name)
    return flag if value in (None, "True") else f"{flag} {value}"


def cli_text(err: Exception | str) -> str:
    """``err`` in the command line's words: its parameters as the running command's flags.

    An error that only re-words its cause (``raise ExportError(str(e)) from e``) is shown as its
    cause would be."""
    if isinstance(err, str):  # a marked parameter in plain text (it should not happen) still reads as a flag
        return render(err, _flag_words)
    cause = err.__cause__
    if isinstance(cause, ParamMessage) and str(cause) == str(err):  # re-worded as another type, same words
        err = cause
    if not isinstance(err, ParamMessage):
        return render(str(err), _flag_words)
    return render(err.template, _flag_words)


def print_error(err: Exception | str) -> None:
    """``error: <err>`` as one line on stderr (every user error, click's usage errors included), in
    the command line's words (:func:`cli_text`)."""
    err = cli_text(err)
    # soft_wrap: paths and key lists stay on one line, copy-pasteable; markup off: messages may hold [..]
    console.print(f"error: {err}", style="red", markup=False, highlight=False, soft_wrap=True)
