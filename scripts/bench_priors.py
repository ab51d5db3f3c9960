#!/usr/bin/env python3
"""Priors benchmark: icpd's batched priors vs a per-item implementation with the reference's
loop structure (per layer, per item: masked cosine, then cdist + topk + DCG).

Paper sizes (B=1, K=1 by default): 13 backbone layers (4 x 512ch 32x32, 6 x 1024ch 16x16,
3 x 2048ch 8x8) + the CLIP level (768ch 16x16). Prints both times and the speed-up, and
fails (exit 1) if the results differ beyond the documented near-tie tolerance.

    python scripts/bench_priors.py [--batch 1] [--shots 1] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from icpd.model.priors import pair_priors, resize_masks

EPS = 1e-5


def loop_cosine(q: torch.Tensor, s: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """q (B,C,h,w), s (B,C,h,w), m (B,1,h,w) -> (B,h,w)."""
    b, c, h, w = q.shape
    sm = (s * m).view(b, c, -1)
    sm = sm / (sm.norm(dim=1, keepdim=True) + EPS)
    qf = q.view(b, c, -1)
    qf = qf / (qf.norm(dim=1, keepdim=True) + EPS)
    corr = torch.bmm(qf.transpose(1, 2), sm).clamp(min=0).sum(-1)
    return (corr / (m.view(b, -1).sum(1, keepdim=True) + EPS)).view(b, h, w)


def loop_rank(q: torch.Tensor, s: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Per item: cdist^2, topk(k) sorted, relevance gather, DCG / IDCG."""
    b, c, h, w = q.shape
    out = []
    for i in range(b):
        qi = q[i].view(c, -1).t()
        si = s[i].view(c, -1).t()
        rel = m[i].view(-1) > 0
        k = int(rel.sum())
        if k == 0:
            out.append(torch.zeros(h * w))
            continue
        d = torch.cdist(qi, si).pow(2)
        _, idx = torch.topk(-d, k, dim=1, largest=True, sorted=True)
        r = rel[idx].float()
        disc = torch.log2(torch.arange(1, k + 1).float() + 1)
        out.append((r / disc).sum(1) / (1.0 / disc).sum())
    return torch.stack(out).view(b, h, w)


def loop_priors(q_maps, s_maps, masks):
    """Lists of (B,C,h,w) query maps, per-shot lists of support maps, (B,K,H,W) masks."""
    outs = []
    for level, q in enumerate(q_maps):
        per_shot = []
        for k in range(masks.shape[1]):
            s = s_maps[k][level]
            m = F.interpolate(masks[:, k : k + 1].float(), s.shape[-2:], mode="bilinear", align_corners=True)
            per_shot.append(torch.stack([loop_cosine(q, s, m), loop_rank(q, s, m)], 1))
        outs.append(torch.stack(per_shot, 1))  # (B, K, 2, h, w)
    return outs


def batched_priors(q_maps, s_feats, s_norms, s_masks):
    outs = []
    for q, s, n, m in zip(q_maps, s_feats, s_norms, s_masks):
        b, _, h, w = q.shape
        cos, rank = pair_priors(q.flatten(2), s, m, n)
        outs.append(torch.stack([cos, rank], 2).view(b, -1, 2, h, w))
    return outs


def make_inputs(batch: int, shots: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    spec = [(512, 32)] * 4 + [(1024, 16)] * 6 + [(2048, 8)] * 3 + [(768, 16)]
    q_maps = [torch.randn(batch, c, n, n, generator=g) for c, n in spec]
    s_maps = [[torch.randn(batch, c, n, n, generator=g) for c, n in spec] for _ in range(shots)]
    masks = torch.zeros(batch, shots, 256, 256)
    for b in range(batch):
        for k in range(shots):
            y, x = torch.randint(30, 200, (2,), generator=g).tolist()
            masks[b, k, y : y + 50, x : x + 40] = 1
    return q_maps, s_maps, masks


def time_interleaved(fn_a, fn_b, repeats: int) -> tuple[list[float], list[float]]:
    """Alternate A and B so machine drift hits both alike (shared, noisy CPUs)."""
    fn_a(), fn_b()  # warm-up
    a, b = [], []
    for _ in range(repeats):
        for fn, out in ((fn_a, a), (fn_b, b)):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1e3)
    return a, b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--shots", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    q_maps, s_maps, masks = make_inputs(a.batch, a.shots)
    # support-only preparation (what a support cache holds), done once, outside the timing
    s_feats = [torch.stack([s_maps[k][lvl] for k in range(a.shots)], 1).flatten(3) for lvl in range(len(q_maps))]
    s_norms = [f.norm(dim=2) for f in s_feats]
    s_masks = [resize_masks(masks, q.shape[-2:]) for q in q_maps]

    ref = loop_priors(q_maps, s_maps, masks)
    new = batched_priors(q_maps, s_feats, s_norms, s_masks)
    worst_cos = max(float((r[:, :, 0] - n[:, :, 0]).abs().max()) for r, n in zip(ref, new))
    rank_diff = torch.cat([(r[:, :, 1] - n[:, :, 1]).abs().flatten() for r, n in zip(ref, new)])
    t_loop, t_new = time_interleaved(
        lambda: loop_priors(q_maps, s_maps, masks), lambda: batched_priors(q_maps, s_feats, s_norms, s_masks), a.repeats
    )
    m_loop, m_new = statistics.median(t_loop), statistics.median(t_new)
    print(f"priors, 13 layers + CLIP level, B={a.batch} K={a.shots}, {torch.get_num_threads()} threads")
    print(f"  reference loop structure : median {m_loop:8.1f} ms  (min {min(t_loop):.1f})")
    print(f"  icpd batched             : median {m_new:8.1f} ms  (min {min(t_new):.1f})")
    print(f"  speed-up (median ratio)  : {m_loop / m_new:.2f}x")
    print(f"  cosine max |diff| {worst_cos:.2e}; rank max |diff| {float(rank_diff.max()):.2e}, "
          f"mean {float(rank_diff.mean()):.2e}, pixels > 1e-4: {int((rank_diff > 1e-4).sum())}/{rank_diff.numel()}")
    ok = worst_cos < 1e-5 and float(rank_diff.mean()) < 1e-5 and float(rank_diff.max()) < 5e-3
    print("  results agree" if ok else "  RESULTS DIFFER")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
