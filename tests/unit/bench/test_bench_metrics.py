from __future__ import annotations

from bench.metrics import onset_latencies
from server.cli.live_client import Received, StreamRecord


def _partial(t: float, words: list[float]) -> Received:
    return Received(t, {"type": "transcription", "data": {
        "is_final": False, "segment_id": "s", "text": "", "words": [
            {"text": "w", "start": s, "end": s + 0.3, "final": False} for s in words]}})


def test_an_utterance_is_shown_when_the_first_message_holds_one_of_its_words():
    # audio sent one second at a time: second k was sent at 100 + k
    rec = StreamRecord("t", audio_seconds=10, started=100.0, sent=[(float(k), 100.0 + k) for k in range(1, 11)])
    rec.received = [_partial(102.5, [0.5, 1.0]),  # the first utterance's words only
                    _partial(104.2, [0.5, 1.0, 3.1]),  # still only the first's: 3.1 s is before the second
                    _partial(105.8, [0.5, 1.0, 3.1, 4.9])]  # a word stamped 0.1 s early counts as the second's
    segments = [{"start": 0.4, "end": 3.5, "text": "a"}, {"start": 5.0, "end": 6.0, "text": "b"},
                {"start": 8.0, "end": 9.0, "text": "never shown"}]
    # the first: its audio at 0.4 s went with the first second (101.0); the second's 5.0 s with the fifth (105.0)
    assert [round(x, 2) for x in onset_latencies(rec, segments)] == [1.5, 0.8]
