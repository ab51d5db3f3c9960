"""Nothing downloads without an explicit --download."""

from __future__ import annotations

import pytest
import torch

from icpd.model.pretrained import resolve_weights


@pytest.fixture()
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_local_file_is_used_as_is(tmp_path, no_network):
    f = tmp_path / "w.pth"
    f.write_bytes(b"x")
    assert resolve_weights(f) == f


def test_known_source_without_download_says_how(tmp_path, no_network):
    with pytest.raises(FileNotFoundError, match="pass download=True to fetch them"):
        resolve_weights("resnet50", cache_dir=tmp_path)


def test_cached_copy_is_found(tmp_path, no_network):
    (tmp_path / "RemoteCLIP-ViT-L-14.pt").write_bytes(b"x")
    assert resolve_weights("remoteclip-vitl14", cache_dir=tmp_path).name == "RemoteCLIP-ViT-L-14.pt"


def test_unknown_name_is_refused(tmp_path, no_network):
    with pytest.raises(FileNotFoundError, match="not a known source"):
        resolve_weights("resnet9000", cache_dir=tmp_path)


def test_download_only_when_asked(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda url, dst, progress: (calls.append(url), open(dst, "wb").close()))
    path = resolve_weights("vgg16", download=True, cache_dir=tmp_path)
    assert calls == ["https://download.pytorch.org/models/vgg16-397923af.pth"] and path.is_file()


def test_fetch_weights_cli_refuses_without_download(tmp_path, no_network):
    from typer.testing import CliRunner

    from icpd.cli import app

    res = CliRunner().invoke(app, ["fetch-weights", "resnet50", "--cache-dir", str(tmp_path)])
    assert res.exit_code == 2 and "--download" in res.output
