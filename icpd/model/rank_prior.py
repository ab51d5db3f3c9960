"""The rank (NDCG) prior as one op: its schema, its fake (meta) implementation and its reference.

``icpd::ndcg_prior``: query (N, Nq, C), support (N, Ns, C), relevance (N, Ns) (relevant where
> 0) -> (N, Nq) float32. ``icpd::ndcg_prior_dist``: the same on a distance matrix (N, Nq, Ns)
the caller already has (the standard ONNX forms share it with the cosine prior).

The CPU kernel is the vectorised PyTorch reference :func:`ndcg_prior` below; faster kernels
(CUDA, the TensorRT plugin, the ONNX Runtime custom node) live in :mod:`icpd.kernels` and are
checked against it. The fake implementation lets torch.export trace the op as a black box, so
the exporter chooses its ONNX form (``topk``, ``sort`` or one ``NdcgPrior`` plugin node).

Tie rule (all backends): equal distances are ordered by ascending support index (a stable sort).
Registering the ops at import is this module's one side effect (as torchao's ``ops.py``): they
are defined once per process, before anything can call them.
"""

from __future__ import annotations

import torch


def dcg_weights(n: int, device: torch.device | None = None) -> torch.Tensor:
    """(n,) discount 1 / log2(p + 1) for positions p = 1..n (float32)."""
    p = torch.arange(2, n + 2, device=device, dtype=torch.float32)
    return 1.0 / torch.log2(p)


def _stable_smallest(d: torch.Tensor, kmax: int) -> torch.Tensor:
    """Indices (..., kmax) of the kmax smallest entries of ``d`` along the last axis, in
    ascending order, ties by ascending index.

    ``topk`` is much cheaper than a full sort when kmax << N but leaves the order among equal
    values unspecified. Taking one extra element exposes every tie that could matter (inside
    the selection or straddling its end); exact ties are rare for real features, and only then
    is a stable full sort paid for.
    """
    n = d.shape[-1]
    if kmax >= n:
        return torch.sort(d, dim=-1, stable=True).indices
    vals, idx = torch.topk(d, kmax + 1, dim=-1, largest=False, sorted=True)
    idx = idx[..., :kmax]
    tied = (vals[..., 1:] == vals[..., :-1]).any(-1).flatten()  # rows whose order needs the tie rule
    if bool(tied.any()):
        rows = tied.nonzero().squeeze(1)
        idx = idx.reshape(-1, kmax).clone()
        idx[rows] = torch.sort(d.reshape(-1, n)[rows], dim=-1, stable=True).indices[:, :kmax]
        idx = idx.view(*d.shape[:-1], kmax)
    return idx


def ndcg_prior(dist: torch.Tensor, relevant: torch.Tensor) -> torch.Tensor:
    """Rank prior from distances.

    dist: (N, Nq, Ns) ordering distances; relevant: (N, Ns) bool.
    Returns (N, Nq) float32: NDCG@k of the relevance in ascending-distance order, k = number of
    relevant support pixels of the item; 0 where k = 0.
    """
    k = relevant.sum(-1)  # (N,)
    kmax = int(k.max()) if k.numel() else 0
    n, nq = dist.shape[:2]
    if kmax == 0:
        return dist.new_zeros((n, nq), dtype=torch.float32)
    order = _stable_smallest(dist, kmax)  # (N, Nq, kmax)
    rel = relevant.to(torch.float32).unsqueeze(1).expand(n, nq, -1)
    rel_sorted = rel.gather(-1, order)  # (N, Nq, kmax)
    w = dcg_weights(kmax, dist.device)
    within_k = torch.arange(kmax, device=dist.device) < k.unsqueeze(-1)  # (N, kmax)
    dcg = torch.bmm(rel_sorted, (w * within_k).unsqueeze(-1)).squeeze(-1)  # (N, Nq)
    idcg = torch.cumsum(w, 0)[(k - 1).clamp(min=0)]  # (N,)
    return torch.where(k.unsqueeze(-1) > 0, dcg / idcg.unsqueeze(-1), torch.zeros_like(dcg))


def distances(query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """(N, Nq, C), (N, Ns, C) -> (N, Nq, Ns): |s_j|^2 - 2 <q_i, s_j> in float32 (the canonical order key)."""
    q = query.float()
    s = support.float()
    return torch.add((s * s).sum(-1).unsqueeze(1), torch.bmm(q, s.transpose(1, 2)), alpha=-2.0)


def ndcg_prior_reference(query: torch.Tensor, support: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """The reference of ``icpd::ndcg_prior`` on any device: query (N, Nq, C), support (N, Ns, C),
    relevance (N, Ns) -> (N, Nq) float32. Kernels fall back to it outside their limits."""
    return ndcg_prior(distances(query, support), relevance > 0)


@torch.library.custom_op("icpd::ndcg_prior", mutates_args=())
def ndcg_prior_op(query: torch.Tensor, support: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    return ndcg_prior_reference(query, support, relevance)


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
