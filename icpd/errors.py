"""Errors about a parameter, in the words of whoever passed it.

Library code names its parameters, never the command line's flags: a message is written with
:func:`arg` wherever it names a parameter, and the exception keeps that text. ``str(err)`` is
the Python reading (``tile=0: must be >= 1 pixel``); the command layer renders the same message
with the command's flags (``--tile 0: must be >= 1 pixel``, :func:`icpd.commands.console.cli_text`).

    raise ParamError(f"{arg('tile', tile)}: must be >= 1 pixel")  # err.param == "tile"
    raise EngineBuildError(f"{arg('out', out)}: exists; pass {arg('force', True)}")  # mixes in ParamMessage


The lowest layer of the package (it imports nothing of icpd): every layer may raise these.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["ParamError", "ParamMessage", "arg", "python_words", "render"]

# A parameter inside a message: US (unit separator), its name, optionally RS (record separator) and
# the value as text, US. Control characters no path, class name or number text carries.
_US, _RS = "\x1f", "\x1e"
_REF = re.compile(f"{_US}([A-Za-z_][A-Za-z0-9_]*)(?:{_RS}([^{_US}]*))?{_US}")

Words = Callable[[str, "str | None"], str]  # (parameter name, its value text or None) -> the words shown


def arg(name: str, value: object = None) -> str:
    """The parameter ``name`` (with the ``value`` it was given, as text) inside an error message.

    ``arg("tile", 0)`` reads ``tile=0`` from Python and ``--tile 0`` on the command line;
    ``arg("force", True)`` reads ``force=True`` and ``--force``; ``arg("engines")`` reads
    ``engines`` and ``--engines``. The value is shown as written (``arg("device", repr(d))`` quotes it).
    """
    if not name.isidentifier():
        raise ValueError(f"arg: {name!r} is not a Python parameter name")
    return f"{_US}{name}{_US}" if value is None else f"{_US}{name}{_RS}{value}{_US}"


def python_words(name: str, value: str | None) -> str:
    """A parameter as a Python caller writes it: ``tile=0``, or ``tile`` without a value."""
    return name if value is None else f"{name}={value}"


def render(message: str, words: Words = python_words) -> str:
    """``message`` with every :func:`arg` in it written by ``words`` (default: the Python reading)."""
    return _REF.sub(lambda m: words(m.group(1), m.group(2)), message)


def named_params(message: str) -> list[str]:
    """The parameter names a message's :func:`arg` s name, in order."""
    return [m.group(1) for m in _REF.finditer(message)]


class ParamMessage(Exception):
    """Mixed into an exception type whose messages name parameters through :func:`arg`.

    ``param``: the parameter the error is about (default: the first one the message names; None when
    it names none). ``template``: the message with its parameters still marked, for
    :func:`render` with other words. ``str(err)`` and ``err.args`` hold the Python reading, so the
    error prints, compares and pickles (Ray sends errors between processes) like any other.
    """

    template: str
    param: str | None

    def __init__(self, message: str = "", *args: object, param: str | None = None) -> None:
        self.template = message
        names = named_params(message)
        self.param = param if param is not None else (names[0] if names else None)
        super().__init__(render(message), *args)

    def render(self, words: Words = python_words) -> str:
        """The message with its parameters written by ``words`` (``--tile 0`` for the CLI)."""
        return render(self.template, words)


class ParamError(ParamMessage, ValueError):
    """A value refused for a parameter of a library function (a ``ValueError``)."""
