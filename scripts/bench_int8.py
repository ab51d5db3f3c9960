"""FP32 vs INT8 encoder on the CPU, paper preset (seeded weights): speed and feature agreement.

    python scripts/bench_int8.py [--preset paper] [--seed 0] [--work /tmp/int8] [--rounds 8]
                                 [--variants default,reduce_range]
                                 [--fp32 DIR] [--int8-dir DIR ...] [--agreement-tiles 4]

Exports the FP32 model dir once (into --work, reused; or --fp32 DIR) from seeded weights (--seed;
the benchmarks' own are seed 0), writes one INT8 model dir per variant (icpd.export.quantize;
variant "export" is what `icpd export --precision int8` does: the default options, the self-check
and the mixed-precision fallback), adds the INT8 dirs given with --int8-dir as they are, then
times, interleaved in one process (every round runs every model once, in a seeded random order,
so a drift of this loaded machine hits them all alike):

- ``encoder``: the encoder stage of the cached 1-shot query (Predictor.predict's own stage timer);
- ``cached 1-shot``: the whole cached 1-shot query, end to end.

It prints what each INT8 dir kept in FP32 (model.json int8.mixed_precision), medians and the
FP32 / INT8 ratios, and the cosine similarity of every encoder output to FP32 on the built-in
synthetic calibration tiles. Latency only: the weights are random.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

VARIANTS = {
    "default": {},
    "reduce_range": {"reduce_range": True},
    "per_channel": {"per_channel": True},
    "per_channel_rr": {"per_channel": True, "reduce_range": True},
    "qdq_convs": {"convs": "qdq"},
    "qdq_convs_rr": {"convs": "qdq", "reduce_range": True},  # the export's default + INT8 ResNet convs
    "export": None,  # icpd export --precision int8: default options, self-check, mixed-precision fallback
}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--work", type=Path, default=Path("/tmp/int8"))
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--variants", default="default,reduce_range")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights (the benchmarks use 0)")
    ap.add_argument("--fp32", type=Path, default=None, help="an FP32 model dir to use instead of exporting one")
    ap.add_argument("--int8-dir", type=Path, action="append", default=[], help="an existing INT8 model dir to time too")
    ap.add_argument("--agreement-tiles", type=int, default=4, help="tiles for the cosine-to-FP32 figures (0: none)")
    args = ap.parse_args()

    from icpd.apps.validate import check_int8_against_fp32
    from icpd.artifacts.model_dir import ModelDir, ModelDirError
    from icpd.benchmarks.latency import query_step
    from icpd.benchmarks.timer import StageTimer, measure_rounds
    from icpd.export.calibration import calibration_images
    from icpd.export.mixed_precision import summary_line
    from icpd.export.onnx import export_model
    from icpd.export.quantize import DEFAULT_OPTIONS, Int8Options, convert_model_dir_int8
    from icpd.model.checkpoint import seeded_model
    from icpd.runtime.predictor import Predictor

    args.work.mkdir(parents=True, exist_ok=True)
    fp32 = args.fp32 or args.work / f"{args.preset}-fp32"
    t0 = time.perf_counter()
    try:
        ModelDir.open(fp32)
        print(f"reusing {fp32}", flush=True)
    except ModelDirError:
        print(f"exporting {fp32} ...", flush=True)
        export_model(seeded_model(args.preset, seed=args.seed), fp32, validate=False, force=True,
                     source=f"random weights (seed {args.seed}): latency only")
        print(f"exported in {time.perf_counter() - t0:.0f} s", flush=True)
    dirs = {"fp32": fp32}
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        d = args.work / f"{args.preset}-int8-{name}"
        t1 = time.perf_counter()
        if VARIANTS[name] is None:
            convert_model_dir_int8(fp32, d, DEFAULT_OPTIONS, check=check_int8_against_fp32, force=True)
        else:
            convert_model_dir_int8(fp32, d, Int8Options(**VARIANTS[name]), force=True)
        print(f"int8 {name}: {d} in {time.perf_counter() - t1:.0f} s", flush=True)
        dirs[f"int8-{name}"] = d
    dirs.update((f"int8-{d.name}", d) for d in args.int8_dir)
    kept = {}  # what each INT8 dir kept in FP32, and the export's own speed-up check
    for k, d in dirs.items():
        mixed = ModelDir.open(d).meta.get("int8", {}).get("mixed_precision")
        if mixed is not None:
            kept[k] = {"fp32_blocks": [{x: b[x] for x in ("block", "why", "rel_error") if x in b}
                                       for b in mixed["fp32_blocks"]],
                       "matmuls_int8": mixed["matmuls_int8"], "matmuls": mixed["matmuls"],
                       "export_speed": mixed.get("speed")}
            print(f"{k}: {summary_line(mixed)}", flush=True)

    preds = {k: Predictor.load(d, backend="ort", threads=args.threads) for k, d in dirs.items()}
    # feature agreement on aerial-like tiles (the built-in calibration set)
    tiles, _ = calibration_images(None, preds["fp32"].preset.image_size)
    n_tiles = args.agreement_tiles
    ref = [preds["fp32"].to_host(preds["fp32"].encode(preds["fp32"].preprocess(t[None]))) for t in tiles[:n_tiles]]
    agreement = {}
    for k, p in preds.items():
        if k == "fp32" or not n_tiles:
            continue
        got = [p.to_host(p.encode(p.preprocess(t[None]))) for t in tiles[:n_tiles]]
        names = p.backend.encoder_outputs
        agreement[k] = {n: min(cosine(g[i], r[i]) for g, r in zip(got, ref)) for i, n in enumerate(names)}
        print(f"{k}: min cosine to FP32 per encoder output: "
              + json.dumps({n: round(c, 5) for n, c in agreement[k].items()}), flush=True)

    timers = {k: StageTimer() for k in preds}
    fns = [query_step(p, shots=1, stages=timers[k]) for k, p in preds.items()]
    print(f"timing {len(fns)} models interleaved, {args.rounds} rounds ...", flush=True)
    res = measure_rounds(fns, args.rounds, warmup_s=0.0, stages=list(timers.values()))
    med = {k: {"encoder": float(np.median(r.stage_samples_ms["encoder"])),
               "cached_1shot": float(np.median(r.samples_ms))}
           for k, r in zip(preds, res)}
    from icpd.benchmarks.env import collect_environment

    environment = collect_environment()
    print(f"CPU: {environment['cpu_model']}, INT8 features {environment['cpu_int8_flags']}, "
          f"{environment['cpu_cores_usable']} usable cores", flush=True)
    out = {"preset": args.preset, "seed": args.seed, "rounds": args.rounds, "environment": environment,
           "medians_ms": med, "agreement": agreement, "kept_fp32": kept,
           "speedup": {k: {s: med["fp32"][s] / m[s] for s in m} for k, m in med.items() if k != "fp32"}}
    print(json.dumps(out, indent=2), flush=True)
    (args.work / f"bench_int8_{args.preset}_seed{args.seed}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
