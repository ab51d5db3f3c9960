"""ICPDNet.match_prepared returns one dataclass whatever is asked of it (issue 10, section 4)."""

from __future__ import annotations

import torch

from icpd.model.icpd_net import MatchOutput
from tests.conftest import tiny_inputs


def test_match_prepared_returns_a_match_output(tiny_model):
    q, s, m, e = tiny_inputs(batch=2, shots=2, seed=4)
    p = tiny_model.preset
    with torch.no_grad():
        qf = tiny_model.encode(q)
        prepared = tiny_model.prepare_support(tiny_model.encode(s.flatten(0, 1)), m)
        out = tiny_model.match_prepared(qf, prepared, e)
        trained = tiny_model.match_prepared(qf, prepared, e, support_masks=m, support_priors=True)
        full = tiny_model(q, s, m, e, return_intermediates=True)
        logits = tiny_model(q, s, m, e)
    assert isinstance(out, MatchOutput)
    g = p.clip_grid
    assert out.logits.shape == (2, 2, p.image_size, p.image_size) and out.query_prior.shape == (2, g, g)
    assert len(out.pyramid) == 3 and out.support_priors is None and out.prior_loss is None  # inference: query side only
    assert trained.support_priors.shape == (2, 2, g, g) and trained.prior_loss.ndim == 0
    torch.testing.assert_close(trained.logits, out.logits, rtol=0, atol=0)
    # forward/match keep their return types: logits, or the intermediates as a dict
    torch.testing.assert_close(logits, out.logits, rtol=0, atol=0)
    assert set(full) == {"logits", "query_prior", "pyramid", "support_priors", "prior_loss"}
    for key, value in trained.as_dict().items():
        torch.testing.assert_close(full[key], value, rtol=0, atol=0)
