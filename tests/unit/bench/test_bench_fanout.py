"""``voxlane bench --fanout``'s figures, from recorded arrivals (no servers): the B hop of each final, word commit
and message, each node's latency from the audio being sent, and what B never heard."""

from __future__ import annotations

from bench.fanout import fanout_figures, fanout_rows
from server.cli.live_client import Received, StreamRecord


def _msg(seg: str, final: bool, words: list[tuple[str, float, float, bool]]) -> dict:
    return {"type": "transcription", "data": {
        "segment_id": seg, "is_final": final, "text": " ".join(w[0] for w in words), "start": words[0][1],
        "end": words[-1][2], "words": [{"text": t, "start": s, "end": e, "final": f} for t, s, e, f in words]}}


def test_hops_latencies_and_losses():
    rec = StreamRecord("t", audio_seconds=4.0, started=100.0, sent=[(1.0, 101.0), (2.0, 102.0), (3.0, 103.0)])
    joined = {"type": "status", "data": {"status": "initializing", "participant_id": None}}
    partial = _msg("s1", False, [("Hello", 0.2, 0.6, True), ("there", 0.7, 1.0, False)])
    final = _msg("s1", True, [("Hello", 0.2, 0.6, True), ("there", 0.7, 1.0, True)])
    late = _msg("s2", True, [("Bye", 2.1, 2.9, True)])
    on_a = [Received(100.0, joined), Received(101.5, partial), Received(102.0, final), Received(103.2, late)]
    on_b = [Received(100.1, joined), Received(101.503, partial), Received(102.010, final)]
    f = fanout_figures(rec, on_a, on_b)
    assert f["final"]["count_a"] == 2 and f["final"]["missing_on_b"] == 1
    assert abs(f["final"]["hop"]["max"] - 0.010) < 1e-9
    assert abs(f["final"]["latency_a"]["p50"] - 1.0) < 1e-9  # "there" ends at 1.0 s, sent at 101.0
    assert f["commit"]["count_a"] == 3 and abs(f["commit"]["hop"]["p50"] - 0.0065) < 1e-9
    assert f["message"]["count_b"] == 2 and not f["same_order"]
    cols, rows = fanout_rows(f)
    assert cols[0] == "event" and rows[0][:3] == ["segment final", "2", "1"] and rows[0][-1] == "10.0"
