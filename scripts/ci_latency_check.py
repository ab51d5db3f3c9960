"""CI latency gate self-check: ratios against a reference run in the same job, never absolute times.

    python scripts/ci_latency_check.py            # exit 0: the gate behaves

The tiny model is exported once (reused from the ``icpd bench`` cache afterwards) and its
cached-support query is timed with ONNX Runtime, reference and candidate interleaved in one
process (``ab.run_ab``: A, B in a seeded random order per round), then judged by the
regression rule (median ratio above ``1 + max_slowdown`` AND one-sided Mann-Whitney p < alpha):

1. candidate = the same model dir, its own session: the gate must NOT flag it;
2. candidate = the same, slowed by sleeping ``slowdown`` x its own call time after each call
   (+50 % by default, proportional to the work, so it holds whatever the machine's speed):
   the gate MUST flag it.

Noisy shared runners: a check that goes the wrong way is repeated once with fresh rounds and
counts only if it fails again. Exit 0 when both checks behave, 1 when the gate misbehaves,
2 when the check cannot run, including ``--rounds`` too few for the rank test to reach
``p < --alpha`` (alpha 0.01 needs 5; check 1 would then pass whatever the timings).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _slowed(fn: Callable[[], Any], slowdown: float) -> Callable[[], None]:
    """``fn`` followed by a sleep of ``slowdown`` x the time ``fn`` just took."""

    def call() -> None:
        t0 = time.perf_counter()
        fn()
        time.sleep(slowdown * (time.perf_counter() - t0))

    return call


def _check(name: str, fn_a: Callable[[], Any], fn_b: Callable[[], Any], expect_regression: bool,
           args: argparse.Namespace) -> dict[str, Any]:
    from icpd.benchmarks.ab import run_ab
    from icpd.benchmarks.stats import is_regression

    attempts = []
    for attempt in (1, 2):
        ab = run_ab(fn_a, fn_b, args.rounds, warmup_rounds=2, seed=attempt)
        verdict = is_regression(ab.a_ms, ab.b_ms, args.max_slowdown, args.alpha)
        ok = verdict.is_regression == expect_regression
        attempts.append(verdict.to_dict())
        print(f"{name} (attempt {attempt}): {verdict.status.value}, ratio {verdict.ratio:.3f} "
              f"[{verdict.ci_low:.3f}, {verdict.ci_high:.3f}], p={verdict.p_value:.2g}, "
              f"medians {verdict.baseline_median:.1f} / {verdict.candidate_median:.1f} ms -> {'ok' if ok else 'WRONG'}",
              flush=True)
        if ok:
            break
    return {"name": name, "expect_regression": expect_regression, "ok": ok, "attempts": attempts}


def build_parser() -> argparse.ArgumentParser:
    """The options; their defaults are what .ci/run uses."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, help="An exported model dir to use instead of the tiny one.")
    parser.add_argument("--cache-dir", type=Path, help="Export cache (default: icpd bench's, ~/.cache/icpd/bench).")
    parser.add_argument("--rounds", type=int, default=20, help="Interleaved rounds per check (default 20).")
    parser.add_argument("--slowdown", type=float, default=0.5,
                        help="Artificial slowdown of check 2 (default 0.5 = +50%%).")
    parser.add_argument("--max-slowdown", type=float, default=0.10, help="Tolerated slowdown (default 0.10).")
    parser.add_argument("--alpha", type=float, default=0.01, help="Significance level (default 0.01).")
    parser.add_argument("--threads", type=int, default=1, help="ORT threads per session (default 1: less jitter).")
    parser.add_argument("--json", type=Path, help="Write the verdicts here.")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.slowdown <= args.max_slowdown:
        parser.error(f"--slowdown {args.slowdown} must exceed --max-slowdown {args.max_slowdown}, "
                     "or check 2 cannot fail")
    from icpd.benchmarks.stats import can_reach, min_rounds, smallest_p_value

    if not 0 < args.alpha < 1:
        parser.error(f"--alpha {args.alpha}: give a significance level in (0, 1), e.g. 0.01")
    if args.rounds < 1 or not can_reach(args.alpha, args.rounds, args.rounds):
        smallest = (f" (the smallest p of {args.rounds} vs {args.rounds} is "
                    f"{smallest_p_value(args.rounds, args.rounds):.3g})")
        parser.error(f"--rounds {args.rounds}: with --alpha {args.alpha} the rank test cannot flag a regression"
                     f"{smallest if args.rounds >= 1 else ''}; use --rounds {min_rounds(args.alpha)} or more")

    t0 = time.perf_counter()
    try:
        from icpd.benchmarks.latency import prepare_model, query_step
        from icpd.runtime.predictor import Predictor

        model = prepare_model("tiny", model_dir=args.model_dir, cache_dir=args.cache_dir,
                              on_step=lambda text: print(text, flush=True))
        reference, candidate = (
            query_step(Predictor.load(model.path, backend="ort", threads=args.threads)) for _ in range(2)
        )
    except (ValueError, ImportError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"model {model.path} ({model.weights}); ready in {time.perf_counter() - t0:.1f} s", flush=True)
    checks = [
        _check("same model twice (must pass)", reference, candidate, False, args),
        _check(f"candidate +{args.slowdown:.0%} (must be flagged)", reference, _slowed(candidate, args.slowdown), True,
               args),
    ]
    ok = all(c["ok"] for c in checks)
    if args.json:
        args.json.write_text(json.dumps({"ok": ok, "checks": checks, "wall_s": time.perf_counter() - t0}, indent=2))
    print(f"latency gate {'behaves' if ok else 'MISBEHAVES'} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
