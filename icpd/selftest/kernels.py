"""Self-test steps for the rank prior: its CPU reference on cases with known answers, the CUDA
kernel against that reference, and which GPU architectures the built kernel covers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from icpd.selftest.report import Skip

# Paper preset levels as (support pixels Ns, channels C); queries Nq = Ns (same map size).
PAPER_LEVELS = {"layer2 32x32 C512": (1024, 512), "layer3 16x16 C1024": (256, 1024),
                "layer4 8x8 C2048": (64, 2048), "clip 16x16 C1024": (256, 1024),
                "max support 64x64 C256": (4096, 256)}


def _prior(q: Any, s: Any, r: Any) -> Any:
    import torch

    return torch.ops.icpd.ndcg_prior(q, s, r)


def rank_prior_cpu() -> dict[str, Any]:
    """The CPU reference (``icpd::ndcg_prior`` on CPU) on cases whose answer is known exactly:
    k = 0 (nothing relevant: 0), k = all (every ranking is ideal: 1), exact ties (ordered by
    support index), and a 1024 x 1024 level against a full stable sort."""
    import torch

    import icpd.model.rank_prior  # noqa: F401  (registers icpd::ndcg_prior)
    from icpd.model.rank_prior import dcg_weights, distances

    g = torch.Generator().manual_seed(0)
    q, s = torch.randn(2, 64, 16, generator=g), torch.randn(2, 300, 16, generator=g)
    cases: dict[str, float] = {}
    got = _prior(q, s, torch.zeros(2, 300))
    cases["k=0 -> 0"] = float(got.abs().max())
    got = _prior(q, s, torch.ones(2, 300))
    cases["k=all -> 1"] = float((got - 1).abs().max())
    # all distances equal: the order is the support index; relevant {1, 2}, k = 2 -> top 2 = (0, 1)
    same = torch.ones(1, 4, 8)
    got = _prior(torch.ones(1, 3, 8), same, torch.tensor([[0.0, 1.0, 1.0, 0.0]]))
    w = 1 / math.log2(3)
    cases["ties by support index"] = float((got - w / (1 + w)).abs().max())
    # a paper-sized level: the top-k path (with its exact-tie fallback) against a full stable sort
    q, s = torch.randn(1, 1024, 64, generator=g), torch.randn(1, 1024, 64, generator=g)
    rel = (torch.rand(1, 1024, generator=g) < 0.3).float()
    k = int(rel.sum())
    order = torch.sort(distances(q, s), dim=-1, stable=True).indices[..., :k]
    dcg = (rel[:, None, :].expand(1, 1024, 1024).gather(-1, order) * dcg_weights(k)).sum(-1)
    expected = dcg / dcg_weights(k).sum()
    cases["1024x1024 vs full sort"] = float((_prior(q, s, rel) - expected).abs().max())
    bad = {name: err for name, err in cases.items() if err > 1e-6}
    if bad:
        raise AssertionError(f"the CPU rank prior is off on {sorted(bad)} "
                             f"(max abs error {max(bad.values()):.3g} > 1e-6)")
    return {"max_abs_error": cases, "summary": f"{len(cases)} cases exact (<= 1e-6)"}


def _gpu_or_skip(device: str) -> Any:
    import torch

    if not device.startswith("cuda"):
        raise Skip(f"device {device}: GPU steps run on a CUDA device (device cuda or cuda:N)")
    if not torch.cuda.is_available():
        raise Skip("torch sees no CUDA device")
    return torch.device(device)


def kernel_coverage(device: str, cache_dir: Path) -> dict[str, Any]:
    """Build the kernel (nvcc, cached) and say how it covers this GPU: native cubin, or PTX the driver
    JITs."""
    import torch

    from icpd.kernels import build

    dev = _gpu_or_skip(device)
    major, minor = torch.cuda.get_device_capability(dev)
    arch = major * 10 + minor
    try:
        kb = build.compile_kernel(cache_dir)
    except build.NvccNotFoundError as err:
        raise Skip(f"no nvcc: {err}") from err
    ptx = int(kb.ptx_arch.split("_")[1])
    if f"sm_{arch}" in kb.cubin_archs:
        how = f"cubin sm_{arch}"
    elif ptx <= arch:
        how = f"PTX {kb.ptx_arch}, JIT-compiled by the driver (no sm_{arch} cubin: slower first launch)"
    else:
        raise AssertionError(f"the kernel has no sm_{arch} cubin and its PTX {kb.ptx_arch} is newer than the "
                             "GPU")
    return {"gpu_arch": f"sm_{arch}", "cubin_archs": list(kb.cubin_archs), "ptx_arch": kb.ptx_arch,
            "skipped_archs": kb.skipped, "nvcc": ".".join(map(str, kb.nvcc_version)), "coverage": how,
            "summary": f"sm_{arch}: {how.split(',')[0]}"}


def kernel_cuda(device: str, cache_dir: Path) -> dict[str, Any]:
    """The CUDA kernel against the CPU reference: paper-sized levels, ties, k = 0, k = all, FP16 inputs.

    Integer-valued features make every distance exact in FP32 and FP16 (ties included), so the
    rankings must be identical; only the DCG summation order differs (atol 2e-6)."""
    import torch

    from icpd.kernels import launch
    from icpd.kernels.cuda_op import CudaOpUnavailableError, ensure_cuda_op
    from icpd.model.rank_prior import ndcg_prior_op

    dev = _gpu_or_skip(device)
    try:
        ensure_cuda_op(cache_dir)
    except CudaOpUnavailableError as err:
        if "nvcc" in str(err) and "not found" in str(err):
            raise Skip(f"the kernel cannot be built here: {err}") from err
        raise
    g = torch.Generator().manual_seed(0)
    results: dict[str, Any] = {}
    worst = 0.0
    for name, (ns, c) in PAPER_LEVELS.items():
        for dtype in (torch.float32, torch.float16):
            for rel_name, p in (("30% relevant", 0.3), ("k=0", 0.0), ("k=all", 1.0)):
                if rel_name != "30% relevant" and (dtype is torch.float16 or ns > 1024):
                    continue  # the k edge cases once per level, in FP32
                n, nq = 2, ns if ns <= 1024 else 128  # paper levels at their size; the 4096 case: 128 queries
                q = torch.randint(-3, 4, (n, nq, c), generator=g).to(dtype)
                s = torch.randint(-3, 4, (n, ns, c), generator=g).to(dtype)
                r = (torch.rand(n, ns, generator=g) < p).to(dtype)
                launch.launch_config(n, nq, ns, c, dtype)  # raises if this case would fall back to PyTorch
                got = _prior(q.to(dev), s.to(dev), r.to(dev)).cpu()
                ref = ndcg_prior_op(q.float(), s.float(), r.float())
                err = float((got - ref).abs().max())
                worst = max(worst, err)
                results[f"{name} {str(dtype).removeprefix('torch.')} {rel_name}"] = err
    torch.cuda.synchronize(dev)
    bad = {k: v for k, v in results.items() if v > 2e-6}
    if bad:
        raise AssertionError(f"the CUDA kernel differs from the CPU reference in {len(bad)} cases, e.g. "
                             f"{next(iter(bad))}: max abs {next(iter(bad.values())):.3g} (> 2e-6)")
    return {"max_abs_error": results, "summary": f"{len(results)} cases, max abs error {worst:.1e}"}
