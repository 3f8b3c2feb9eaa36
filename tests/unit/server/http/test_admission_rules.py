"""Admission's measured rules on a known load: the loop's estimator is fed decode and commit-delay figures
directly, and the streams are plain records, so each rule is judged on the numbers it reads."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace

from asr.capacity import CapacityEstimator
from asr.inference import BatchReport
from server.http.admission import SETTLE_S, Admission
from server.settings import Settings


@dataclass
class _Stream:
    started_at: float
    finished: bool = False
    paused: bool = False
    caller: None = None
    session: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(lag_seconds=0.0))


def _admission(decode_s: float, commit_delays: tuple[float, ...], settled: int, young: int = 0,
               opening: int = 0) -> Admission:
    estimator = CapacityEstimator()
    for _ in range(8):
        estimator.observe(BatchReport(size=1, seconds=decode_s, live=True, urgent=False, hurried=1, waited=0.0,
                                      lanes_busy=2))
    for d in commit_delays:
        estimator.observe_commit(d)
    now = time.monotonic()
    streams = [_Stream(now - SETTLE_S - 5) for _ in range(settled)] + [_Stream(now) for _ in range(young)]
    loop = SimpleNamespace(lanes=2, backend=SimpleNamespace(max_batch=1), capacity=estimator)
    services = SimpleNamespace(settings=Settings(), loop=loop, live=SimpleNamespace(publishers=lambda: streams))
    admission = Admission(services)  # type: ignore[arg-type]
    admission._opening.update(f"opening-{i}" for i in range(opening))
    return admission


def test_a_burst_is_sized_by_throughput_not_by_delays_measured_before_it() -> None:
    """Eight streams started after four that made words final 1.2 s after their audio: the delays were
    measured without the burst, so they are not scaled for it (they refused half of a burst the box serves);
    the decode times size it instead."""
    assert _admission(0.25, (1.0, 1.1, 1.2), settled=4, young=4).check_live() is None
    assert _admission(0.25, (1.0, 1.1, 1.2), settled=4, opening=4).check_live() is None


def test_streams_still_opening_count_against_the_throughput_rule() -> None:
    """With 0.5 s decodes on two slots, eight streams fit a 2 s target: four open and four opening leave no
    room, though only four publishers are registered."""
    assert _admission(0.5, (), settled=4, opening=3).check_live() is None
    refusal = _admission(0.5, (), settled=4, opening=4).check_live()
    assert refusal is not None and refusal.reason == "capacity"


def test_a_settled_load_is_judged_by_its_commit_delays() -> None:
    """Eight settled streams whose words become final 1.4 s after their audio: one more predicts 1.4 x 9/8 =
    1.6 s, past three quarters of the 2 s target; at 1.2 s it is 1.35 s, admitted."""
    refusal = _admission(0.25, (1.3, 1.4, 1.4), settled=8).check_live()
    assert refusal is not None and refusal.reason == "latency"
    assert refusal.details["predicted_commit_s"] == round(1.4 * 9 / 8, 3)
    assert _admission(0.25, (1.1, 1.2, 1.2), settled=8).check_live() is None
