"""The timing harness, driven by a fake clock so nothing depends on this machine's speed."""

from __future__ import annotations

import time

import pytest

from icpd.benchmarks.timer import (
    END_TO_END,
    StageTimer,
    TimingConfig,
    cuda_peak_bytes,
    measure,
    measure_rounds,
    peak_rss_bytes,
    timed_call_ms,
)

MS = 1_000_000  # ns


class FakeClock:
    """A clock (ns) that only moves when the fake workload says so."""

    def __init__(self) -> None:
        self.now = 0
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.now

    def advance_ms(self, ms: float) -> None:
        self.now += int(ms * MS)


class FakeModel:
    """Counts calls; each call takes ``cost_ms`` of fake time split over three stages."""

    def __init__(self, clock: FakeClock, stages: StageTimer | None = None, cost_ms: float = 10.0) -> None:
        self.clock, self.stages, self.cost_ms = clock, stages, cost_ms
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.stages is None:
            self.clock.advance_ms(self.cost_ms)
            return
        with self.stages.stage("preprocessing"):
            self.clock.advance_ms(0.2 * self.cost_ms)
        with self.stages.stage("encoder"):
            self.clock.advance_ms(0.5 * self.cost_ms)
        with self.stages.stage("matcher"):
            self.clock.advance_ms(0.1 * self.cost_ms)
        with self.stages.stage("matcher"):  # a stage entered twice is summed
            self.clock.advance_ms(0.1 * self.cost_ms)
        self.clock.advance_ms(0.1 * self.cost_ms)  # untimed glue: only in end-to-end


def test_warmup_then_min_iters_and_min_time() -> None:
    clock = FakeClock()
    model = FakeModel(clock, cost_ms=10.0)
    cfg = TimingConfig(warmup_s=0.05, min_iters=3, min_time_s=0.1, max_iters=1000, max_time_s=10)
    res = measure(model, cfg, clock=clock)
    assert res.warmup_iters == 5  # 5 x 10 ms reaches the 50 ms warm-up
    assert res.iters == 10  # min_iters=3 reached first; 10 x 10 ms reaches min_time 100 ms
    assert model.calls == res.warmup_iters + res.iters
    assert res.samples_ms == [10.0] * 10
    assert res.stop_reason == "min_reached"
    assert res.warmup_s == pytest.approx(0.05) and res.measure_s == pytest.approx(0.1)
    assert res.stage_samples_ms == {END_TO_END: [10.0] * 10}


def test_warmup_runs_at_least_once_and_min_iters_dominates() -> None:
    clock = FakeClock()
    model = FakeModel(clock, cost_ms=100.0)
    res = measure(model, TimingConfig(warmup_s=0.0, min_iters=7, min_time_s=0.0), clock=clock)
    assert res.warmup_iters == 1
    assert res.iters == 7 and model.calls == 8


@pytest.mark.parametrize(
    ("cfg", "iters", "reason"),
    [
        (
            TimingConfig(warmup_s=0, min_iters=5, min_time_s=100, max_iters=20, max_time_s=100),
            20,
            "max_iters",
        ),
        (
            TimingConfig(warmup_s=0, min_iters=500, min_time_s=0, max_iters=1000, max_time_s=0.25),
            25,
            "max_time",
        ),
    ],
)
def test_caps_stop_measurement(cfg: TimingConfig, iters: int, reason: str) -> None:
    clock = FakeClock()
    res = measure(FakeModel(clock), cfg, clock=clock)
    assert (res.iters, res.stop_reason) == (iters, reason)


def test_sync_runs_before_every_clock_read() -> None:
    clock = FakeClock()
    events: list[str] = []

    def sync() -> None:
        events.append("sync")

    def tracked_clock() -> int:
        events.append("clock")
        return clock()

    cfg = TimingConfig(warmup_s=0, min_iters=4, min_time_s=0)
    measure(FakeModel(clock), cfg, sync=sync, clock=tracked_clock)
    assert events.count("clock") > 0
    assert events == ["sync", "clock"] * events.count("clock")


def test_stages_recorded_per_measured_iteration_only() -> None:
    clock = FakeClock()
    stages = StageTimer(clock=clock)
    model = FakeModel(clock, stages, cost_ms=10.0)
    cfg = TimingConfig(warmup_s=0.03, min_iters=4, min_time_s=0)
    res = measure(model, cfg, stages=stages, clock=clock)
    assert res.warmup_iters == 3 and res.iters == 4
    s = res.stage_samples_ms
    assert list(s) == ["preprocessing", "encoder", "matcher", END_TO_END]  # in the order they ran
    assert all(len(v) == 4 for v in s.values())  # warm-up iterations were discarded
    assert s["preprocessing"] == pytest.approx([2.0] * 4)
    assert s["encoder"] == pytest.approx([5.0] * 4)
    assert s["matcher"] == pytest.approx([2.0] * 4)
    assert s[END_TO_END] == pytest.approx([10.0] * 4)


