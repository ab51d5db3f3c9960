"""ICPDNet behaviour on the tiny preset (same topology, small widths)."""

from __future__ import annotations

import pytest
import torch

from icpd.model.checkpoint import seeded_model
from tests.conftest import tiny_inputs


def test_forward_is_encode_plus_match(tiny_model):
    q, s, m, e = tiny_inputs(batch=2, shots=2)
    with torch.no_grad():
        full = tiny_model(q, s, m, e, return_intermediates=True)
        qf = tiny_model.encode(q)
        sf = tiny_model.encode(s.flatten(0, 1))
        split = tiny_model.match(qf, sf, m, e, return_intermediates=True)
    assert torch.equal(full["logits"], split["logits"])
    for a, b in zip(full["pyramid"], split["pyramid"]):
        assert torch.equal(a, b)


def test_output_shapes(tiny_model):
    q, s, m, e = tiny_inputs(batch=2, shots=3)
    with torch.no_grad():
        out = tiny_model(q, s, m, e, return_intermediates=True)
        logits = tiny_model(q, s, m, e)
    assert logits.shape == (2, 2, 128, 128)
    assert torch.equal(logits, out["logits"])
    assert out["query_prior"].shape == (2, 8, 8)
    assert out["support_priors"].shape == (2, 3, 8, 8)
    assert [tuple(p.shape) for p in out["pyramid"]] == [(2, 6, 4, 4), (2, 15, 8, 8), (2, 8, 16, 16)]
    assert out["prior_loss"].ndim == 0


def test_shots_are_averaged(tiny_model):
    q, s, m, e = tiny_inputs(batch=1, shots=3, seed=5)
    with torch.no_grad():
        both = tiny_model(q, s, m, e, return_intermediates=True)["pyramid"]
        single = [tiny_model(q, s[:, i : i + 1], m[:, i : i + 1], e, return_intermediates=True)["pyramid"]
                  for i in range(3)]
    for level in range(3):
        mean = torch.stack([p[level] for p in single]).mean(0)
        torch.testing.assert_close(both[level], mean, atol=1e-6, rtol=0)


def test_batch_items_are_independent(tiny_model):
    q, s, m, e = tiny_inputs(batch=3, shots=2, seed=7)
    with torch.no_grad():
        batched = tiny_model(q, s, m, e)
        one = torch.cat([tiny_model(q[i : i + 1], s[i : i + 1], m[i : i + 1], e[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, one, atol=1e-5, rtol=1e-5)


def test_empty_support_mask_gives_zero_priors(tiny_model):
    q, s, m, e = tiny_inputs(batch=2, shots=1)
    m[0] = 0
    with torch.no_grad():
        out = tiny_model(q, s, m, e, return_intermediates=True)
    l4, l3, l2 = out["pyramid"]
    assert l4[0].abs().max() == 0 and l2[0].abs().max() == 0
    assert l3[0, :-1].abs().max() == 0  # every [cos, rank] channel, CLIP level included
    assert l3[0, -1].abs().max() > 0  # the query prior does not depend on the support
    assert l2[1].abs().max() > 0  # the other item is untouched


def test_train_keeps_encoders_frozen_and_learns_the_rest():
    model = seeded_model("tiny", seed=1).train()
    assert not model.backbone.training and not model.cross_modal_visual_backbone.training
    assert model.hpn_learner.training and model.priorlearner.training
    q, s, m, e = tiny_inputs(batch=2, shots=1)
    out = model(q, s, m, e, return_intermediates=True)
    loss = out["logits"].mean() + out["prior_loss"]
    loss.backward()
    assert model.hpn_learner.decoder2[2].weight.grad is not None
    assert model.priorlearner.downsample[8].weight.grad is not None
    assert all(p.grad is None for p in model.backbone.parameters())


def test_fusion_weight_changes_support_features(tiny_model):
    import dataclasses

    from icpd.config import get_preset
    from icpd.model.icpd_net import ICPDNet

    fused = ICPDNet(dataclasses.replace(get_preset("tiny"), name="tiny-fused", fusion_weight=0.5, fusion_threshold=0.0))
    fused.load_state_dict(tiny_model.state_dict())
    q, s, m, e = tiny_inputs(batch=1, shots=1, seed=3)
    with torch.no_grad():
        a = tiny_model(q, s, m, e, return_intermediates=True)["pyramid"]
        b = fused(q, s, m, e, return_intermediates=True)["pyramid"]
    assert not torch.equal(a[2], b[2])
    torch.testing.assert_close(a[1][:, -1], b[1][:, -1])  # query prior unaffected by fusion


# -- bad input --------------------------------------------------------------------------------
def _bad(q=None, s=None, m=None, e=None):
    q0, s0, m0, e0 = tiny_inputs(batch=1, shots=2)
    return (q0 if q is None else q, s0 if s is None else s, m0 if m is None else m, e0 if e is None else e)


@pytest.mark.parametrize(
    "args, words",
    [
        (_bad(q=torch.randn(3, 128, 128)), ["query", "(3, 128, 128)", "4 dims"]),
        (_bad(q=torch.randint(0, 255, (1, 3, 128, 128), dtype=torch.uint8)), ["query", "uint8", "floating-point"]),
        (_bad(q=torch.randn(1, 3, 96, 96)), ["query", "(96, 96)", "128x128"]),
        (_bad(q=torch.randn(1, 4, 128, 128)), ["query", "4 channels"]),
        (_bad(q=torch.full((1, 3, 128, 128), float("nan"))), ["query", "NaN"]),
        (_bad(s=torch.randn(1, 3, 128, 128)), ["support_images", "5 dims"]),
        (_bad(s=torch.randn(2, 2, 3, 128, 128)), ["support_images", "batch 2"]),
        (_bad(m=torch.full((1, 2, 128, 128), 0.5)), ["support_masks", "0.5", "{0, 1}"]),
        (_bad(m=torch.zeros(1, 3, 128, 128)), ["support_masks", "(1, 3, 128, 128)"]),
        (_bad(m=torch.zeros(1, 2, 64, 64)), ["support_masks", "(1, 2, 64, 64)"]),
        (_bad(e=torch.randn(1, 14, 32)), ["class_embeddings", "(1, 14, 32)", "15 class embeddings"]),
        (_bad(e=torch.randn(1, 15, 768)), ["class_embeddings", "768", "32"]),
        (_bad(e=torch.full((1, 15, 32), float("inf"))), ["class_embeddings", "NaN/inf"]),
    ],
)
def test_bad_input_is_named(tiny_model, args, words):
    with pytest.raises(ValueError) as err:
        tiny_model(*args)
    for w in words:
        assert w in str(err.value), (w, str(err.value))


@pytest.mark.slow
def test_vgg16_variant_layout_and_forward():
    from icpd.model.checkpoint import build_model

    model = build_model("paper-vgg16")
    keys = model.state_dict().keys()
    assert "backbone.features.28.weight" in keys and "hpn_learner.encoder_layer3.0.weight" in keys
    assert model.hpn_learner.encoder_layer3[0].in_channels == 2 * 3 + 3
    assert model.hpn_learner.encoder_layer4[0].in_channels == 2
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 3, 256, 256, generator=g)
    s = torch.randn(1, 1, 3, 256, 256, generator=g)
    m = torch.zeros(1, 1, 256, 256)
    m[..., 60:120, 80:160] = 1
    with torch.no_grad():
        out = model(q, s, m, torch.randn(1, 15, 768, generator=g), return_intermediates=True)
    assert [tuple(p.shape) for p in out["pyramid"]] == [(1, 2, 8, 8), (1, 9, 16, 16), (1, 6, 32, 32)]
