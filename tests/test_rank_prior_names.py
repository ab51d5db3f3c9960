"""The rank-prior form has one parser (icpd.config.RankPriorForm.parse) and one set of names in the code.

Every accepted spelling (topk, sort, plugin, and onnx: the old name of topk, still in model.json
files and users' scripts) maps to the same RankPriorForm through every entry point: the CLI option,
a model dir's model.json, and the Python API (export, the matcher wrapper, pair_priors). An unknown
name gives one message listing the valid names. The names the code used inside (``distances``,
``features``) are gone: nothing on disk carries them.
"""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from icpd.commands.common import RankPriorOpt
from icpd.config import RANK_PRIOR_OLD_NAMES, RankPriorForm

EXPECTED = {"topk": RankPriorForm.TOPK, "sort": RankPriorForm.SORT, "plugin": RankPriorForm.PLUGIN,
            "onnx": RankPriorForm.TOPK}
VALID = "choose one of topk, sort, plugin (onnx is the old name of topk)"


def test_the_accepted_spellings_are_the_values_and_the_old_name():
    assert RankPriorForm.spellings() == ("topk", "sort", "plugin", "onnx")
    assert RANK_PRIOR_OLD_NAMES == {"onnx": RankPriorForm.TOPK}
    for text, form in EXPECTED.items():
        assert RankPriorForm.parse(text) is form
    for form in RankPriorForm:
        assert RankPriorForm.parse(form) is form


@pytest.mark.parametrize("bad", ["scan", "TOPK", " topk", "distances", "features", "", None, 1])
def test_an_unknown_name_is_one_message_listing_the_valid_names(bad):
    with pytest.raises(ValueError) as err:
        RankPriorForm.parse(bad, "rank_prior")
    assert str(err.value) == f"rank_prior={bad!r}: {VALID}"
    assert err.value.param == "rank_prior"  # the CLI prints it as --rank-prior (icpd.errors)


def test_the_enum_itself_no_longer_translates():
    """RankPriorForm('onnx') was a second translation table (the enum's _missing_): only parse knows
    the old names."""
    with pytest.raises(ValueError):
        RankPriorForm("onnx")


def _cli_app():
    app = typer.Typer()

    @app.command()
    def show(rank_prior: RankPriorOpt = None) -> None:
        typer.echo(f"parsed {rank_prior!r}")

    return app


@pytest.mark.parametrize("text", sorted(EXPECTED))
def test_cli_option_maps_every_spelling_to_the_same_form(text):
    res = CliRunner().invoke(_cli_app(), ["--rank-prior", text])
    assert res.exit_code == 0, res.output
    assert f"parsed {EXPECTED[text]!r}" in res.output
    said_note = f"note: --rank-prior {text} is now called topk; using topk" in res.output
    assert said_note == (text in RANK_PRIOR_OLD_NAMES)


def test_cli_option_refuses_an_unknown_name_with_the_same_list():
    from icpd.cli import app

    res = CliRunner().invoke(app, ["export", "--out", "unused", "--rank-prior", "distances"])
    assert res.exit_code == 2
    assert f"error: --rank-prior: not one of the choices (got distances); {VALID}" in res.output


@pytest.mark.parametrize("text", sorted(EXPECTED))
def test_python_api_maps_every_spelling_to_the_same_form(text, tiny_model):
    from icpd.export.rank_prior_onnx import translation_table
    from icpd.export.wrappers import MatcherGraph
    from icpd.model.priors import rank_path

    assert rank_path(text) is EXPECTED[text]
    assert MatcherGraph(tiny_model, rank=text).rank is EXPECTED[text]
    table = translation_table(text)  # the plugin form writes the NdcgPrior node for icpd::ndcg_prior
    import torch

    plugin = table[torch.ops.icpd.ndcg_prior.default].__name__ == "ndcg_prior_plugin"
    assert plugin == (EXPECTED[text] is RankPriorForm.PLUGIN)


def test_python_api_refuses_the_old_inner_names():
    """``distances`` and ``features`` were names inside the code (MatcherGraph's and TorchBackend's
    defaults), never written to a file: they are refused, naming every valid value."""
    from icpd.model.priors import pair_priors, rank_path

    for old in ("distances", "features"):
        with pytest.raises(ValueError) as err:
            rank_path(old)
        assert str(err.value) == (f"rank={old!r}: choose eager or a rank-prior form: "
                                  f"{VALID.removeprefix('choose one of ')}")
    import torch

    q, s, m = torch.ones(1, 2, 3), torch.ones(1, 1, 2, 3), torch.ones(1, 1, 3)
    with pytest.raises(ValueError, match="rank='distances': choose eager or a rank-prior form"):
        pair_priors(q, s, m, rank="distances")


def test_export_refuses_an_unknown_form_before_writing(tiny_model, tmp_path):
    from icpd.export.onnx import export_model

    with pytest.raises(ValueError) as err:
        export_model(tiny_model, tmp_path / "m", rank_prior="scan", validate=False)
    assert str(err.value) == f"rank_prior='scan': {VALID}"
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("text", sorted(EXPECTED))
def test_model_dir_maps_every_spelling_to_the_same_form(text, tiny_model_dir, tmp_path):
    """model.json's rank_prior as written by any icpd so far: ModelDir.rank_prior is the form (Predictor.load
    and icpd build read it there)."""
    import json
    import shutil

    from icpd.artifacts.model_dir import ModelDir

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    meta = json.loads((d / "model.json").read_text())
    meta["rank_prior"] = text
    (d / "model.json").write_text(json.dumps(meta))
    assert ModelDir.open(d).rank_prior is EXPECTED[text]


@pytest.mark.parametrize("bad", ["distances", "TOPK"])
def test_model_dir_refuses_an_unknown_form_listing_the_valid_names(bad, tiny_model_dir, tmp_path):
    import json
    import shutil

    from icpd.artifacts.model_dir import ModelDir

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    meta = json.loads((d / "model.json").read_text())
    meta["rank_prior"] = bad
    (d / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError) as err:
        ModelDir.open(d)
    assert f'rank_prior = "{bad}" is not one of "topk", "sort", "plugin", "onnx"' in str(err.value)