def test_stage_seen_late_is_zero_in_earlier_iterations() -> None:
    stages = StageTimer(clock=FakeClock())
    stages.begin_iteration()
    with stages.stage("a"):
        pass
    stages.end_iteration()
    stages.begin_iteration()
    with stages.stage("b"):
        pass
    stages.end_iteration()
    assert stages.samples_ms == {"a": [0.0, 0.0], "b": [0.0, 0.0]}


def test_end_to_end_stage_name_is_reserved() -> None:
    with pytest.raises(ValueError, match="reserved"), StageTimer().stage(END_TO_END):
        pass


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="min_iters"):
        TimingConfig(min_iters=10, max_iters=5)
    with pytest.raises(ValueError, match="max_time_s"):
        TimingConfig(max_time_s=0)


def test_timed_call_and_real_clock_smoke() -> None:
    clock = FakeClock()
    assert timed_call_ms(lambda: clock.advance_ms(3.5), clock=clock) == pytest.approx(3.5)
    res = measure(lambda: None, TimingConfig(warmup_s=0, min_iters=3, min_time_s=0))  # real perf_counter_ns
    assert res.iters == 3 and all(s >= 0 for s in res.samples_ms)
    assert res.gpu_samples_ms is None and res.peak_cuda_bytes is None


def test_memory_peaks() -> None:
    rss = peak_rss_bytes()
    assert rss is None or rss > 1_000_000  # a Python process holds more than 1 MB
    assert cuda_peak_bytes(None) is None and cuda_peak_bytes("cpu") is None


def test_timer_module_uses_perf_counter_not_time_time() -> None:
    import inspect

    from icpd.benchmarks import timer

    source = inspect.getsource(timer)
    assert "time.time()" not in source.replace("``time.time()``", "")
    assert measure.__kwdefaults__["clock"] is time.perf_counter_ns


@pytest.mark.gpu
def test_cuda_events_path() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device: torch.cuda.is_available() is False")
    x = torch.randn(1024, 1024, device="cuda")
    res = measure(
        lambda: x @ x,
        TimingConfig(warmup_s=0.1, min_iters=5, min_time_s=0),
        sync=torch.cuda.synchronize,
        device="cuda",
        cuda_events=True,
    )
    assert res.gpu_samples_ms is not None and len(res.gpu_samples_ms) == res.iters
    assert all(g > 0 for g in res.gpu_samples_ms)
    assert res.peak_cuda_bytes is not None and res.peak_cuda_bytes >= x.numel() * 4


def test_measure_rounds_interleaves_and_keeps_each_functions_stages_apart() -> None:
    clock = FakeClock()
    order: list[str] = []
    timers = [StageTimer(clock=clock), None]
    slow = FakeModel(clock, timers[0], cost_ms=10.0)

    def a() -> None:
        order.append("a")
        slow()

    def b() -> None:
        order.append("b")
        clock.advance_ms(3.0)

    res = measure_rounds([a, b], 4, warmup_s=0.025, stages=timers, clock=clock, seed=1)
    # warm-up: a until 25 ms of fake time have passed (3 calls), then b (9 calls), untimed
    assert (res[0].warmup_iters, res[1].warmup_iters) == (3, 9)
    timed = order[12:]
    # one of each per round
    assert len(timed) == 8 and all(sorted(timed[i:i + 2]) == ["a", "b"] for i in range(0, 8, 2))
    assert len(set(zip(timed[0::2], timed[1::2]))) == 2  # the order within a round varies (seeded)
    assert res[0].samples_ms == [10.0] * 4 and res[1].samples_ms == [3.0] * 4
    assert res[0].stage_samples_ms["encoder"] == [5.0] * 4 and res[0].stage_samples_ms["matcher"] == [2.0] * 4
    assert res[0].stage_samples_ms[END_TO_END] == [10.0] * 4 and set(res[1].stage_samples_ms) == {END_TO_END}
    assert res[0].stop_reason == "rounds" and res[0].measure_s == pytest.approx(0.04)
    with pytest.raises(ValueError, match="rounds"):
        measure_rounds([a], 0)
    with pytest.raises(ValueError, match="stages"):
        measure_rounds([a, b], 1, stages=[None])
