from asr.batch_report import BatchReport
from asr.pace import SAMPLES, LivePace


def report(seconds: float, *, size: int = 1, live: bool = True, hurried: int = 0, lanes_busy: int = 1) -> BatchReport:
    return BatchReport(size=size, seconds=seconds, live=live, urgent=False, hurried=hurried, waited=0.0,
                       lanes_busy=lanes_busy)


def observed(pace: LivePace, times: int, *reports: BatchReport) -> LivePace:
    """``pace`` after ``times`` rounds of ``reports``."""
    for _ in range(times):
        for r in reports:
            pace.observe(r)
    return pace


def test_full_decodes_within_the_step_keep_reading_in_full():
    assert not observed(LivePace(step_s=0.5), 3 * SAMPLES, report(0.3)).behind


def test_full_decodes_slower_than_the_step_hurry_live_work_for_good():
    pace = observed(LivePace(step_s=0.5), SAMPLES - 1, report(0.8))
    assert not pace.behind  # too few to judge
    assert observed(pace, 1, report(0.8)).behind
    # hurried decodes are quick; they say nothing of a full one
    assert observed(pace, 3 * SAMPLES, report(0.1)).behind


def test_one_slow_decode_does_not_decide():
    # a cold first decode
    assert not observed(LivePace(step_s=0.5), 1, *(report(s) for s in (2.5, 0.3, 0.3, 0.4, 0.3))).behind


def test_only_a_full_live_decode_alone_on_the_machine_is_a_sample():
    pace = observed(LivePace(step_s=0.5), 2 * SAMPLES,
                    report(0.9, hurried=1),  # read the cheaper way
                    report(1.8, size=4),  # a batch
                    report(0.9, lanes_busy=2),  # sharing the cores with another lane
                    report(0.9, live=False))  # an upload
    assert not pace.behind


def test_no_step_never_hurries():
    assert not observed(LivePace(step_s=0.0), 2 * SAMPLES, report(5.0)).behind


def test_a_full_decode_slower_than_the_step_at_warm_up_hurries_from_the_start():
    pace = LivePace(step_s=0.5)
    pace.seed(0.62)
    assert pace.behind


def test_a_quick_warm_up_decode_leaves_the_judgement_to_live_decodes():
    pace = LivePace(step_s=0.5)
    pace.seed(0.3)
    assert not pace.behind
    pace.seed(None)
    assert not pace.behind
    assert observed(pace, SAMPLES, report(0.8)).behind


class _WarmedBackend:
    """What the loop reads of a backend at construction: a full decode it timed while warming."""

    name = "warmed"
    max_batch = 1
    lanes = 1

    def __init__(self, full_decode_seconds: float | None) -> None:
        self.full_decode_seconds = full_decode_seconds

    def transcribe(self, requests):  # pragma: no cover - never called
        raise AssertionError


def test_the_loop_starts_from_the_backends_warm_up_timing():
    from asr.inference import InferenceLoop

    assert InferenceLoop(_WarmedBackend(0.8), step_s=0.5).pace.behind
    assert not InferenceLoop(_WarmedBackend(0.2), step_s=0.5).pace.behind
    assert not InferenceLoop(_WarmedBackend(None), step_s=0.5).pace.behind
    assert not InferenceLoop(_WarmedBackend(0.8), step_s=0.0).pace.behind
