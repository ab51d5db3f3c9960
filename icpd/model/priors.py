"""Query-support priors: cosine prior and rank (NDCG) prior, batched over items and shots.

Both priors of a layer share one Gram matrix G = q^T s (the expensive GEMM):
- cosine: cos_ij = max(0, G_ij m_j / ((|q_i| + eps) (m_j |s_j| + eps))), summed over j and
  divided by (sum_j m_j + eps): the reference's cosine on mask-weighted support features;
- rank: d_ij = |s_j|^2 - 2 G_ij orders support pixels by squared Euclidean distance (the
  row constant |q_i|^2 is dropped: it does not change the order). NDCG of the binary
  relevance r_j = [m_j > 0] over the first k = sum_j r_j positions.

Tie rule (all backends): equal distances are ordered by ascending support index (a stable sort).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from icpd.config import RankPriorForm
from icpd.errors import ParamError, arg
from icpd.model.rank_prior import ndcg_prior

EPS = 1e-5  # the reference's epsilon in norms and mask areas
EAGER = "eager"  # pair_priors(rank=EAGER): the rank prior in PyTorch (topk with the exact-tie fallback)
_ON_DISTANCES = (RankPriorForm.TOPK, RankPriorForm.SORT)  # forms traced as icpd::ndcg_prior_dist


def rank_path(rank: str | RankPriorForm) -> str | RankPriorForm:
    """``rank`` of :func:`pair_priors` normalised: ``"eager"`` or a :class:`RankPriorForm`
    (:meth:`RankPriorForm.parse`: a member or its name).

    A form means "through the ``icpd::`` op the exporter writes in that form": ``topk`` and
    ``sort`` trace ``icpd::ndcg_prior_dist`` on the distance matrix the cosine's GEMM already
    made (their ONNX forms differ only in the translation table), ``plugin`` traces
    ``icpd::ndcg_prior`` on the features (the NdcgPrior node; the CUDA kernel on CUDA tensors).

    Raises:
        ValueError: anything else, naming every valid value.
    """
    if rank == EAGER:
        return EAGER
    if isinstance(rank, RankPriorForm) or rank in RankPriorForm.spellings():
        return RankPriorForm.parse(rank, "rank")
    raise ParamError(f"{arg('rank', repr(rank))}: choose {EAGER} or a rank-prior form: "
                     f"{RankPriorForm.choices()}")


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, K, H, W) {0,1} masks -> (B, K, h*w) soft masks, bilinear with align_corners=True."""
    b, k = masks.shape[:2]
    m = F.interpolate(masks.flatten(0, 1).unsqueeze(1).float(), size, mode="bilinear", align_corners=True)
    return m.reshape(b, k, -1)


