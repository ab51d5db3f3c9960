"""Click usage errors (bad option values, missing options, unknown options or commands) as one
``error: <option>: <what> (got <value>); <fix>`` line on stderr, exit 2: the same form as every
other user error (``icpd.commands.common.fail``), instead of Typer's boxed panel.

:class:`IcpdGroup` is the root group's class (``typer.Typer(cls=IcpdGroup)`` in ``icpd.cli``): its
``main`` runs the command line with ``standalone_mode=False`` and formats what click raises, so the
console script, ``python -m icpd.cli`` and ``typer.testing.CliRunner`` all take this one path, for
every command and sub-command (``bench compare``, ``data synth``, ...).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from typer._click import exceptions as click
from typer.core import TyperGroup
from typer.exceptions import Abort

from icpd.commands.console import print_error

USAGE_EXIT = 2  # the exit code of every user error (README "Exit codes")


def _shown(value: object) -> str:
    """A value as the user typed it (shell-quoted where it needs to be: '' for an empty one)."""
    return shlex.quote(str(value))


def _command(err: click.UsageError) -> str:
    """``icpd bench compare``: the command the error is about (the parser's errors carry no context:
    then the sub-commands named on the command line, see :meth:`IcpdGroup.main`)."""
    if err.ctx is not None:
        return err.ctx.command_path
    return getattr(err, "icpd_command", None) or "icpd"


def _see_help(err: click.UsageError) -> str:
    return f"`{_command(err)} --help` lists them"


def _is_argument(param: Any) -> bool:
    return getattr(param, "param_type_name", "") == "argument"


def _param_name(param: Any) -> str:
    """``--model`` for an option (its first long name), ``BASELINE`` for an argument."""
    if _is_argument(param):
        return str(param.name).upper()
    opts = list(getattr(param, "opts", None) or [])
    longs = [o for o in opts if o.startswith("--")]
    return (longs or opts or [str(param.name)])[0]


def _metavar(param: Any, ctx: Any) -> str:
    """``PATH``, ``N``, ``<torch|ort|trt>``, ``R,G,B``: what the option takes, for a fix."""
    if getattr(param, "metavar", None):
        return str(param.metavar)
    try:
        kind = str(param.display_type(ctx)).strip("<>")
    except Exception:  # noqa: BLE001 - only decorates a message; never let it hide the error itself
        return "VALUE"
    if kind.startswith("list[") and kind.endswith("]"):
        kind = kind[5:-1]
    kind = kind.lower()
    if "|" in kind:
        return f"<{kind}>"
    if kind.startswith(("int", "float")):
        return "N"
    return "PATH" if kind == "path" else "VALUE"


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _range(param: Any) -> str | None:
    """``from 0 to 1``, ``>= 1`` or ``<= 8`` for a ranged option; None when it has no bounds."""
    lo, hi = getattr(param, "min", None), getattr(param, "max", None)
    if lo is not None and hi is not None:
        return f"from {_number(lo)} to {_number(hi)}"
    if lo is not None:
        return f">= {_number(lo)}"
    if hi is not None:
        return f"<= {_number(hi)}"
    return None


_BOUND_TYPES = {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}
_BOUND_WORDS = {"ge": ">=", "le": "<=", "gt": ">", "lt": "<"}


def _validation_what_fix(err: click.BadParameter, detail: dict[str, Any]) -> tuple[str, str]:
    """(what, fix) for a value Typer's type validation (pydantic) refused."""
    kind, param = detail.get("type", ""), err.param
    ctx = detail.get("ctx") or {}
    if kind in _BOUND_TYPES:
        bounds = _range(param) or " ".join(f"{_BOUND_WORDS[k]} {_number(v)}" for k, v in ctx.items()
                                           if k in _BOUND_WORDS)
        return f"must be {bounds}", f"pass a value {bounds}"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return "not a whole number", "pass an integer" + (f" {_range(param)}" if _range(param) else "")
    if kind in ("float_parsing", "float_type"):
        return "not a number", "pass a number" + (f" {_range(param)}" if _range(param) else "")
    if kind in ("bool_parsing", "bool_type"):
        return "not a yes/no value", "pass true or false"
    choices = getattr(getattr(param, "type_descriptor", None), "choices", None)
    if choices:
        names = ", ".join(str(getattr(c, "value", c)) for c in choices)
        return "not one of the choices", f"choose one of {names}"
    message = str(detail.get("msg", err.message))
    return message[:1].lower() + message[1:].rstrip("."), f"{_see_help(err)}"


