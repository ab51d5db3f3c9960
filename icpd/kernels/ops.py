"""``icpd::ndcg_prior`` (and ``icpd::ndcg_prior_dist``): the rank (NDCG) prior as torch.library custom ops.

query (N, Nq, C), support (N, Ns, C), relevance (N, Ns) (relevant where > 0) -> (N, Nq) float32.
The CPU implementation is the vectorised PyTorch reference (``icpd.model.priors.ndcg_prior``);
the fake implementation lets torch.export trace it as a black box, so the exporter chooses its
ONNX form (standard ops or one ``NdcgPrior`` node for the TensorRT plugin).
"""

from __future__ import annotations

import torch

from icpd.model.priors import ndcg_prior


def distances(query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """(N, Nq, C), (N, Ns, C) -> (N, Nq, Ns): |s_j|^2 - 2 <q_i, s_j> in float32 (the canonical order key)."""
    q = query.float()
    s = support.float()
    return torch.add((s * s).sum(-1).unsqueeze(1), torch.bmm(q, s.transpose(1, 2)), alpha=-2.0)


@torch.library.custom_op("icpd::ndcg_prior", mutates_args=())
def ndcg_prior_op(query: torch.Tensor, support: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    return ndcg_prior(distances(query, support), relevance > 0)


@ndcg_prior_op.register_fake
def _(query: torch.Tensor, support: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    torch._check(query.dim() == 3 and support.dim() == 3 and relevance.dim() == 2)
    return query.new_empty((query.shape[0], query.shape[1]), dtype=torch.float32)


@torch.library.custom_op("icpd::ndcg_prior_dist", mutates_args=())
def ndcg_prior_dist_op(dist: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """dist (N, Nq, Ns) ordering distances, relevance (N, Ns) -> (N, Nq): the rank prior on a
    distance matrix the caller already has (the standard ONNX form shares it with the cosine)."""
    return ndcg_prior(dist, relevance > 0)


@ndcg_prior_dist_op.register_fake
def _(dist: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    torch._check(dist.dim() == 3 and relevance.dim() == 2)
    return dist.new_empty((dist.shape[0], dist.shape[1]), dtype=torch.float32)
