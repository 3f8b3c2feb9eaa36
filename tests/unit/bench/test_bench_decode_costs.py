"""``voxlane bench --decode-costs``: the grid it times, the replay cost it fits and the table it prints (a stand-in
backend: what a decode costs is the benchmark's own output, not a test's)."""

from __future__ import annotations

import numpy as np

from asr.backends import DecodeRequest, DecodeResult
from bench.decode_costs import cost_rows, measure, replay_cost, windows_of


class Recording:
    name, max_batch, lanes = "recording", 8, 1

    def __init__(self) -> None:
        self.calls: list[list[DecodeRequest]] = []

    def transcribe(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        self.calls.append(requests)
        return [DecodeResult() for _ in requests]

    def warm(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_every_reading_window_and_batch_is_timed_on_different_speech():
    speech = np.arange(20 * 16000, dtype=np.float32)
    backend = Recording()
    rows = measure(backend, speech, [2.0, 5.0], [1, 4], repeats=2)
    assert [(r["hurried"], r["window_s"], r["batch"]) for r in rows] == [
        (h, w, b) for h in (True, False) for w in (2.0, 5.0) for b in (1, 4)]
    assert len(backend.calls) == 8 * 3  # one untimed call for each figure, then the timed ones
    batch = backend.calls[3]  # hurried, 2 s windows, four of them
    assert [len(r.audio) for r in batch] == [32000] * 4 and all(r.hurried and r.prompt for r in batch)
    assert len({float(r.audio[0]) for r in batch}) == 4
    # both figures are rounded to 4 places from the same median: they agree to that precision
    assert all(abs(r["per_window_s"] - r["median_s"] / r["batch"]) <= 1e-4 for r in rows)
    # windows wrap round a short file instead of running off its end
    assert all(len(w) == 16000 * 15 for w in windows_of(speech, 15.0, 8))


def test_the_replay_cost_is_the_line_through_the_single_full_decodes():
    rows = [{"hurried": False, "window_s": s, "batch": 1, "median_s": 0.3 + 0.015 * s} for s in (2, 5, 10, 20)]
    rows += [{"hurried": True, "window_s": 2, "batch": 1, "median_s": 9.0},  # neither hurried nor batched count
             {"hurried": False, "window_s": 2, "batch": 4, "median_s": 9.0}]
    assert replay_cost(rows) == (0.3, 0.015)
    assert replay_cost(rows[:1]) is None


def test_the_table_has_a_column_per_batch_and_a_row_per_reading_and_window():
    rows = [{"hurried": h, "window_s": w, "batch": b, "median_s": 0.1 * b + w / 100}
            for h in (True, False) for w in (2.0, 5.0) for b in (1, 8)]
    cols, table = cost_rows({"rows": rows})
    assert cols == ["reading", "window s", "batch 1 s", "batch 8 s"]
    assert table[0] == ["hurried", "2", "0.120", "0.820"]
    assert [r[:2] for r in table] == [["hurried", "2"], ["hurried", "5"], ["full", "2"], ["full", "5"]]
