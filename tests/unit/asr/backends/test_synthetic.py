"""The synthetic backend: two readings of the same audio agree on its words, and a stream's words pass the
session's guard against decoding loops (one name for every word was cut to its first)."""

from __future__ import annotations

from asr.backends.base import DecodeRequest
from asr.backends.synthetic import SAMPLE_RATE, STEP_S, WORDS, SyntheticBackend
from asr.policy import TimedWord, trim_repetition
from server.cli.live_client import load_pcm16k
from tests.conftest import AUDIO

SPEECH = AUDIO / "single/jfk_inaugural_1961_excerpt.wav"


def _words(backend: SyntheticBackend, audio, offset: float = 0.0) -> list[TimedWord]:
    [result] = backend.transcribe([DecodeRequest(audio)])
    return [TimedWord(w.text.strip(), round(offset + w.start, 3), round(offset + w.end, 3), w.probability)
            for w in result.words]


def test_readings_from_a_word_bound_agree_and_no_loop_is_cut() -> None:
    audio = load_pcm16k(SPEECH)
    backend = SyntheticBackend()
    whole = _words(backend, audio)
    assert len(whole) > 20 and {w.text for w in whole} <= set(WORDS) and len({w.text for w in whole}) > 8
    assert trim_repetition(whole) == whole
    # a later window that starts at a word's bound (a trimmed or lent window does) reads the same words there
    start = whole[10].start
    later = _words(backend, audio[round(start * SAMPLE_RATE):], offset=start)
    assert [(w.text, w.start) for w in later] == [(w.text, w.start) for w in whole[10:]]
    # and a window that ends sooner reads the words it holds as the longer one did
    shorter = _words(backend, audio[: round(whole[15].end * SAMPLE_RATE)])
    assert [w.text for w in shorter] == [w.text for w in whole[:16]]


def test_one_word_told_is_written_for_every_word() -> None:
    audio = load_pcm16k(SPEECH)
    words = _words(SyntheticBackend(word="word"), audio)
    assert {w.text for w in words} == {"word"} and len(words) > 20
    assert len(trim_repetition(words)) == 1, "the guard takes it for a loop: word= is for key terms alone"
    assert all(abs(w.end - w.start - STEP_S) < 1e-6 for w in words)


def test_a_paced_backend_waits_its_audio_times_the_rate_and_reads_the_same_words(monkeypatch) -> None:
    from asr.backends import BackendConfig, make_backend
    from server.pipeline.configs import backend_config
    from server.settings import Settings

    audio = load_pcm16k(SPEECH)
    waits: list[float] = []
    monkeypatch.setattr("asr.backends.synthetic.time.sleep", waits.append)
    paced = make_backend(BackendConfig(name="synthetic", synthetic_rtf=0.25))
    assert isinstance(paced, SyntheticBackend)
    assert _words(paced, audio) == _words(SyntheticBackend(), audio)
    paced.transcribe([DecodeRequest(audio[:SAMPLE_RATE]), DecodeRequest(audio[: 3 * SAMPLE_RATE])])
    assert waits == [0.25 * len(audio) / SAMPLE_RATE, 0.25 * 4], "one wait a call, for the audio of all its windows"
    assert backend_config(Settings(asr_backend="synthetic", synthetic_rtf=0.1)).synthetic_rtf == 0.1
