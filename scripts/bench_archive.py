"""Archive-scale numbers for `icpd infer` (README "Large scenes and archives", docs/scaling.md).

    python scripts/bench_archive.py [--size 20000] [--scenes 8] [--scene-size 1024] [--rounds 2]

Prints numbers, asserts nothing:

(a) peak RSS of `icpd infer` (the console script, tiny preset, windowed path, ``--threads 1``)
    on synthetic RGB GeoTIFFs of ``--size`` and of a quarter of it per side (tiled 256 x 256,
    deflate, written by rasterio windows so this script never holds a scene): each run in a
    fresh child process, its ``ru_maxrss`` read with ``RUSAGE_CHILDREN`` by a wrapper process
    that starts nothing else. The bound stated is ``--bound-mib``.
(b) throughput on the same ``--scenes`` GeoTIFF scenes: single-process ``infer_paths`` vs
    ``infer_paths_ray`` with 1 and 2 actors on a local Ray started once by ``init_ray``, as
    `icpd infer --ray` starts it (its start-up is not counted; each run's actor start and model
    load are), rounds interleaved (single, ray-1, ray-2, single, ...) so a load change on the
    machine hits every variant alike. The predictor has 1 ONNX Runtime thread everywhere
    (``--threads``), so the ratio measures the pipeline, not a thread count. Each run writes into
    a fresh folder (no resume).

The tiny model is seeded and exported once into ``--work`` (about a minute); so are the scenes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

_WRAPPER = """
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # Linux: KiB
"""


def make_model(work: Path) -> tuple[Path, list[Path]]:
    """The tiny preset, seeded and exported, and two support caches (random pictures and boxes)."""
    from icpd.export.onnx import export_model
    from icpd.model.checkpoint import seeded_model
    from icpd.runtime.predictor import Predictor

    model_dir, supports = work / "tiny", [work / "ship.support", work / "tank.support"]
    if not (model_dir / "model.json").is_file():
        export_model(seeded_model("tiny", seed=0), model_dir, validation_runs=1)
    if not all(s.is_file() for s in supports):
        p = Predictor.load(model_dir, backend="ort", threads=1)
        s, rng = p.preset.image_size, np.random.default_rng(0)
        emb = rng.standard_normal((p.preset.num_classes, p.preset.embed_dim)).astype(np.float32)
        for k, path in enumerate(supports):
            mask = np.zeros((s, s), np.uint8)
            mask[20 + 10 * k : 70 + 10 * k, 30:80] = 1
            p.encode_support([rng.integers(0, 256, (s, s, 3), np.uint8)], [mask], path.stem,
                             np.roll(emb, k, 0)).save(path)
    return model_dir, supports


def make_scene(path: Path, size: int, seed: int) -> Path:
    """A size x size RGB GeoTIFF (UTM, 0.5 m pixels) with texture and bright boxes, by 512-row strips."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    if path.is_file():
        return path
    tmp = path.with_suffix(".part.tif")
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 64, (3, 512, 1024), dtype=np.uint8)  # tiled: cheap, not constant
    profile = {"driver": "GTiff", "height": size, "width": size, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0),
               "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate", "BIGTIFF": "IF_SAFER"}
    with rasterio.open(tmp, "w", **profile) as ds:
        for y in range(0, size, 512):
            h = min(512, size - y)
            strip = np.tile(noise, (1, 1, size // 1024 + 1))[:, :h, :size].copy()
            strip[0] += np.uint8((y // 512 * 37 + seed * 11) % 128)
            for x in range(rng.integers(0, 300), size, 700):  # boxes: something for the classes to find
                strip[:, 100 : min(h, 160), x : x + 60] = np.array([230, 220, 40], np.uint8)[:, None, None]
            ds.write(strip, window=Window(0, y, size, h))
    os.replace(tmp, path)
    return path


def peak_rss(model_dir: Path, supports: list[Path], scene: Path, out: Path, threads: int) -> tuple[float, float]:
    """(peak RSS MiB, seconds) of one `icpd infer` run on ``scene`` in a fresh process."""
    icpd = [sys.executable, "-c", "from icpd.cli import main; main()"]
    cmd = [*icpd, "infer", str(scene), "--model", str(model_dir), *[a for s in supports for a in ("-s", str(s))],
           "--out", str(out), "-q", "--threads", str(threads)]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or not proc.stdout.split() or proc.stdout.split()[0] != "0":
        sys.exit(f"icpd infer failed on {scene}: {proc.stdout} {proc.stderr[-2000:]}")
    return int(proc.stdout.split()[1]) / 1024, seconds


def throughput(model_dir: Path, supports: list[Path], scenes: list[Path], work: Path, rounds: int,
               threads: int) -> dict[str, list[float]]:
    """tiles/s per variant and round (module docstring (b))."""
    import ray

    from icpd.apps.infer.local import InferOptions, collect_inputs, infer_paths, open_predictor
    from icpd.apps.infer.ray_runner import infer_paths_ray

    predictor = open_predictor(model_dir, supports, threads=threads)
    options = InferOptions()
    from icpd.apps.infer.ray_runner import init_ray

    init_ray(None, actors=2)  # the local Ray `icpd infer --ray` starts (workers at the caller's priority)
    rates: dict[str, list[float]] = {"single": [], "ray-1": [], "ray-2": []}
    try:
        for r in range(rounds):
            for name, got in rates.items():
                out = work / "runs" / f"{name}-{r}-{time.time_ns()}"
                listed = collect_inputs(scenes, out)
                start = time.perf_counter()
                if name == "single":
                    summary = infer_paths(predictor, listed, out, options)
                else:
                    summary = infer_paths_ray(predictor, model_dir, supports, listed, out, options,
                                              actors=int(name[-1]), threads=threads)
                seconds = time.perf_counter() - start
                if not summary.ok:
                    sys.exit(f"{name}: {[f.error for f in summary.failed]}")
                tiles = sum(x.tiles for x in summary.results)
                got.append(tiles / seconds)
                print(json.dumps({"round": r, "variant": name, "tiles": tiles, "seconds": round(seconds, 2),
                                  "tiles_per_s": round(tiles / seconds, 2)}), flush=True)
    finally:
        ray.shutdown()
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/icpd-bench-archive"), help="model, scenes, outputs")
    ap.add_argument("--size", type=int, default=20000, help="side of the large scene, px (a): 0 skips (a)")
    ap.add_argument("--bound-mib", type=float, default=2048, help="the stated peak RSS bound for (a)")
    ap.add_argument("--scenes", type=int, default=8, help="scenes for (b): 0 skips (b)")
    ap.add_argument("--scene-size", type=int, default=1024, help="side of each scene of (b), px")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of (b)")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per predictor")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model_dir, supports = make_model(args.work)
    print(json.dumps({"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "threads": args.threads}))
    if args.size:
        for size in (args.size // 4, args.size):
            scene = make_scene(args.work / f"scene_{size}.tif", size, seed=0)
            mib, seconds = peak_rss(model_dir, supports, scene, args.work / "runs" / f"rss-{size}-{time.time_ns()}",
                                    args.threads)
            print(json.dumps({"scene_px": f"{size}x{size}", "peak_rss_mib": round(mib), "bound_mib": args.bound_mib,
                              "within_bound": mib < args.bound_mib, "seconds": round(seconds, 1)}), flush=True)
    if args.scenes:
        scenes = [make_scene(args.work / f"s{i}_{args.scene_size}.tif", args.scene_size, seed=i + 1)
                  for i in range(args.scenes)]
        rates = throughput(model_dir, supports, scenes, args.work, args.rounds, args.threads)
        med = {k: statistics.median(v) for k, v in rates.items()}
        print(json.dumps({"median_tiles_per_s": {k: round(v, 2) for k, v in med.items()},
                          "ray1_over_single": round(med["ray-1"] / med["single"], 3),
                          "ray2_over_single": round(med["ray-2"] / med["single"], 3), "target_ray1": 0.85}))


if __name__ == "__main__":
    main()
