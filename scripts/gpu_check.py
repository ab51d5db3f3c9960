"""Python steps of scripts/gpu_check.sh (one subcommand each); every result is a JSON file.

  record SUMMARY NAME STATUS SECONDS [DETAILS]  add a step to SUMMARY (JSON) and rewrite the JUnit XML beside it
  ptxas LOG OUT                                 registers, spills, shared memory per arch from `ptxas -v`
  kernel-vs-torch OUT                           CUDA kernel vs the PyTorch CUDA rank prior at paper sizes
  torch-paper OUT                               torch on CUDA, paper preset (seeded): FP32, FP16 autocast with
                                                the rank prior in FP32, CUDA graphs, each against the CPU

Exit 77 means "skipped" (the reason is the last line printed). Nothing here reads stdin.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

SKIP = 77
# Paper-preset levels (query pixels Nq = support pixels Ns, channels C), 5-shot support folded into N.
PAPER_LEVELS = {"layer2 32x32 C512": (1024, 512), "layer3 16x16 C1024": (256, 1024), "layer4 8x8 C2048": (64, 2048),
                "clip 16x16 C1024": (256, 1024)}


def record(summary: str, name: str, status: str, seconds: str, details: str = "") -> None:
    path = Path(summary)
    doc = json.loads(path.read_text()) if path.is_file() else {"steps": {}}
    entry = {"status": status, "seconds": int(seconds)}
    if details and Path(details).is_file():
        try:
            entry["details"] = json.loads(Path(details).read_text())
        except ValueError:
            entry["details"] = Path(details).read_text()[-4000:]
    doc["steps"][name] = entry
    doc["failed"] = sorted(k for k, v in doc["steps"].items() if v["status"] in ("fail", "timeout"))
    path.write_text(json.dumps(doc, indent=1))
    cases = []
    for step, v in doc["steps"].items():
        body = ""
        if v["status"] in ("fail", "timeout"):
            detail = escape(json.dumps(v.get("details", ""))[:4000])
            body = f'<failure message={quoteattr(v["status"])}>{detail}</failure>'
        elif v["status"] in ("skip", "budget"):
            body = f"<skipped message={quoteattr(str(v.get('details', v['status']))[:500])}/>"
        cases.append(f'  <testcase classname="gpu_check" name={quoteattr(step)} time="{v["seconds"]}">'
                     f'{body}</testcase>')
    failures = sum(v["status"] in ("fail", "timeout") for v in doc["steps"].values())
    skipped = sum(v["status"] in ("skip", "budget") for v in doc["steps"].values())
    xml = (f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="gpu_check" tests="{len(cases)}" '
           f'failures="{failures}" skipped="{skipped}">\n' + "\n".join(cases) + "\n</testsuite>\n")
    path.with_suffix(".junit.xml").write_text(xml)


def ptxas(log: str, out: str) -> None:
    """Parse `nvcc -Xptxas -v` output: per arch and kernel, registers, spill bytes, shared memory."""
    result: dict[str, dict] = {}
    arch, func = "?", "?"
    for line in Path(log).read_text().splitlines():
        if m := re.search(r"Compiling entry function '(\w+)' for '(sm_\d+a?)'", line):
            func, arch = m.group(1), m.group(2)
            func = "f16" if "f16" in func else "f32" if "f32" in func else func
        elif m := re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line):
            result.setdefault(arch, {}).setdefault(func, {}).update(
                stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        elif m := re.search(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?", line):
            entry = result.setdefault(arch, {}).setdefault(func, {})
            entry["registers"] = int(m.group(1))
            entry["static_smem"] = int(m.group(2) or 0)
    from icpd.kernels.launch import shared_bytes

    # the kernel's shared memory is dynamic (ptxas shows 0 static): its size per block at paper sizes
    result["dynamic_smem_bytes"] = {name: shared_bytes(ns, c) for name, (ns, c) in
                                    {**PAPER_LEVELS, "max support 64x64 C256": (4096, 256)}.items()}
    Path(out).write_text(json.dumps(result, indent=1))
    for a, funcs in result.items():
        print(a, funcs if a == "dynamic_smem_bytes" else
              {f: f"{v.get('registers')} registers, {v.get('spill_stores')} B spilled" for f, v in funcs.items()})
    if len(result) == 1:
        raise SystemExit("ptxas -v printed no register counts")


def _need_cuda():
    import torch

    if not torch.cuda.is_available():
        print("skip: torch sees no CUDA device")
        raise SystemExit(SKIP)
    return torch


def _median_ms(torch, fn, reps: int = 20) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def kernel_vs_torch(out: str) -> None:
    torch = _need_cuda()
    from icpd.kernels.cuda_op import ensure_cuda_op
    from icpd.model.rank_prior import distances, ndcg_prior

    ensure_cuda_op()  # the cache ($ICPD_CACHE_DIR) holds the build of the kernel_build step
    res = {}
    g = torch.Generator(device="cuda").manual_seed(0)
    for name, (ns, c) in PAPER_LEVELS.items():
        n = 5
        q = torch.randn(n, ns, c, device="cuda", generator=g)
        s = torch.randn(n, ns, c, device="cuda", generator=g)
        r = (torch.rand(n, ns, device="cuda", generator=g) < 0.2).float()
        kernel = _median_ms(torch, lambda q=q, s=s, r=r: torch.ops.icpd.ndcg_prior(q, s, r))
        topk = _median_ms(torch, lambda q=q, s=s, r=r: ndcg_prior(distances(q, s), r > 0))
        diff = (torch.ops.icpd.ndcg_prior(q, s, r) - ndcg_prior(distances(q, s), r > 0)).abs().max().item()
        res[name] = {"kernel_ms": round(kernel, 4), "torch_topk_ms": round(topk, 4),
                     "torch_over_kernel": round(topk / kernel, 2), "max_abs_diff": diff}
        print(name, res[name])
    Path(out).write_text(json.dumps(res, indent=1))


def torch_paper(out: str) -> None:
    """The torch backend's graphs on CUDA for the paper preset (seeded weights) against the CPU:
    FP32, FP16 autocast with the rank prior kept in FP32, and a CUDA graph replay of the FP32 run."""
    torch = _need_cuda()
    from icpd.export.onnx import example_images, example_support_masks, matcher_inputs
    from icpd.export.wrappers import MatcherGraph
    from icpd.kernels.cuda_op import ensure_cuda_op
    from icpd.model.checkpoint import seeded_model

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # FP32 means FP32
    ensure_cuda_op()
    for op in ("icpd::ndcg_prior", "icpd::ndcg_prior_dist"):  # autocast hands the rank prior FP32 inputs
        torch.library.register_autocast(op, "cuda", torch.float32)
    t0 = time.perf_counter()
    model = seeded_model("paper", seed=0).eval()
    p = model.preset
    query, support = example_images(1, p.image_size, 1), example_images(1, p.image_size, 2)
    args = matcher_inputs(model, query, support, example_support_masks(1, p.image_size, 3),
                          torch.randn(p.num_classes, p.embed_dim, generator=torch.Generator().manual_seed(4)))
    with torch.no_grad():
        feats_cpu = model.encode_unchecked(query).as_list()
        ref = MatcherGraph(model, all_outputs=True, rank="eager")(*args)
    res: dict = {"model_build_and_cpu_s": round(time.perf_counter() - t0, 1)}
    model = model.cuda()
    graph = MatcherGraph(model, all_outputs=True, rank="plugin")  # icpd::ndcg_prior: the CUDA kernel
    q_cuda, args_cuda = query.cuda(), [a.cuda() for a in args]

    def run():
        return model.encode_unchecked(q_cuda).as_list(), graph(*args_cuda)

    def compare(tag, feats, outs):
        logits = outs[0].float().cpu()
        err = {"feat_max_rel": max(float((f.float().cpu() - r).abs().max() / r.abs().max())
                                   for f, r in zip(feats, feats_cpu)),
               "logits_max_abs": float((logits - ref[0]).abs().max()), "logits_ref_max": float(ref[0].abs().max()),
               "mask_agreement": float((logits.argmax(1) == ref[0].argmax(1)).float().mean())}
        err["ms"] = round(_median_ms(torch, run if tag != "cuda graphs" else replay, reps=10), 3)
        res[tag] = err
        print(tag, err)

    with torch.no_grad():
        compare("fp32", *run())
        with torch.autocast("cuda", dtype=torch.float16):
            compare("fp16 autocast (rank prior fp32)", *run())
        try:
            static = run()  # warm-up outside the capture
            g = torch.cuda.CUDAGraph()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                run()
                with torch.cuda.graph(g, stream=stream):
                    static = run()
            torch.cuda.current_stream().wait_stream(stream)

            def replay():
                g.replay()
                return static

            replay()
            torch.cuda.synchronize()
            compare("cuda graphs", *static)
        except Exception as err:  # noqa: BLE001  (recorded: what breaks the capture is the finding)
            res["cuda graphs"] = {"error": f"{type(err).__name__}: {str(err)[:500]}"}
            print("cuda graphs:", res["cuda graphs"])
    Path(out).write_text(json.dumps(res, indent=1))
    if "error" in res["cuda graphs"] or res["fp32"]["mask_agreement"] < 0.999:
        raise SystemExit("torch on CUDA: see the JSON (FP32 masks must agree >= 0.999; CUDA graphs must capture)")


if __name__ == "__main__":
    commands = {"record": record, "ptxas": ptxas, "kernel-vs-torch": kernel_vs_torch, "torch-paper": torch_paper}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        raise SystemExit(f"usage: {sys.argv[0]} {'|'.join(commands)} ARGS...")
    commands[sys.argv[1]](*sys.argv[2:])
