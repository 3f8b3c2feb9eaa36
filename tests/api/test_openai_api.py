"""The OpenAI-compatible API, driven by the official ``openai`` client: every response_format, streaming, models,
and errors, on real speech, against a real HTTP server (private mode, a voxlane API key as the OpenAI key)."""

from __future__ import annotations

import math

import openai
import pytest
import srt
import webvtt
from openai.types.audio import Transcription, TranscriptionVerbose

from bench.metrics import wer_counts
from server.features.openai_models import OPENAI_TRANSCRIPTION_MODELS
from tests.rest_support import AUDIO, Api, read_wav, reference

pytest_plugins = ("tests.rest_fixtures",)

SPEECH = "single/librispeech_1221-135766_2utt.wav"  # 21.6 s, two utterances
MAX_WER = 0.2


def wer(text: str) -> float:
    errors, n = wer_counts(reference(SPEECH), text)
    return errors / n


def check_cues(cues: list[tuple[float, float, str]], duration: float) -> None:
    """Subtitle cues: at least one per utterance, in order, inside the audio, with the right words."""
    assert len(cues) >= 2
    starts = [c[0] for c in cues]
    assert starts == sorted(starts) and all(0 <= a < b <= duration + 0.5 for a, b, _ in cues), cues
    assert wer(" ".join(c[2] for c in cues)) < MAX_WER


async def test_openai_client_gets_the_text_in_every_format(private_api: Api):
    api = private_api
    key = await api.api_key("olive", ["transcripts:read", "transcripts:write"])
    client = openai.AsyncOpenAI(base_url=await api.serve() + "/v1", api_key=key, max_retries=0, timeout=120)
    audio = ("speech.wav", (AUDIO / SPEECH).read_bytes(), "audio/wav")
    samples, rate = read_wav(AUDIO / SPEECH)
    duration = len(samples) / rate

    models = await client.models.list()
    assert [m.id for m in models.data] == ["tiny.en", *OPENAI_TRANSCRIPTION_MODELS], "every OpenAI id means it"
    assert all(m.object == "model" and m.owned_by == "voxlane" and m.created > 0 for m in models.data)
    assert (await client.models.retrieve("gpt-4o-mini-transcribe")).id == "gpt-4o-mini-transcribe"

    js = await client.audio.transcriptions.create(file=audio, model="whisper-1")
    assert isinstance(js, Transcription) and wer(js.text) < MAX_WER, js.text
    assert js.usage is not None and js.usage.type == "duration" and js.usage.seconds == math.ceil(duration)

    text = await client.audio.transcriptions.create(file=audio, model="tiny.en", response_format="text",
                                                    language="en", prompt="A sermon on sin and its punishment.",
                                                    temperature=0)
    assert isinstance(text, str) and text.endswith("\n") and wer(text) < MAX_WER, text

    subtitles = await client.audio.transcriptions.create(file=audio, model="whisper-1", response_format="srt")
    check_cues([(s.start.total_seconds(), s.end.total_seconds(), s.content) for s in srt.parse(subtitles)], duration)

    vtt = webvtt.from_string(await client.audio.transcriptions.create(file=audio, model="whisper-1",
                                                                      response_format="vtt"))
    check_cues([(c.start_in_seconds, c.end_in_seconds, c.text) for c in vtt.captions], duration)

    verbose = await client.audio.transcriptions.create(file=audio, model="whisper-1", response_format="verbose_json",
                                                       timestamp_granularities=["word", "segment"])
    assert isinstance(verbose, TranscriptionVerbose)
    assert verbose.language == "english" and abs(verbose.duration - duration) < 0.1 and wer(verbose.text) < MAX_WER
    assert verbose.segments and verbose.words
    assert " ".join(s.text.strip() for s in verbose.segments) == verbose.text
    assert [s.id for s in verbose.segments] == list(range(len(verbose.segments)))
    check_cues([(s.start, s.end, s.text) for s in verbose.segments], duration)
    assert all(-5 < s.avg_logprob <= 0 and s.compression_ratio > 0 for s in verbose.segments)
    words = verbose.words
    assert wer(" ".join(w.word for w in words)) < MAX_WER
    assert all(0 <= w.start <= w.end <= duration + 0.5 for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words), "word timestamps are monotonic"
    assert all(any(s.start - 0.05 <= w.start and w.end <= s.end + 0.05 for s in verbose.segments) for w in words)
    segments_only = await client.audio.transcriptions.create(file=audio, model="whisper-1",
                                                             response_format="verbose_json")
    assert segments_only.segments and segments_only.words is None, "words only when asked for"

    stream = await client.audio.transcriptions.create(file=audio, model="whisper-1", stream=True)
    events = [event async for event in stream]
    deltas = [e for e in events[:-1] if e.type == "transcript.text.delta"]
    assert len(deltas) == len(events) - 1 >= 2, [e.type for e in events]
    assert events[-1].type == "transcript.text.done"
    assert "".join(e.delta for e in deltas) == events[-1].text and wer(events[-1].text) < MAX_WER


