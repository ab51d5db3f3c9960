"""``icpd.model`` exports its public API (issue 10 section 4: ``from icpd.model import load_checkpoint``)."""

from __future__ import annotations

import torch


def test_public_names_resolve_and_round_trip(tmp_path):
    import icpd.model as m
    from icpd.model import ICPDNet, load_checkpoint, save_checkpoint, seeded_model

    for name in m.__all__:
        assert getattr(m, name) is not None, name
    model = seeded_model("tiny", seed=3)
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(model, path)
    loaded = load_checkpoint(path)
    assert isinstance(loaded, ICPDNet)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
