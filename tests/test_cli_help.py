"""Issue 20 §4: help texts print what they say. Rich read `[ray]` in "Needs icpd[ray]" as a markup
tag and printed "Needs icpd."; every `[` in a help text must be escaped."""

from __future__ import annotations

from collections.abc import Iterator

import typer.main
from rich.text import Text
from typer.testing import CliRunner

from icpd.cli import app


def _help_texts(command, path: str) -> Iterator[tuple[str, str]]:
    """(where, text) for a command's help and every parameter's, sub-commands included."""
    yield path, command.help or ""
    for param in command.params:
        yield f"{path} {param.name}", getattr(param, "help", None) or ""
    for name, sub in getattr(command, "commands", {}).items():
        yield from _help_texts(sub, f"{path} {name}")


def test_no_help_text_loses_bracketed_words_to_rich_markup():
    for where, text in _help_texts(typer.main.get_command(app), "icpd"):
        assert Text.from_markup(text).plain == text.replace("\\[", "["), where


def test_infer_help_shows_the_ray_extra():
    res = CliRunner().invoke(app, ["infer", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "pip install 'icpd[ray]'" in " ".join(res.stdout.replace("│", " ").split())
