"""Cutting an append's base64 out of its event by position: a real append's key is found however it is spaced,
and the search is bounded, so an event of many ``"audio"`` words is refused without being walked through."""

from __future__ import annotations

from server.transports.realtime_inbound import AUDIO_KEY_TRIES, split_append


def test_an_appends_audio_is_cut_out_by_position():
    text = '{"event_id": "audio", "type": "input_audio_buffer.append",\n  "audio" :\t"QUJD"}'
    rest, start, end = split_append(text)
    assert text[start:end] == "QUJD" and rest == text.replace("QUJD", "")


def test_the_key_is_looked_for_among_the_first_occurrences_only():
    decoys = ",".join(['"audio":0'] * (AUDIO_KEY_TRIES - 1))
    assert split_append("{" + decoys + ',"audio":"QUJD"}') is not None
    decoys = ",".join(['"audio":0'] * AUDIO_KEY_TRIES)
    assert split_append("{" + decoys + ',"audio":"QUJD"}') is None