def _raw_value(args: Sequence[str], names: Sequence[str]) -> str | None:
    """The text given for an option (``--tile 0`` or ``--tile=0``) in the command line ``args``."""
    found = None
    for i, word in enumerate(args):
        for name in names:
            if word == name and i + 1 < len(args):
                found = args[i + 1]
            elif word.startswith(name + "="):
                found = word[len(name) + 1:]
    return found


def usage_error_line(err: click.ClickException, args: Sequence[str] = ()) -> str:
    """The one line (without ``error: ``) that says what was wrong, with the value and the fix.

    ``args``: the command line (without the program name), to quote what was typed where click's
    exception does not carry it.
    """
    if isinstance(err, click.MissingParameter) and err.param is not None:
        name = _param_name(err.param)
        kind = "argument" if _is_argument(err.param) else "option"
        give = name if kind == "argument" else f"{name} {_metavar(err.param, err.ctx)}"
        return f"{name}: required {kind} missing (got nothing); give {give} ({_see_help(err)})"
    if isinstance(err, click.BadParameter):
        name = err.param_hint if isinstance(err.param_hint, str) else (
            _param_name(err.param) if err.param is not None else None)
        cause = err.__cause__
        details = cause.errors() if hasattr(cause, "errors") else []
        if details:  # refused by Typer's type/range validation: it carries the raw input
            what, fix = _validation_what_fix(err, details[0])
            return f"{name}: {what} (got {_shown(details[0].get('input'))}); {fix}"
        # refused by one of our parsers/callbacks: their messages name the value and the fix already
        return f"{name}: {err.message}" if name else err.message
    if isinstance(err, click.NoSuchOption):
        guess = sorted(err.possibilities or ())
        hint = f"did you mean {' or '.join(guess)}? ({_see_help(err)})" if guess else _see_help(err)
        return f"{err.option_name}: no such option of {_command(err)}; {hint}"
    if isinstance(err, click.BadOptionUsage):
        opt = err.option_name
        if "does not take a value" in err.message:
            return f"{opt}: a flag, takes no value (got {_shown(_raw_value(args, [opt]) or '')}); write {opt} alone"
        param = next((p for p in getattr(getattr(err, "icpd_click_command", None), "params", ())
                      if opt in (getattr(p, "opts", None) or [])), None)
        takes = _metavar(param, err.ctx) if param is not None else "VALUE"
        return f"{opt}: needs a value (got nothing); write {opt} {takes} ({_see_help(err)})"
    if isinstance(err, click.UsageError):
        message = err.message.rstrip(".")
        if message.startswith("No such command"):
            word = message.partition("'")[2].rpartition("'")[0] or message
            return f"{word}: no such command of {_command(err)}; `{_command(err)} --help` lists the commands"
        if message.startswith("Missing command"):
            return f"{_command(err)}: needs a command; `{_command(err)} --help` lists them"
        if message.startswith("Got unexpected extra argument"):
            extra = message.rpartition(" (")[2].rstrip(")")
            return (f"unexpected extra argument(s) (got {extra}); remove them, or quote a value that holds spaces "
                    f"({_see_help(err)})")
        return f"{message}; see `{_command(err)} --help`"
    return err.format_message()


class IcpdGroup(TyperGroup):
    """The ``icpd`` root group: every click usage error is one ``error:`` line, exit 2."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,  # type: ignore[override]
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:  # a caller that handles click's exceptions itself
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(args=argv, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                                **extra)
        except click.NoArgsIsHelpError:  # `icpd` or `icpd data` alone: the help was printed
            sys.exit(USAGE_EXIT)
        except click.ClickException as err:
            # the parser's errors carry no context: name the (sub-)command from the command line
            err.icpd_command, err.icpd_click_command = self._command_of(  # type: ignore[attr-defined]
                prog_name or "icpd", argv)
            _exit_with(usage_error_line(err, argv), USAGE_EXIT)
        except Abort:  # end of input at a prompt
            _exit_with("aborted", 1)
        # non-standalone click returns an Exit's code, or the command's return value (None: success)
        sys.exit(code if isinstance(code, int) else 0)

    def _command_of(self, prog_name: str, argv: Sequence[str]) -> tuple[str, Any]:
        """(``icpd bench compare``, its click command) for ``argv`` = ``bench compare --bogus``."""
        path, command = [prog_name], self
        for word in argv:
            if word.startswith("-"):
                continue
            sub = getattr(command, "commands", {}).get(word)
            if sub is None:
                break
            path.append(word)
            command = sub
        return " ".join(path), command


def _exit_with(line: str, code: int) -> NoReturn:
    print_error(line)
    sys.exit(code)
