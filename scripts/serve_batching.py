"""Does batching concurrent `icpd serve` requests pay on ONNX Runtime CPU? (README "Serving on Ray
and measured numbers")

    python scripts/serve_batching.py [--presets tiny,paper] [--batches 2,4,8] [--threads 1,2]
                                     [--rounds 7] [--json out.json]

A request is one tile-sized image (one model input). For each preset, ORT thread count T and batch
size B it times, in one interleaved run (batched, singles, singles, batched, ... so a load change on
the shared machine hits both alike), with one warm-up of each first:

* batched: one ``Predictor.predict`` call on the B images stacked (B, S, S, 3), as ``@serve.batch``
  would make it;
* singles: B ``Predictor.predict`` calls of one image each, as the service's workers do,

on the same Predictor (T ONNX Runtime threads, two classes). It prints the median milliseconds per
image of each and ``gain = singles / batched`` (above 1: batching pays), the CPU and the load
average, and the share of pixels whose label differs between the two (batched matrix products
sum in another order, so a pixel at the threshold can flip). Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_models import default_work, model_dir_for, request_images, supports_for


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def measure(predictor, images: list[np.ndarray], batch: int, rounds: int) -> dict[str, float]:
    """Median ms per image of one batched call vs ``batch`` single calls, interleaved over ``rounds``."""
    group = np.stack([images[i % len(images)] for i in range(batch)])
    batched_labels = predictor.predict(group).labels  # warm-up of both shapes; answers compared
    single_labels = np.concatenate([predictor.predict(img).labels for img in group])
    # batched matmuls sum in another order: a pixel at the threshold may flip (reported, not hidden)
    differ = float(np.mean(batched_labels != single_labels))
    samples: dict[str, list[float]] = {"batched": [], "singles": []}
    for r in range(rounds):
        order = ("batched", "singles") if r % 2 == 0 else ("singles", "batched")
        for kind in order:
            t0 = time.perf_counter()
            if kind == "batched":
                predictor.predict(group)
            else:
                for img in group:
                    predictor.predict(img)
            samples[kind].append((time.perf_counter() - t0) * 1000 / batch)
    b, s = statistics.median(samples["batched"]), statistics.median(samples["singles"])
    return {"batch": batch, "batched_ms_per_image": round(b, 2), "singles_ms_per_image": round(s, 2),
            "gain": round(s / b, 3), "labels_differ": differ}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="tiny,paper", help="comma-separated presets (benchmarks' seeded exports)")
    ap.add_argument("--model", help="a model dir instead of --presets")
    ap.add_argument("--batches", default="2,4,8", type=_ints)
    ap.add_argument("--threads", default=f"1,{os.cpu_count() or 1}", type=_ints, help="ONNX Runtime threads")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--work", type=Path, default=None, help="support caches (default: the cache root)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    from icpd.benchmarks.env import collect_environment
    from icpd.runtime.predictor import Predictor

    env = collect_environment()
    results = []
    targets = [(None, args.model)] if args.model else [(p, None) for p in args.presets.split(",")]
    for preset, model in targets:
        model_dir = model_dir_for(preset, model)
        supports = supports_for(model_dir, args.work or default_work())
        for threads in dict.fromkeys(args.threads):
            p = Predictor.load(model_dir, backend="ort", threads=threads)
            for s in supports:
                p.add_support(s)
            images = request_images(p.preset.image_size)
            for batch in args.batches:
                row = {"preset": p.preset.name, "threads": threads, "classes": len(supports),
                       **measure(p, images, batch, args.rounds), "load_avg": os.getloadavg()[0]}
                results.append(row)
                print(f"{row['preset']:>6} threads {threads} batch {batch}: batched "
                      f"{row['batched_ms_per_image']:.1f} ms/img, singles {row['singles_ms_per_image']:.1f} ms/img, "
                      f"gain {row['gain']:.2f}x, labels differ at {100 * row['labels_differ']:.3f} % of pixels "
                      f"(load {row['load_avg']:.2f})", flush=True)
    print(f"cpu: {env['cpu_model']}, {env['cpu_cores_usable']} usable cores, flags {env['cpu_int8_flags']}, "
          f"onnxruntime {env['packages']['onnxruntime']}, load average {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "environment": env}, indent=1))


if __name__ == "__main__":
    main()
