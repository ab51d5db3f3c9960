"""--bands: the option's parser, and the refusal that tells a command-line user what to type."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from icpd.commands.common import BandsOpt
from icpd.io import ImageError, parse_bands, read_image


@pytest.mark.parametrize(("text", "bands"),
                         [("4,3,2", (4, 3, 2)), (" 1, 2 ,3 ", (1, 2, 3)), ("3 2 1", (3, 2, 1))])
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


# -- one parser, one message, through every entry (issue 22 section 3) -------------------------------
def _rule(shown: str) -> str:
    from icpd.io.raster import BANDS_RULE

    return f"bands={shown}: {BANDS_RULE}"


@pytest.mark.parametrize(("value", "shown"), [
    ("4,3", "'4,3'"), ((0, 1, 2), "(0, 1, 2)"), ([1, 2], "(1, 2)"), (np.array([1, 2, 3, 4]), "(1, 2, 3, 4)"),
    ((1.5, 2, 3), "(1.5, 2, 3)"), ((True, 2, 3), "(True, 2, 3)"), (7, "(7)")])
def test_one_message_for_every_form_of_a_bad_choice(value, shown):
    from icpd.io.raster import BandsError

    with pytest.raises(BandsError) as err:
        parse_bands(value)
    assert str(err.value) == _rule(shown) and err.value.param == "bands"


def test_sequences_as_ray_hands_them_over_are_read():
    assert parse_bands([4, 3, 2]) == parse_bands(np.array([4, 3, 2])) == parse_bands((4, 3, 2)) == (4, 3, 2)
    assert all(type(b) is int for b in parse_bands(np.array([4, 3, 2])))
    assert parse_bands(None) is None


def test_infer_command_gives_the_message(tmp_path):
    from icpd.cli import app
    from icpd.io.raster import BANDS_RULE

    res = CliRunner().invoke(app, ["infer", str(tmp_path / "x.png"), "-m", "m", "-s", "s.support",
                                   "-o", str(tmp_path / "o"), "--bands", "4,3"])
    assert res.exit_code == 2
    assert f"error: --bands: '4,3': {BANDS_RULE}" in res.output
    assert not (tmp_path / "o").exists()


def test_python_api_gives_the_message_before_reading_the_file(tmp_path):
    """InferOptions, read_image and WindowReader refuse the choice itself before opening anything
    (the file here does not even exist)."""
    from icpd.apps.infer.options import InferOptions
    from icpd.io.raster import BandsError
    from icpd.io.windows import WindowReader

    with pytest.raises(BandsError) as err:
        InferOptions(bands=(4, 3))
    assert str(err.value) == _rule("(4, 3)")
    assert InferOptions(bands="4, 3, 2").bands == (4, 3, 2)
    for read in (read_image, WindowReader):
        with pytest.raises(BandsError) as err:
            read(tmp_path / "missing.tif", bands=(0, 1, 2))
        assert str(err.value) == _rule("(0, 1, 2)")


def test_ray_worker_path_gives_the_message_and_reads_a_list(tmp_path):
    """The Ray runner's workers open each scene from a row, where the tuple arrives as a list or an array."""
    from icpd.apps.infer.ray_runner import _open
    from icpd.io.raster import BandsError

    path = tmp_path / "rgbn.png"
    # BGRA on disk
    cv2.imwrite(str(path), np.dstack([np.full((8, 8), v, np.uint8) for v in (10, 20, 30, 40)]))
    with pytest.raises(BandsError) as err:
        _open(str(path), [0, 1, 2])
    assert str(err.value) == _rule("(0, 1, 2)")
    source = _open(str(path), np.array([3, 2, 1]))
    assert source.read(0, 0, 1, 1)[0, 0].tolist() == [10, 20, 30]  # file bands 3, 2, 1: R, G, B of a BGR file
