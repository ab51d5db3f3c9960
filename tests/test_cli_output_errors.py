"""Issue 12, section 2: an unwritable output fails at once, in one line, exit 2 (no traceback
after minutes of work); `icpd export --force` replaces only a model dir or an empty folder."""

from __future__ import annotations

from typer.testing import CliRunner

from icpd.cli import app
from tests.io.readonly import read_only_dir


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_export_and_data_synth_into_a_read_only_folder(tmp_path):
    """Guards issue 12: both gave raw OSError tracebacks."""
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only_dir(ro):
        runs = {
            "export": ["export", "--random-weights", "--preset", "tiny", "--out", str(ro / "m"), "-q"],
            "data synth": ["data", "synth", "--out", str(ro / "d"), "--tiles", "5", "-q"],
        }
        for name, args in runs.items():
            res = CliRunner().invoke(app, args)
            assert res.exit_code == 2, (name, res.output)
            assert "Traceback" not in res.output
            assert _flat(res.output).startswith(f"error: {ro}: "), (name, res.output)
            assert "permission" in res.output.lower()
        assert list(ro.iterdir()) == []


def test_export_force_keeps_a_folder_of_other_files(tmp_path):
    """Guards issue 12: `icpd export --force` deleted the whole --out folder with unrelated files."""
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"x")
    res = CliRunner().invoke(app, ["export", "--random-weights", "--preset", "tiny", "--out", str(tmp_path / "photos"),
                                   "--force", "-q"])
    assert res.exit_code == 2 and "is not an icpd model dir" in _flat(res.output)
    assert [p.name for p in (tmp_path / "photos").iterdir()] == ["holiday.jpg"]