def pair_priors(
    query: torch.Tensor,
    support: torch.Tensor,
    mask: torch.Tensor,
    s_norm: torch.Tensor | None = None,
    *,
    rank: str | RankPriorForm = EAGER,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine and rank priors of one layer for every (item, shot).

    query: (B, C, Nq) query features; support: (Bs, K, C, Ns) support features with Bs = B
    (one support set per query) or Bs = 1 (one support set shared by all queries: the
    deployment case; folded into a single item of B*Nq query pixels, except in the standard
    ONNX forms, which broadcast it over the batch);
    mask: (Bs, K, Ns) soft support mask at the layer's size (values in [0, 1]);
    s_norm: (Bs, K, Ns) support pixel L2 norms (support-only: pass them precomputed);
    rank: how the rank prior is computed (:func:`rank_path`): ``"eager"`` (topk in PyTorch) or
    the :class:`RankPriorForm` the graph is exported in (``topk``/``sort``: the
    ``icpd::ndcg_prior_dist`` op on the shared distance matrix; ``plugin``: the
    ``icpd::ndcg_prior`` op on features, which is also the CUDA kernel in PyTorch on a GPU).
    Returns cos, rank: each (B, K, Nq) float32; every path gives the same values.
    """
    path = rank_path(rank)
    b, c, nq = query.shape
    bs, k = support.shape[:2]
    if bs == 1 and path not in _ON_DISTANCES:
        q = query.transpose(0, 1).reshape(1, c, b * nq)  # B C Nq -> 1 C (B Nq): one GEMM per shot
        cos, ranks = _pair_priors(q, support, mask, s_norm, path)
        return cos.view(k, b, nq).transpose(0, 1), ranks.view(k, b, nq).transpose(0, 1)
    # The standard ONNX forms broadcast a shared support set over the batch instead (one transpose
    # of the query features fewer in the graph).
    return _pair_priors(query, support, mask, s_norm, path)


def _pair_priors(
    query: torch.Tensor, support: torch.Tensor, mask: torch.Tensor, s_norm: torch.Tensor | None,
    rank: str | RankPriorForm,
) -> tuple[torch.Tensor, torch.Tensor]:
    b, c, nq = query.shape
    k, ns = support.shape[1], support.shape[3]  # support (Bs, K, C, Ns), Bs = B or 1 (broadcast)
    # B C Nq -> B Nq C -> B 1 Nq C: a Transpose that feeds the MatMul directly becomes ONNX Runtime's
    # FusedMatMul(transA), measured 10% slower than an explicit transpose + MatMul here.
    qt = query.transpose(1, 2).unsqueeze(1)
    gram = torch.matmul(qt, support)  # (B, K, Nq, Ns)
    if s_norm is None:
        s_norm = (support * support).sum(2).sqrt()  # (Bs, K, Ns)
    relevance = mask.expand(b, k, ns).reshape(b * k, ns)
    if rank == RankPriorForm.PLUGIN:
        ranks = torch.ops.icpd.ndcg_prior(
            qt.expand(b, k, nq, c).reshape(b * k, nq, c), support.transpose(2, 3).reshape(b * k, ns, c),
            relevance,
        ).reshape(b, k, nq)
    else:
        # |s_j|^2 - 2 G_ij: shares the cosine's GEMM
        dist = torch.add((s_norm * s_norm).unsqueeze(2), gram, alpha=-2.0).reshape(b * k, nq, ns)
        if rank in _ON_DISTANCES:
            ranks = torch.ops.icpd.ndcg_prior_dist(dist, relevance).reshape(b, k, nq)
        else:
            ranks = ndcg_prior(dist, relevance > 0).reshape(b, k, nq)
    # cos_ij = max(0, G_ij) * a_i * w_j with a_i = 1 / (|q_i| + eps) > 0, w_j = m_j / (m_j |s_j| + eps) >= 0,
    # so the sum over j is one matrix-vector product.
    w = (mask / (mask * s_norm + EPS)).unsqueeze(-1)  # (B, K, Ns, 1)
    # in place where nothing needs the Gram matrix any more (eager inference; export traces out-of-place)
    relu = gram.clamp_(min=0) if rank == EAGER and not gram.requires_grad else gram.clamp(min=0)
    cos = torch.matmul(relu, w).squeeze(-1)  # (B, K, Nq)
    q_norm = (query * query).sum(1).sqrt().unsqueeze(1)  # (B, 1, Nq); ~10x faster than .norm(dim=1) here
    cos = cos / (q_norm + EPS) / (mask.sum(-1, keepdim=True) + EPS)
    return cos, ranks


def text_similarity(tokens: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
    """CLIP token / class-text cosine similarity, as the released code computes it.

    tokens: (B, g, g, D); class_embeddings: (B, N, D). Before the cosine over D, tokens are
    L2-normalised along the *height* axis and embeddings along the *class* axis (the released
    code normalises dim=1 of each; kept for checkpoint fidelity).
    Returns (B, N, g, g).
    """
    t = F.normalize(tokens, p=2, dim=1)
    e = F.normalize(class_embeddings, p=2, dim=1)
    t = t / t.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    e = e / e.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    return torch.einsum("bhwd,bnd->bnhw", t, e)
