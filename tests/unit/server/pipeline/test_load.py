"""The closed loop on a known load: the monitor reads plain stream records, an estimator fed decode and commit
figures directly, and a loop delay given outright, on a clock the test moves; each rule is judged on the numbers
it reads."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from asr.batch_report import BatchReport
from asr.capacity import CapacityEstimator
from server.pipeline.load import SETTLE_S, SHED_AFTER_S, UNSHED_AFTER_S, LoadMonitor


@dataclass
class _Stream:
    started_at: float
    lag_seconds: float = 0.5
    paused: bool = False
    finished: bool = False


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Delay:
    def __init__(self, p99: float | None = 0.002) -> None:
        self.p99 = p99
        self.asked: list[float | None] = []  # the spans the monitor asked about

    def percentile(self, q: float, within_s: float | None = None) -> float | None:
        self.asked.append(within_s)
        return self.p99


def _setup(decode_s: float = 0.25, streams: int = 0, delay: float | None = 0.002, calibration: float | None = None):
    clock = _Clock()
    estimator = CapacityEstimator(clock=clock)
    estimator.seed(calibration)
    for _ in range(8):
        estimator.observe(BatchReport(size=1, seconds=decode_s, live=True, urgent=False, hurried=1, waited=0.0,
                                      lanes_busy=2))
    engine = SimpleNamespace(capacity=estimator, slots=2, hurry_all=False, step_scale=1.0)
    speakers = SimpleNamespace(window_stride=1)
    live = [_Stream(clock.now) for _ in range(streams)]
    monitor = LoadMonitor(target_s=2.0, streams=lambda: live, engine=engine,  # type: ignore[arg-type]
                          loop_delay=_Delay(delay), speakers=speakers, clock=clock)  # type: ignore[arg-type]
    return monitor, live, estimator, engine, speakers, clock


def _commits(estimator: CapacityEstimator, *delays: float) -> None:
    for d in delays:
        estimator.observe_commit(d)


def _run(monitor: LoadMonitor, clock: _Clock, seconds: float) -> None:
    for _ in range(int(seconds)):
        clock.now += 1.0
        monitor.sample()


def test_a_burst_is_admitted_up_to_the_calibrated_estimate_and_no_further() -> None:
    """A 0.7 s calibration on two slots, 1.4 decodes a commit per slot's worth: floor(2 x 2 / 0.98) = 4 streams
    from the start, though a burst's first live decodes (short windows, 0.06 s) would read as forty."""
    monitor, live, *_ = _setup(decode_s=0.06, calibration=0.7)
    assert monitor.allowed() == 4
    for n in range(4):
        assert monitor.refusal(n, starting=n) is None
    refusal = monitor.refusal(4, starting=4)
    assert refusal is not None and refusal.reason == "capacity"


def test_a_backend_with_no_calibration_is_sized_on_its_measured_decodes() -> None:
    monitor, *_ = _setup(decode_s=0.4)
    assert monitor.allowed() == 7  # floor(2 x 2 / (1.4 x 0.4))


def test_settled_streams_served_well_are_proven_and_one_more_is_a_probe() -> None:
    monitor, live, estimator, _, _, clock = _setup(decode_s=0.3, streams=4, calibration=0.7)
    _commits(estimator, 0.8, 0.9, 0.9)
    _run(monitor, clock, SETTLE_S + 1)
    assert monitor.health.verdict == "ok" and monitor.proven == 4
    assert monitor.refusal(4, starting=0) is None, "settled and served well: one more"
    live.append(_Stream(clock.now))
    assert monitor.refusal(5, starting=1).reason == "capacity", "not while the newest settles"


def test_transcripts_running_behind_stop_the_probes_before_the_commits_slow() -> None:
    """Past the knee a pause's reading still goes first, so commits stay quick while refreshes come rarer and
    every transcript runs further behind its audio: no probe then, though the commits look well."""
    monitor, live, estimator, _, _, clock = _setup(decode_s=0.3, streams=4, calibration=0.7)
    _commits(estimator, 0.8, 0.9, 0.9)
    for s in live:
        s.lag_seconds = 1.6
    live[0].lag_seconds = 0.3  # one stream in a pause does not make the node look idle
    _run(monitor, clock, SETTLE_S + 1)
    assert monitor.health.verdict == "ok" and abs(monitor.health.lag_typical - 1.6) < 1e-9
    refusal = monitor.refusal(4, starting=0)
    assert refusal is not None and refusal.reason == "full" and refusal.details["lag_typical_s"] == 1.6
    assert monitor.refusal(3, starting=0) is None, "up to what is proven the lag does not refuse"
    for s in live:
        s.lag_seconds = 1.2
    _run(monitor, clock, 11)
    assert monitor.refusal(4, starting=0) is None


