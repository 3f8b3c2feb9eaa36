"""How soon a caption names the voice speaking, as ``voxlane bench --der`` times it."""

from __future__ import annotations

import json

from bench.diarization import ami_average, der_rows, live_timeline, speaker_shown_waits, timeline
from server.cli.live_client import Received, StreamRecord


def _transcription(t: float, speaker: str, words: list[tuple[float, float]]) -> Received:
    return Received(t, {"type": "transcription", "data": {
        "speaker": speaker, "is_final": False,
        "words": [{"text": "w", "start": a, "end": b, "final": False} for a, b in words]}})


def _diarization(t: float, speaker_id: str, name: str, start: float, end: float,
                 correction: bool = False) -> Received:
    return Received(t, {"type": "diarization", "data": {
        "speaker_id": speaker_id, "speaker": name, "start_time": start, "end_time": end, "correction": correction}})


def test_a_turn_waits_until_its_words_show_under_its_voice():
    # reference: A 0-4 s, B 4-8 s, A 8-12 s (short backchannel of B at 12-12.5 s is left out)
    ref = timeline([(0, 4, "A"), (4, 8, "B"), (8, 12, "A"), (12, 12.5, "B")], 13)
    rec = StreamRecord("t", audio_seconds=13, started=100.0,
                       sent=[(0.1 * k, 100.0 + 0.1 * k) for k in range(1, 131)])
    rec.received = [
        _diarization(101, "s1", "Speaker 1", 0, 4), _diarization(105, "s2", "Speaker 2", 4, 8),
        _diarization(109, "s1", "Speaker 1", 8, 12),
        _transcription(109.5, "Speaker 2", [(7.5, 7.8), (8.1, 8.4)]),  # A's words still under B
        _transcription(110.0, "Speaker 1", [(8.1, 8.4), (8.5, 8.9)]),  # now under A: 2 s after 8.0 was sent
    ]
    live = timeline([(0, 4, "s1"), (4, 8, "s2"), (8, 12, "s1")], 13)
    waits, missed = speaker_shown_waits(rec, ref, live)
    assert missed == 0 and len(waits) == 1 and abs(waits[0] - 2.0) < 1e-6


def test_a_turn_never_shown_under_its_voice_is_counted():
    ref = timeline([(0, 4, "A"), (4, 8, "B"), (8, 12, "A")], 13)
    rec = StreamRecord("t", audio_seconds=13, started=100.0, sent=[(13.0, 113.0)])
    rec.received = [_diarization(101, "s1", "Speaker 1", 0, 4), _diarization(105, "s2", "Speaker 2", 4, 8),
                    _transcription(110.0, "Speaker 2", [(8.1, 8.4)])]
    live = timeline([(0, 4, "s1"), (4, 12, "s2")], 13)
    assert speaker_shown_waits(rec, ref, live) == ([], 1)


def test_without_an_ami_file_there_is_no_ami_average_and_the_json_stays_json():
    row = {"file": "multi/phone.wav", "ref_speakers": 2, "speakers_live": 2, "speakers_offline": 2,
           "der_first": 0.1, "der_live": 0.1, "der_offline": 0.1, "der_segments": 0.1, "corrections": 0,
           "speaker_shown_p50_s": None, "speaker_shown_p95_s": None, "turns_timed": 0, "turns_not_shown": 0}
    result = {"files": [row], "ami_average": ami_average([row])}
    assert result["ami_average"] == {"der_first": None, "der_live": None, "der_offline": None, "der_segments": None}
    json.loads(json.dumps(result, allow_nan=False))
    _, rows = der_rows(result)
    assert [r[0] for r in rows] == ["phone"]
    ami = dict(row, file="multi/ami_x.wav", der_live=0.3)
    assert ami_average([row, ami])["der_live"] == 0.3


def test_live_turns_are_those_told_before_the_stop_and_the_pass_fills_only_what_was_not_told():
    """Told while streaming: s1 0-4 s, s2 4-6 s, then a correction (s2 4-5 s). After the stop the pass tells
    s2 5-9 s as a correction (it starts inside told time) and relabels 0-4 s: the first fills 6-9 s, which
    nothing told, and the relabel of told time is not live."""
    rec = StreamRecord("t", audio_seconds=10, started=100.0, sent=[(10.0, 110.0)])
    rec.stopped = 110.0
    rec.received = [_diarization(103, "s1", "Speaker 1", 0, 4), _diarization(107, "s2", "Speaker 2", 4, 6),
                    _diarization(108, "s2", "Speaker 2", 4, 5, correction=True),
                    _diarization(111, "s2", "Speaker 2", 5, 9, correction=True),
                    _diarization(111, "s3", "Speaker 3", 0, 4, correction=True)]
    live = live_timeline(rec)
    assert [(round(s.start, 2), round(s.end, 2), who) for s, _, who in live.itertracks(yield_label=True)] == [
        (0.0, 4.0, "s1"), (4.0, 9.0, "s2")]
