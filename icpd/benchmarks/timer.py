"""Timing harness: time-based warm-up, bounded measurement, named stages, peak memory.

Clocks are ``time.perf_counter_ns`` (monotonic, ns resolution), never ``time.time()``. A
``sync`` callable (e.g. ``torch.cuda.synchronize``) runs before every clock read so queued
device work is inside the interval it belongs to. Samples are kept in milliseconds.

Stages within one iteration::

    stages = StageTimer(sync=sync)

    def step():
        with stages.stage("preprocessing"):
            x = prep(image)
        with stages.stage("encoder"):
            f = encoder(x)

    result = measure(step, stages=stages, sync=sync)
    result.stage_samples_ms["encoder"]  # one entry per measured iteration
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "END_TO_END",
    "QUICK",
    "Clock",
    "StageTimer",
    "TimingConfig",
    "TimingResult",
    "cuda_peak_bytes",
    "measure",
    "measure_rounds",
    "peak_rss_bytes",
    "timed_call_ms",
]

END_TO_END = "end_to_end"  # stage name of a whole iteration
NS_PER_MS = 1_000_000

Clock = Callable[[], int]  # returns nanoseconds, like time.perf_counter_ns


def _read(clock: Clock, sync: Callable[[], Any] | None) -> int:
    """Read the clock after synchronising the device, so pending work is counted."""
    if sync is not None:
        sync()
    return clock()


def timed_call_ms(
    fn: Callable[[], Any], sync: Callable[[], Any] | None = None, clock: Clock = time.perf_counter_ns
) -> float:
    """Call ``fn()`` once and return its latency in ms (sync before both clock reads)."""
    t0 = _read(clock, sync)
    fn()
    return (_read(clock, sync) - t0) / NS_PER_MS


class StageTimer:
    """Accumulates named stage times inside the iterations that :func:`measure` drives.

    A stage entered twice in one iteration is summed. Stages timed outside a measured
    iteration (e.g. during warm-up) are discarded.
    """

    def __init__(self, sync: Callable[[], Any] | None = None, clock: Clock = time.perf_counter_ns) -> None:
        self._sync = sync
        self._clock = clock
        self._current: dict[str, int] | None = None  # ns per stage in the running iteration
        self._samples: dict[str, list[float]] = {}  # ms per stage, one per finished iteration
        self._iters = 0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` body as stage ``name`` of the current iteration."""
        if name == END_TO_END:
            raise ValueError(f"stage name {END_TO_END!r} is reserved for the whole iteration")
        t0 = _read(self._clock, self._sync)
        try:
            yield
        finally:
            elapsed = _read(self._clock, self._sync) - t0
            if self._current is not None:
                self._current[name] = self._current.get(name, 0) + elapsed

    def begin_iteration(self) -> None:
        """Start recording a measured iteration."""
        self._current = {}

    def end_iteration(self) -> None:
        """Close the running iteration; a stage missing from it is recorded as 0 ms."""
        if self._current is None:
            return
        for name in self._current:  # insertion order: stages stay in the order they ran
            if name not in self._samples:
                self._samples[name] = [0.0] * self._iters  # first seen late: earlier iterations had none
        for name, samples in self._samples.items():
            samples.append(self._current.get(name, 0) / NS_PER_MS)
        self._iters += 1
        self._current = None

    def discard_iteration(self) -> None:
        """Drop the running iteration (warm-up)."""
        self._current = None

    @property
    def samples_ms(self) -> dict[str, list[float]]:
        """Per-stage latencies in ms, each list as long as the number of measured iterations."""
        return {name: list(values) for name, values in self._samples.items()}


@dataclass(frozen=True)
class TimingConfig:
    """When to stop warming up and measuring."""

    warmup_s: float = 1.0  # warm up for at least this long (and at least one call)
    min_iters: int = 10  # measure at least this many iterations ...
    min_time_s: float = 1.0  # ... and for at least this long
    max_iters: int = 10_000  # stop here even if min_time_s is not reached
    max_time_s: float = 60.0  # stop here even if min_iters is not reached

    def __post_init__(self) -> None:
        if self.min_iters < 1 or self.max_iters < self.min_iters:
            raise ValueError(
                f"need 1 <= min_iters <= max_iters, got min_iters={self.min_iters}, "
                f"max_iters={self.max_iters}"
            )
        if self.warmup_s < 0 or self.min_time_s < 0 or self.max_time_s <= 0:
            raise ValueError(
                f"times must be >= 0 (max_time_s > 0), got warmup_s={self.warmup_s}, "
                f"min_time_s={self.min_time_s}, max_time_s={self.max_time_s}"
            )


