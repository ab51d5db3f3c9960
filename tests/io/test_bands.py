"""--bands: the option's parser, and the refusal that tells a command-line user what to type."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from icpd.commands.common import BandsOpt
from icpd.io import ImageError, parse_bands, read_image


@pytest.mark.parametrize(("text", "bands"), [("4,3,2", (4, 3, 2)), (" 1, 2 ,3 ", (1, 2, 3)), ("3 2 1", (3, 2, 1))])
def test_parse_bands(text, bands):
    assert parse_bands(text) == bands


@pytest.mark.parametrize("text", ["4,3", "0,1,2", "a,b,c", "1,2,3,4", "-1,2,3"])
def test_parse_bands_refuses(text):
    with pytest.raises(ImageError, match="three 1-based band numbers"):
        parse_bands(text)


def test_bands_option_parses_and_refuses_in_a_command():
    app = typer.Typer()

    @app.command()
    def show(bands: BandsOpt = None) -> None:
        print(repr(bands))

    assert CliRunner().invoke(app, ["--bands", "4,3,2"]).output.strip() == "(4, 3, 2)"
    assert CliRunner().invoke(app, []).output.strip() == "None"
    res = CliRunner().invoke(app, ["--bands", "4,3"])
    flat = " ".join(res.output.replace("│", " ").split())  # rich wraps the message in a box
    assert res.exit_code == 2 and "expected three 1-based band numbers" in flat


def test_four_band_refusal_names_the_option(tmp_path):
    path = tmp_path / "rgbn.tif"
    cv2.imwrite(str(path), np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ImageError, match="--bands R,G,B"):
        read_image(path)
