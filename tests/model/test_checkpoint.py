"""Checkpoint loading: authors' layout, our safetensors format, and every refusal."""

from __future__ import annotations

import json

import pytest
import torch

from icpd.model.checkpoint import (
    CheckpointError,
    convert_checkpoint,
    load_checkpoint,
    model_fingerprint,
    save_checkpoint,
    seeded_model,
)


@pytest.fixture()
def authors_pt(tiny_model, tmp_path):
    state = dict(tiny_model.state_dict())
    state["backbone.fc.weight"] = torch.randn(1000, 256)  # the released files keep the classifier
    state["backbone.fc.bias"] = torch.randn(1000)
    path = tmp_path / "1_shot_0_fold_tiny.pt"
    torch.save(state, path)
    return path


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_authors_layout_loads_strictly_and_drops_fc(tiny_model, authors_pt):
    model = load_checkpoint(authors_pt, preset="tiny", shot=1)
    assert _same_weights(model, tiny_model)
    assert not any(k.startswith("backbone.fc") for k in model.state_dict())
    assert not model.training


def test_wrapped_and_ddp_state_dicts_load(tiny_model, tmp_path):
    path = tmp_path / "ddp.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in tiny_model.state_dict().items()}}, path)
    assert _same_weights(load_checkpoint(path, preset="tiny"), tiny_model)


def test_safetensors_round_trip_keeps_preset_and_fingerprint(tiny_model, authors_pt, tmp_path):
    out = tmp_path / "tiny.safetensors"
    meta = convert_checkpoint(authors_pt, out, preset="tiny", shot=1)
    assert meta["fingerprint"] == model_fingerprint(tiny_model)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["preset"]["name"] == "tiny" and sidecar["shot"] == "1"
    model = load_checkpoint(out)  # preset comes from the file
    assert model.preset.name == "tiny" and _same_weights(model, tiny_model)
    assert not list(tmp_path.glob("*.tmp"))


def test_fingerprint_depends_on_weights_and_preset(tiny_model):
    other = seeded_model("tiny", seed=1)
    assert model_fingerprint(other) != model_fingerprint(tiny_model)
    assert model_fingerprint(seeded_model("tiny", seed=0)) == model_fingerprint(tiny_model)


def test_missing_and_unexpected_keys_are_listed(tiny_model, tmp_path):
    state = dict(tiny_model.state_dict())
    del state["priorlearner.downsample.8.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, preset="tiny")
    msg = str(err.value)
    assert "priorlearner.downsample.8.weight" in msg and "extra.weight" in msg and str(path) in msg


def test_wrong_preset_names_the_likely_cause(tiny_model, authors_pt):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(authors_pt, preset="paper")
    msg = str(err.value)
    assert "misshapen" in msg and "preset" in msg and "'paper'" in msg


def test_vgg_checkpoint_into_resnet_preset_says_so(tmp_path):
    from icpd.commands.console import cli_text

    path = tmp_path / "vgg.pt"
    torch.save({"backbone.features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, preset="tiny")
    # the library names the parameter, the CLI its flag
    assert str(err.value).endswith("Likely cause: the checkpoint has a VGG-16 backbone: use preset=paper-vgg16")
    assert cli_text(err.value).endswith("Likely cause: the checkpoint has a VGG-16 backbone: use --preset paper-vgg16")


def test_clip_checkpoint_given_as_icpd_weights_says_where_it_goes(tmp_path):
    from icpd.commands.console import cli_text

    path = tmp_path / "clip.pt"
    torch.save({"visual.conv1.weight": torch.zeros(8, 3, 14, 14), "token_embedding.weight": torch.zeros(4, 8)}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, preset="tiny")
    assert str(err.value).endswith("this is a CLIP checkpoint, not an ICPD-Net one: pass it as clip_weights")
    assert cli_text(err.value).endswith("this is a CLIP checkpoint, not an ICPD-Net one: pass it as --clip-weights")


def test_altered_safetensors_is_refused(tiny_model, tmp_path):
    from safetensors.torch import load_file, safe_open, save_file

    path = tmp_path / "m.safetensors"
    save_checkpoint(tiny_model, path)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    state = load_file(str(path))
    state["hpn_learner.decoder2.2.bias"] = state["hpn_learner.decoder2.2.bias"] + 1
    save_file(state, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="fingerprint"):
        load_checkpoint(path)


def test_newer_format_is_refused(tiny_model, tmp_path):
    from safetensors.torch import load_file, safe_open, save_file

    path = tmp_path / "m.safetensors"
    save_checkpoint(tiny_model, path)
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    meta["format_version"] = "99"
    save_file(load_file(str(path)), str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="upgrade icpd"):
        load_checkpoint(path)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_objects_are_never_executed(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"x": _Evil()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(path, preset="tiny")
    assert "pwned" not in capsys.readouterr().out


def test_truncated_and_missing_files(tiny_model, tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(tiny_model, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_clip_and_backbone_parts_load_from_local_files(tiny_model, tmp_path):
    import open_clip

    from icpd.config import TINY_CLIP_CONFIG
    from icpd.model.checkpoint import load_backbone_weights, load_clip_weights

    clip = open_clip.CLIP(**TINY_CLIP_CONFIG)
    torch.save(clip.state_dict(), tmp_path / "clip.pt")
    model = seeded_model("tiny", seed=3)
    load_clip_weights(model, tmp_path / "clip.pt")
    assert torch.equal(model.cross_modal_visual_backbone.proj, clip.visual.proj)
    bb = {k: v for k, v in tiny_model.backbone.state_dict().items()}
    bb["fc.weight"] = torch.zeros(1000, 256)
    torch.save(bb, tmp_path / "resnet.pth")
    load_backbone_weights(model, tmp_path / "resnet.pth")
    assert torch.equal(model.backbone.conv1.weight, tiny_model.backbone.conv1.weight)
    with pytest.raises(CheckpointError, match="visual"):
        load_clip_weights(model, tmp_path / "resnet.pth")