QUICK = TimingConfig(warmup_s=0.2, min_iters=10, min_time_s=0.5, max_iters=200, max_time_s=10.0)


@dataclass
class TimingResult:
    """What :func:`measure` observed. Latencies in ms, memory in bytes."""

    samples_ms: list[float]  # host latency per measured iteration (end to end)
    stage_samples_ms: dict[str, list[float]] = field(default_factory=dict)  # includes END_TO_END
    gpu_samples_ms: list[float] | None = None  # CUDA-event time per iteration, when requested
    warmup_iters: int = 0
    warmup_s: float = 0.0
    measure_s: float = 0.0
    stop_reason: str = ""  # "min_reached", "max_iters", "max_time" or "rounds" (measure_rounds)
    peak_rss_bytes: int | None = None  # process peak resident set size
    peak_cuda_bytes: int | None = None  # torch.cuda.max_memory_allocated, when on CUDA

    @property
    def iters(self) -> int:
        """Number of measured iterations."""
        return len(self.samples_ms)


def peak_rss_bytes() -> int | None:
    """Peak resident set size of this process in bytes, or None where unavailable."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # Linux reports KiB


def _is_cuda(device: Any) -> bool:
    return device is not None and str(device).startswith("cuda")


def cuda_peak_bytes(device: Any) -> int | None:
    """``torch.cuda.max_memory_allocated(device)`` for a CUDA device, else None."""
    if not _is_cuda(device):
        return None
    import torch

    return int(torch.cuda.max_memory_allocated(device))


def _warm_up(fn: Callable[[], Any], seconds: float, stages: StageTimer | None, sync: Callable[[], Any] | None,
             clock: Clock) -> tuple[int, int, int]:
    """Call ``fn`` untimed for at least ``seconds`` (and at least once): (calls, end ns, start ns)."""
    start = now = _read(clock, sync)
    calls = 0
    while calls == 0 or now - start < seconds * 1e9:
        if stages is not None:
            stages.begin_iteration()
        fn()
        if stages is not None:
            stages.discard_iteration()
        calls += 1
        now = _read(clock, sync)
    return calls, now, start


def measure_rounds(
    fns: Sequence[Callable[[], Any]],
    rounds: int,
    *,
    warmup_s: float = 1.0,
    stages: Sequence[StageTimer | None] | None = None,
    sync: Callable[[], Any] | None = None,
    seed: int = 0,
    clock: Clock = time.perf_counter_ns,
    on_round: Callable[[int, int], Any] | None = None,
) -> list[TimingResult]:
    """Time several functions interleaved: each round calls every one once, in a seeded random order.

    Measuring one function after the other lets a drift in the machine's speed (other tenants,
    thermal limits) land on one of them only, and on the ratio of their medians with it;
    interleaving exposes all of them to the same drifts (as ``ab.run_ab`` does for two
    models). Each function is first warmed up for ``warmup_s`` (at least one call).
    ``stages[i]`` (optional) collects the stage times of ``fns[i]``. No CUDA-event times here.
    ``on_round(done, rounds)`` is called after each round (progress of a long run).
    """
    if rounds < 1 or not fns:
        raise ValueError(f"need rounds >= 1 and at least one function; got rounds={rounds}, {len(fns)} functions")
    timers = list(stages) if stages is not None else [None] * len(fns)
    if len(timers) != len(fns):
        raise ValueError(f"stages: {len(timers)} timers for {len(fns)} functions")
    warm = [_warm_up(fn, warmup_s, timer, sync, clock) for fn, timer in zip(fns, timers)]
    rng = random.Random(seed)
    samples: list[list[float]] = [[] for _ in fns]
    for r in range(rounds):
        order = list(range(len(fns)))
        rng.shuffle(order)
        for i in order:
            if timers[i] is not None:
                timers[i].begin_iteration()
            t0 = _read(clock, sync)
            fns[i]()
            t1 = _read(clock, sync)
            if timers[i] is not None:
                timers[i].end_iteration()
            samples[i].append((t1 - t0) / NS_PER_MS)
        if on_round is not None:
            on_round(r + 1, rounds)
    out = []
    for i, timer in enumerate(timers):
        stage_samples = timer.samples_ms if timer is not None else {}
        stage_samples[END_TO_END] = list(samples[i])
        out.append(TimingResult(samples_ms=samples[i], stage_samples_ms=stage_samples, warmup_iters=warm[i][0],
                                warmup_s=(warm[i][1] - warm[i][2]) / 1e9, measure_s=sum(samples[i]) / 1e3,
                                stop_reason="rounds", peak_rss_bytes=peak_rss_bytes()))
    return out


def _cuda_event_timer(device: Any) -> Callable[[Callable[[], Any]], float]:
    """Return ``run(fn) -> ms`` timing ``fn`` with CUDA events on ``device``."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("cuda_events=True needs a CUDA device, but torch.cuda.is_available() is False")
    stream = torch.cuda.current_stream(device)

    def run(fn: Callable[[], Any]) -> float:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record(stream)
        fn()
        end.record(stream)
        end.synchronize()
        return float(start.elapsed_time(end))

    return run


