"""A stream on NVIDIA Riva: voxlane's recognizer and session against a local stand-in that speaks Riva's gRPC
protocol from the package's own stubs (tests/riva_support.py; a real Riva server needs an NVIDIA GPU), fed a
real recording whose reference utterances the stand-in reads back.

What a subscriber gets must follow the rules of the Whisper path: partials, then one final per segment with word
timings in transcript time; a call that ends mid-utterance or fails loses no word it showed, and the audio after
a failure is read by a new call on the same timeline.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from asr.backends.riva import RivaConfig, RivaRecognizer
from asr.events import FailureEvent, SegmentEvent
from asr.recognizer_session import RecognizerSession
from asr.session import StreamConfig
from asr.vad import SileroModel
from media import iter_decode_file
from tests.riva_support import RivaStandIn, ScriptedRiva, load_references, pcm16, script_from_reference

NAME = "single/ljspeech_LJ001-0017_0032.wav"
SECONDS = 40.0  # the first utterances are enough
OFFSET = 100.0  # the stream starts 100 s into its transcript


@pytest.fixture(scope="module")
def reference(audio_dir: Path) -> tuple[np.ndarray, list]:
    refs = load_references(audio_dir)
    audio = np.concatenate(list(iter_decode_file(audio_dir / NAME, chunk_seconds=1.0)))[: int(SECONDS * 16000)]
    script = [u for u in script_from_reference(refs, NAME) if u.end + 1.0 < SECONDS]
    return audio, script


async def _run(servicer: ScriptedRiva, audio: np.ndarray, *, live: bool = True, turns: tuple[float, ...] = (),
               config: RivaConfig | None = None) -> tuple[list[SegmentEvent], list[FailureEvent], RecognizerSession]:
    events: list[SegmentEvent] = []
    failures: list[FailureEvent] = []

    async def emit(event: SegmentEvent) -> None:
        events.append(event)

    async def report(event: FailureEvent) -> None:
        failures.append(event)

    with RivaStandIn(servicer) as server:
        recognizer = RivaRecognizer(replace(config or RivaConfig(), uri=server.uri))
        session = RecognizerSession(recognizer=recognizer, vad_model=SileroModel(), emit=emit, report=report,
                                    config=StreamConfig(live=live), offset=OFFSET, participant_id=7)
        session.start()
        for t in turns:
            session.turn_at(t)
        for i in range(0, len(audio), 3200):  # 0.2 s blocks, as fast as the session takes them
            session.feed(audio[i:i + 3200])
            await session.wait_backlog(4)
        await session.finish(flush_timeout=30)
        await recognizer.close()
    return events, failures, session


def _finals(events: list[SegmentEvent]) -> list[SegmentEvent]:
    return [e for e in events if e.is_final]


async def test_utterances_become_partials_then_one_final_each_in_transcript_time(reference) -> None:
    audio, script = reference
    servicer = ScriptedRiva(script, pcm16(audio))
    config = RivaConfig(uri="", api_key="k-123", metadata=(("function-id", "f-9"),), model="parakeet-ctc",
                        chunk_ms=160)
    events, failures, session = await _run(servicer, audio, config=config)
    finals = _finals(events)
    assert not failures and session.error is None
    assert [e.text for e in finals] == [" ".join(w for w, _, _ in u.words) for u in script]
    assert len({e.segment_id for e in finals}) == len(finals) == session.segments_emitted
    for event, utt in zip(finals, script, strict=True):
        assert [w.text for w in event.words] == [w for w, _, _ in utt.words]
        assert all(w.final for w in event.words) and event.participant_id == 7
        assert event.start == pytest.approx(OFFSET + utt.words[0][1], abs=0.002)
        assert event.end == pytest.approx(OFFSET + utt.end, abs=0.002)
        partials = [e for e in events if e.segment_id == event.segment_id and not e.is_final]
        assert partials, "no partial before the final"
        assert events.index(partials[-1]) < events.index(event)
        assert not any(w.final for p in partials for w in p.words)
        assert event.text.startswith(partials[-1].text)  # a partial's words are the final's first ones
    call = servicer.calls[0]
    assert call.config.interim_results and call.config.config.sample_rate_hertz == 16000
    assert call.config.config.language_code == "en-US" and call.config.config.model == "parakeet-ctc"
    assert call.config.config.enable_word_time_offsets
    assert call.metadata.get("authorization") == "Bearer k-123" and call.metadata.get("function-id") == "f-9"
    assert len(servicer.calls) == 1


async def test_a_recorded_file_asks_for_finals_only(reference) -> None:
    audio, script = reference
    servicer = ScriptedRiva(script, pcm16(audio))
    events, _, _ = await _run(servicer, audio, live=False)
    assert not servicer.calls[0].config.interim_results
    assert all(e.is_final for e in events) and len(events) == len(script)


async def test_audio_that_ends_mid_utterance_keeps_the_words_shown_when_no_final_comes(reference) -> None:
    audio, script = reference
    cut = (script[1].words[0][1] + script[1].end) / 2  # halfway through the second utterance
    servicer = ScriptedRiva(script, pcm16(audio[: int(cut * 16000)]), flush_at_end=False)
    events, failures, _ = await _run(servicer, audio[: int(cut * 16000)])
    finals = _finals(events)
    assert not failures and len(finals) == 2
    shown = [e for e in events if not e.is_final]
    assert finals[1].text == shown[-1].text, "the last interim is the segment's final"
    assert finals[1].segment_id == shown[-1].segment_id
    assert all(w.final for w in finals[1].words)


async def test_a_failed_call_is_reported_and_a_new_call_reads_what_it_had_not_made_final(reference) -> None:
    audio, script = reference
    fail = (script[2].words[0][1] + script[2].end) / 2  # halfway through the third utterance
    servicer = ScriptedRiva(script, pcm16(audio), fail_after_s=fail)
    events, failures, session = await _run(servicer, audio)
    assert len(failures) == 1 and failures[0].recoverable and failures[0].participant_id == 7
    # the call's gRPC status: the stand-in's UNAVAILABLE, or INTERNAL when gRPC's client core was sending audio
    # as the server ended the call (it then reports its failed send as the call's status)
    assert "StatusCode." in failures[0].message and session.error is None
    finals = _finals(events)
    assert [e.text for e in finals] == [" ".join(w for w, _, _ in u.words) for u in script], "a word lost"
    for event, utt in zip(finals, script, strict=True):  # the new call's times on the same timeline
        assert event.start == pytest.approx(OFFSET + utt.words[0][1], abs=0.002)
    assert len({e.segment_id for e in finals}) == len(finals)
    shown = {e.segment_id for e in events if not e.is_final and e.start < OFFSET + fail}
    assert shown <= {e.segment_id for e in finals}, "a segment shown before the failure got no final"
    assert len(servicer.calls) == 2


async def test_a_recognizer_that_is_not_there_stops_the_stream_with_an_error(reference,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    audio, _ = reference
    monkeypatch.setattr("asr.recognizer_session.RETRY_S", 0.01)
    failures: list[FailureEvent] = []

    async def report(event: FailureEvent) -> None:
        failures.append(event)

    async def emit(event: SegmentEvent) -> None:
        raise AssertionError("nothing to emit")

    recognizer = RivaRecognizer(RivaConfig(uri="127.0.0.1:9"))  # nothing listens there
    session = RecognizerSession(recognizer=recognizer, vad_model=SileroModel(), emit=emit, report=report)
    session.start()
    for i in range(0, len(audio), 16000):
        session.feed(audio[i:i + 16000])
        await asyncio.sleep(0)
    await session.finish(flush_timeout=30)
    await recognizer.close()
    assert session.error is not None and failures[-1].recoverable is False
    assert all(f.recoverable for f in failures[:-1])


async def test_a_speaker_turn_inside_an_utterance_cuts_its_final_between_words(reference) -> None:
    audio, script = reference
    utt = script[0]
    turn = utt.words[len(utt.words) // 2][1]
    events, _, _ = await _run(ScriptedRiva(script, pcm16(audio)), audio, turns=(turn,))
    finals = _finals(events)
    first, second = finals[0], finals[1]
    assert [w.text for w in first.words] + [w.text for w in second.words] == [w for w, _, _ in utt.words]
    assert second.start == pytest.approx(OFFSET + turn, abs=0.002) and first.segment_id != second.segment_id
