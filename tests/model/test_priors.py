"""Batched priors against a plain per-item implementation of the written rule."""

from __future__ import annotations

import math

import pytest
import torch

from icpd.model.priors import EPS, pair_priors, text_similarity
from icpd.model.rank_prior import ndcg_prior


def ndcg_per_item(dist: torch.Tensor, relevant: torch.Tensor) -> torch.Tensor:
    """The rule, one item and one query pixel at a time: stable ascending sort, DCG@k / IDCG@k."""
    n, nq, _ = dist.shape
    out = torch.zeros(n, nq)
    for i in range(n):
        k = int(relevant[i].sum())
        if k == 0:
            continue
        idcg = sum(1.0 / math.log2(p + 1) for p in range(1, k + 1))
        for j in range(nq):
            order = sorted(range(dist.shape[-1]), key=lambda s: (float(dist[i, j, s]), s))
            dcg = sum(float(relevant[i, s]) / math.log2(p + 2) for p, s in enumerate(order[:k]))
            out[i, j] = dcg / idcg
    return out


def test_ndcg_matches_rule_on_random_distances():
    g = torch.Generator().manual_seed(1)
    dist = torch.randn(3, 7, 40, generator=g)
    rel = torch.rand(3, 40, generator=g) > 0.6
    torch.testing.assert_close(ndcg_prior(dist, rel), ndcg_per_item(dist, rel), atol=1e-6, rtol=0)


def test_ndcg_ties_follow_support_index():
    # all distances equal: the stable order is the support index order
    dist = torch.zeros(1, 2, 6)
    rel = torch.tensor([[False, False, True, True, False, False]])
    # k = 2: positions 1, 2 hold supports 0, 1, both irrelevant
    assert ndcg_prior(dist, rel).tolist() == [[0.0, 0.0]]
    rel = torch.tensor([[True, False, False, False, False, True]])
    expect = (1.0) / (1.0 + 1 / math.log2(3))
    torch.testing.assert_close(ndcg_prior(dist, rel), torch.full((1, 2), expect))


def test_ndcg_with_many_exact_ties_matches_rule():
    g = torch.Generator().manual_seed(2)
    dist = torch.randint(0, 4, (2, 9, 30), generator=g).float()  # heavy ties
    rel = torch.rand(2, 30, generator=g) > 0.5
    torch.testing.assert_close(ndcg_prior(dist, rel), ndcg_per_item(dist, rel), atol=1e-6, rtol=0)


def test_ndcg_empty_and_full_relevance():
    dist = torch.randn(2, 5, 16)
    rel = torch.zeros(2, 16, dtype=torch.bool)
    rel[1] = True
    out = ndcg_prior(dist, rel)
    assert out[0].eq(0).all()  # k = 0 -> 0, as in the reference
    torch.testing.assert_close(out[1], torch.ones(5))  # every position relevant -> NDCG 1


def test_pair_priors_match_definitions():
    g = torch.Generator().manual_seed(3)
    b, k, c, nq, ns = 2, 3, 8, 10, 12
    q = torch.randn(b, c, nq, generator=g)
    s = torch.randn(b, k, c, ns, generator=g)
    m = torch.rand(b, k, ns, generator=g) * (torch.rand(b, k, ns, generator=g) > 0.4)
    cos, rank = pair_priors(q, s, m)
    for i in range(b):
        for j in range(k):
            sm = s[i, j] * m[i, j]
            sn = sm / (sm.norm(dim=0, keepdim=True) + EPS)
            qn = q[i] / (q[i].norm(dim=0, keepdim=True) + EPS)
            expect = (qn.t() @ sn).clamp(min=0).sum(-1) / (m[i, j].sum() + EPS)
            torch.testing.assert_close(cos[i, j], expect, atol=1e-5, rtol=1e-5)
            d = torch.cdist(q[i].t(), s[i, j].t()).pow(2).unsqueeze(0)
            torch.testing.assert_close(rank[i, j], ndcg_per_item(d, (m[i, j] > 0).unsqueeze(0))[0], atol=1e-5, rtol=0)


def test_text_similarity_normalises_like_released_code():
    g = torch.Generator().manual_seed(4)
    t = torch.randn(2, 4, 4, 6, generator=g)
    e = torch.randn(2, 5, 6, generator=g)
    tn = torch.nn.functional.normalize(t, dim=1)
    en = torch.nn.functional.normalize(e, dim=1)
    expect = torch.nn.functional.cosine_similarity(tn.unsqueeze(-2), en[:, None, None], dim=-1).permute(0, 3, 1, 2)
    torch.testing.assert_close(text_similarity(t, e), expect, atol=1e-6, rtol=0)


@pytest.mark.parametrize("shape", [(1, 4, 64), (2, 3, 5)])
def test_ndcg_in_unit_interval(shape):
    dist = torch.randn(*shape)
    rel = torch.rand(shape[0], shape[-1]) > 0.5
    out = ndcg_prior(dist, rel)
    assert out.shape == shape[:2] and bool(((out >= 0) & (out <= 1 + 1e-6)).all())