def measure(
    fn: Callable[[], Any],
    config: TimingConfig = TimingConfig(),
    *,
    sync: Callable[[], Any] | None = None,
    stages: StageTimer | None = None,
    device: Any = None,
    cuda_events: bool = False,
    clock: Clock = time.perf_counter_ns,
) -> TimingResult:
    """Warm up, then time ``fn()`` repeatedly; see :class:`TimingConfig` for the stop rule.

    Measurement stops as soon as ``min_iters`` and ``min_time_s`` are both reached, or at
    ``max_iters`` / ``max_time_s``, whichever comes first. With ``cuda_events=True`` (needs
    torch with CUDA) each iteration is also timed on the device stream (``gpu_samples_ms``),
    like trtexec's GPU compute time next to host latency. When ``device`` is CUDA, its peak
    allocated memory is reset before warm-up and reported.
    """
    event_timer = _cuda_event_timer(device) if cuda_events else None
    if _is_cuda(device):
        import torch

        torch.cuda.reset_peak_memory_stats(device)

    def call() -> float | None:
        if event_timer is None:
            fn()
            return None
        return event_timer(fn)

    warmup_iters, now, warm_start = _warm_up(call, config.warmup_s, stages, sync, clock)

    samples: list[float] = []
    gpu: list[float] = []
    start = now
    stop_reason = ""
    while not stop_reason:
        if stages is not None:
            stages.begin_iteration()
        t0 = _read(clock, sync)
        gpu_ms = call()
        t1 = _read(clock, sync)
        if stages is not None:
            stages.end_iteration()
        samples.append((t1 - t0) / NS_PER_MS)
        if gpu_ms is not None:
            gpu.append(gpu_ms)
        elapsed_s = (t1 - start) / 1e9
        if len(samples) >= config.min_iters and elapsed_s >= config.min_time_s:
            stop_reason = "min_reached"
        elif len(samples) >= config.max_iters:
            stop_reason = "max_iters"
        elif elapsed_s >= config.max_time_s:
            stop_reason = "max_time"

    stage_samples = stages.samples_ms if stages is not None else {}
    stage_samples[END_TO_END] = list(samples)
    return TimingResult(
        samples_ms=samples,
        stage_samples_ms=stage_samples,
        gpu_samples_ms=gpu if event_timer is not None else None,
        warmup_iters=warmup_iters,
        warmup_s=(start - warm_start) / 1e9,
        measure_s=(t1 - start) / 1e9,
        stop_reason=stop_reason,
        peak_rss_bytes=peak_rss_bytes(),
        peak_cuda_bytes=cuda_peak_bytes(device),
    )