async def test_openai_client_errors(private_api: Api):
    api = private_api
    base = await api.serve() + "/v1"
    audio = ("speech.wav", (AUDIO / "single/librispeech_61-70968-0000.wav").read_bytes(), "audio/wav")
    writer = openai.AsyncOpenAI(base_url=base, api_key=await api.api_key("olive", ["transcripts:write"]),
                                max_retries=0)
    with pytest.raises(openai.UnprocessableEntityError) as info:
        await writer.audio.transcriptions.create(file=audio, model="gpt-9")
    assert info.value.code == "MODEL_NOT_AVAILABLE" and "gpt-4o-transcribe" in info.value.body["message"]
    assert info.value.body["details"]["available"] == ["tiny.en", *OPENAI_TRANSCRIPTION_MODELS]
    with pytest.raises(openai.UnprocessableEntityError) as info:
        await writer.audio.transcriptions.create(file=audio, model="whisper-1", response_format="json",
                                                 timestamp_granularities=["word"])
    assert "verbose_json" in info.value.body["message"]
    with pytest.raises(openai.UnprocessableEntityError):
        await writer.audio.transcriptions.create(file=audio, model="whisper-1", response_format="srt", stream=True)
    with pytest.raises(openai.APIStatusError) as info:
        await writer.audio.transcriptions.create(file=("notes.txt", b"plain text, not audio" * 20, "text/plain"),
                                                 model="whisper-1")
    assert info.value.status_code == 415 and info.value.code == "UNSUPPORTED_MEDIA_TYPE"
    reader = openai.AsyncOpenAI(base_url=base, api_key=await api.api_key("olive", ["transcripts:read"]),
                                max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        await reader.models.retrieve("gpt-9")
    assert info.value.code == "MODEL_NOT_FOUND"
    with pytest.raises(openai.PermissionDeniedError) as info:
        await reader.audio.transcriptions.create(file=audio, model="whisper-1")
    assert info.value.code == "INSUFFICIENT_SCOPE"
    stranger = openai.AsyncOpenAI(base_url=base, api_key="vxl_000000000000_" + "x" * 40, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await stranger.models.list()
    scratch = api.data_dir / "tmp"
    assert not list(scratch.glob("openai-*")), "every request removes its file"


async def test_the_sdk_with_a_placeholder_key_in_public_mode(public_api: Api):
    """How people point the SDK at a local server: ``api_key="anything"`` (it always sends one). Public mode
    answered 401 "malformed bearer token"; such a bearer is now ignored and the caller anonymous, while a
    voxlane-shaped token that fails is still refused."""
    base = await public_api.serve() + "/v1"
    client = openai.AsyncOpenAI(base_url=base, api_key="anything", max_retries=0, timeout=120)
    js = await client.audio.transcriptions.create(file=("speech.wav", (AUDIO / SPEECH).read_bytes(), "audio/wav"),
                                                  model="whisper-1")
    assert wer(js.text) < MAX_WER, js.text
    for bad in ("vxl_000000000000_" + "x" * 40, "a.b.c"):
        stranger = openai.AsyncOpenAI(base_url=base, api_key=bad, max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await stranger.models.list()


async def test_key_terms_spell_a_name_as_given(private_api: Api):
    """tiny.en writes "Hester Prin" for the name in this file; given it as a key term, the transcript spells it."""
    api = private_api
    client = openai.AsyncOpenAI(base_url=await api.serve() + "/v1", max_retries=0, timeout=120,
                                api_key=await api.api_key("olive", ["transcripts:write"]))
    audio = ("speech.wav", (AUDIO / SPEECH).read_bytes(), "audio/wav")
    verbose = await client.audio.transcriptions.create(file=audio, model="whisper-1", response_format="verbose_json",
                                                       timestamp_granularities=["word"],
                                                       extra_body={"key_terms": '["Hester Prynne"]'})
    assert "Hester Prynne" in verbose.text and wer(verbose.text) < MAX_WER, verbose.text
    at = next(i for i, w in enumerate(verbose.words) if w.word.strip() == "Prynne")
    hester, prynne = verbose.words[at - 1], verbose.words[at]
    assert hester.word.strip() == "Hester" and 10 < hester.start <= hester.end <= prynne.start < prynne.end
    with pytest.raises(openai.UnprocessableEntityError) as info:
        await client.audio.transcriptions.create(file=audio, model="whisper-1",
                                                 extra_body={"key_terms": ",".join(["term"] * 101)})
    assert "at most 100" in info.value.body["message"]