def test_words_made_final_close_to_the_target_stop_admission() -> None:
    monitor, live, estimator, _, _, clock = _setup(decode_s=0.25, streams=4)
    _commits(estimator, 1.7, 1.9, 1.9)  # p95 1.9 s: past 0.9 of 2 s
    _run(monitor, clock, SETTLE_S + 1)
    assert monitor.health.verdict == "full"
    refusal = monitor.refusal(4, starting=0)
    assert refusal is not None and refusal.reason == "full" and refusal.details["commit_p90_s"] == 1.9


def test_a_growing_lag_is_overload_and_work_is_shed_in_order_then_restored() -> None:
    monitor, live, estimator, engine, speakers, clock = _setup(decode_s=0.25, streams=6)
    _commits(estimator, 0.9, 0.9, 0.9)
    for s in live:
        s.started_at -= 60
    for second in range(20):  # one stream falls behind by 0.3 s a second: its lows rise as fast as its highs
        live[0].lag_seconds = 1.0 + 0.3 * second
        clock.now += 1.0
        monitor.sample()
    assert monitor.health.verdict == "overloaded" and monitor.overloaded_at == 6
    assert abs(monitor.health.lag_growth - 0.3) < 0.05
    assert monitor.refusal(6, starting=0).reason == "overloaded"
    assert monitor.level >= 1 and engine.hurry_all, "readings hurried first"
    for _ in range(int(2 * SHED_AFTER_S) + 2):
        live[0].lag_seconds += 0.3
        clock.now += 1.0
        monitor.sample()
    assert monitor.shedding == ["hurried readings", "slower partials", "fewer speaker windows"]
    assert engine.step_scale == 2.0 and speakers.window_stride == 2
    assert monitor.allowed() == 5, "the node is not sized past what overloaded it"
    live[0].lag_seconds = 0.5
    _run(monitor, clock, 3 * UNSHED_AFTER_S + 12)
    assert monitor.health.verdict == "ok" and monitor.level == 0
    assert not engine.hurry_all and engine.step_scale == 1.0 and speakers.window_stride == 1


def test_a_lag_that_rises_through_each_sentence_and_falls_at_its_pause_is_no_overload() -> None:
    monitor, live, estimator, *_, clock = _setup(decode_s=0.25, streams=4)
    _commits(estimator, 0.9, 0.9, 0.9)
    for second in range(60):  # 0.5 s at each pause, 3.5 s at the end of every 7 s sentence
        for s in live:
            s.lag_seconds = 0.5 + 0.5 * (second % 7)
        clock.now += 1.0
        monitor.sample()
    assert monitor.health.verdict == "ok" and monitor.health.lag_growth == 0.0 and monitor.level == 0


def test_a_late_event_loop_stops_admission() -> None:
    monitor, live, estimator, *_, clock = _setup(decode_s=0.25, streams=4, delay=0.08)
    _run(monitor, clock, SETTLE_S + 1)
    assert monitor.health.verdict == "full"
    assert monitor.refusal(4, starting=0).reason == "full"


def test_the_loop_is_judged_only_while_streams_are_live() -> None:
    """A fresh server's warm-up runs the loop late before any stream: the first burst is not judged by it."""
    monitor, live, estimator, *_, clock = _setup(delay=0.14)
    delay = monitor._loop_delay
    _run(monitor, clock, 3)
    assert monitor.health.loop_p99 is None and monitor.health.verdict == "ok"
    live.extend(_Stream(clock.now - 2.0) for _ in range(4))
    _run(monitor, clock, 1)
    assert delay.asked[-1] == 3.0, "since the first stream began"  # type: ignore[attr-defined]
    _run(monitor, clock, 30)
    assert delay.asked[-1] == 10.0, "and at most the lag window"  # type: ignore[attr-defined]
    live.clear()
    _run(monitor, clock, 1)
    live.append(_Stream(clock.now))
    _run(monitor, clock, 1)
    assert delay.asked[-1] == 1.0, "anew once the node was idle"  # type: ignore[attr-defined]


def test_two_streams_per_decode_slot_are_always_admitted() -> None:
    """Two slots: the first four streams come in on a node that is overloaded and shedding, the fifth does not."""
    monitor, live, estimator, *_, clock = _setup(decode_s=5.0, streams=3, delay=1.0)
    _run(monitor, clock, SETTLE_S + SHED_AFTER_S + 2)
    assert monitor.health.verdict == "overloaded" and monitor.level
    assert [monitor.refusal(n, starting=0) for n in range(4)] == [None] * 4
    assert monitor.refusal(4, starting=0).reason == "overloaded"
