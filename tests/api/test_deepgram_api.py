"""Deepgram's listen API (``WS /v1/listen``, ``POST /v1/listen``) driven by the unmodified ``deepgram-sdk`` against
a real server with the real model, on real speech: every message is read by the SDK and validated with its own
models; the transcript of LibriSpeech's 59 words is compared with the native WebSocket's on the same file."""

from __future__ import annotations

import asyncio
import json
import warnings
from typing import Any

import aiohttp
import numpy as np
import pytest
from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment
from deepgram.listen.v1.types import ListenV1Metadata, ListenV1Results, ListenV1SpeechStarted, ListenV1UtteranceEnd
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.client_support import CHUNK, JFK, LIBRI, PACE, native_text, words
from tests.rest_support import Api

pytest_plugins = ("tests.rest_fixtures",)

FOREIGN_KEY = "0123456789abcdef0123456789abcdef01234567"  # shaped like a Deepgram key: anonymous in public mode


def sdk(base: str, key: str = FOREIGN_KEY) -> AsyncDeepgramClient:
    ws = base.replace("http", "ws", 1)
    return AsyncDeepgramClient(api_key=key, environment=DeepgramClientEnvironment(
        base=base, production=ws, agent=ws, agent_rest=base))


def final_text(messages: list[Any]) -> str:
    """The stream's transcript: its is_final Results, in order."""
    return " ".join(m.channel.alternatives[0].transcript for m in messages
                    if isinstance(m, ListenV1Results) and m.is_final and m.channel.alternatives[0].transcript)


def final_words(messages: list[Any]) -> list[tuple[str, float]]:
    return [(w.word, w.start) for m in messages if isinstance(m, ListenV1Results) and m.is_final
            for w in m.channel.alternatives[0].words]


@pytest.fixture(scope="module")
async def native(public_api: Api) -> str:
    """The native WebSocket's transcript of :data:`LIBRI` at the clients' pace."""
    return await native_text(public_api, await public_api.serve(), LIBRI.pcm(), pause=PACE)


async def stream_sdk(base: str, pcm: bytes, finalize: bool = False, pause: float = 0.0, **options: Any
                     ) -> list[Any]:
    """Streams through the SDK's live client, then CloseStream; every message the SDK parsed, each checked with
    its model (required fields, types)."""
    messages: list[Any] = []
    async with sdk(base).listen.v1.connect(model="nova-3", encoding="linear16", sample_rate=16000,
                                           **options) as conn:
        reader = asyncio.create_task(collect(conn, messages))
        await conn.send_keep_alive()
        for start in range(0, len(pcm), CHUNK):
            await conn.send_media(pcm[start:start + CHUNK])
            await asyncio.sleep(pause)
        if finalize:
            await conn.send_finalize()
        await conn.send_close_stream()
        await asyncio.wait_for(reader, 90)
    return messages


async def collect(conn: Any, messages: list[Any]) -> None:
    try:
        async for message in conn:
            assert not isinstance(message, bytes | dict), message
            type(message).model_validate(message.model_dump())  # the SDK's model, validated
            messages.append(message)
    except ConnectionClosed:
        pass


async def test_sdk_live_client_transcribes_like_the_native_websocket(public_api: Api, native: str):
    """At twenty times real time (:data:`PACE`): partials come while the audio does."""
    base = await public_api.serve()
    messages = await stream_sdk(base, LIBRI.pcm(), pause=PACE, interim_results="true", punctuate="true",
                                vad_events="true", utterance_end_ms="1000", language="en-US")
    kinds = [type(m).__name__ for m in messages]
    assert "ListenV1Error" not in kinds, messages
    assert isinstance(messages[-1], ListenV1Metadata), kinds
    assert messages[-1].duration == pytest.approx(21.64, abs=0.1) and messages[-1].channels == 1
    results = [m for m in messages if isinstance(m, ListenV1Results)]
    assert any(not r.is_final for r in results), "interim results were asked for"
    assert any(isinstance(m, ListenV1SpeechStarted) for m in messages)
    ends = [i for i, m in enumerate(messages) if isinstance(m, ListenV1UtteranceEnd)]
    assert ends, kinds
    for i in ends:  # the end of an utterance comes after its last words
        before = [m for m in messages[:i] if isinstance(m, ListenV1Results)][-1]
        assert before.speech_final and messages[i].last_word_end <= before.start + before.duration + 0.01
    timed = final_words(messages)
    assert len(timed) == len(set(timed)), "no word in two is_final Results"
    text = final_text(messages)
    assert LIBRI.within_native(text, native), (text, native)
    tid = results[0].metadata.request_id
    row = await public_api.wait_transcript(tid)  # the stream is a voxlane transcript, readable over REST
    assert row["status"] == "completed" and row["segments"]


async def test_finalize_marks_its_final(public_api: Api):
    base = await public_api.serve()
    messages = await stream_sdk(base, JFK.pcm()[:CHUNK * 30], finalize=True)  # 3 s: "And so, my fellow ..."
    finals = [m for m in messages if isinstance(m, ListenV1Results) and m.is_final]
    assert [m.from_finalize for m in finals].count(True) == 1, finals
    assert finals[-1].from_finalize, "the Finalize's final is the last one (CloseStream found nothing open)"
    assert not any(isinstance(m, ListenV1Results) and not m.is_final for m in messages), "interim_results off"


async def test_prerecorded_file_with_the_sdk(public_api: Api, native: str):
    base = await public_api.serve()
    answer = await sdk(base).listen.v1.media.transcribe_file(request=LIBRI.path.read_bytes(), model="nova-3",
                                                            punctuate=True, utterances=True)
    assert type(answer).__name__ == "ListenV1Response", answer
    alt = answer.results.channels[0].alternatives[0]
    assert LIBRI.within_native(alt.transcript, native), (alt.transcript, native)
    assert alt.words and all(w.start <= w.end for w in alt.words) and 0 < alt.confidence <= 1
    assert answer.results.utterances and answer.metadata.duration == pytest.approx(21.64, abs=0.1)
    row = await public_api.wait_transcript(answer.metadata.request_id)
    assert row["status"] == "completed"


@pytest.mark.parametrize("query", ["sample_rate=7", "encoding=pcm9", "punctuate=maybe", "callback=http://x.org/",
                                   "keyterm=" + "x" * 51])
async def test_prerecorded_bad_params(public_api: Api, query: str):
    r = await public_api.client.post(f"/v1/listen?{query}", content=b"RIFF", headers={"Content-Type": "audio/wav"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_PARAMS", r.text


async def test_prerecorded_url_goes_through_the_outbound_guard(public_api: Api):
    r = await public_api.client.post("/v1/listen", json={"url": "http://127.0.0.1:1/jfk.wav"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "URL_NOT_ALLOWED", r.text


async def test_livekit_deepgram_stt_stream(public_api: Api, native: str):
    """LiveKit Agents' Deepgram STT with its defaults, only the base URL changed, its stream driven directly."""
    from livekit import rtc
    from livekit.agents.stt import SpeechEventType
    from livekit.plugins import deepgram

    base = await public_api.serve()
    pcm = np.frombuffer(LIBRI.pcm(silence=1.5), "<i2")
    async with aiohttp.ClientSession() as http:
        stream = deepgram.STT(api_key=FOREIGN_KEY, base_url=f"{base}/v1/listen", http_session=http).stream()
        events: list[Any] = []

        async def read() -> None:
            async for event in stream:
                events.append(event)

        reader = asyncio.create_task(read())
        for start in range(0, len(pcm), 1600):
            chunk = pcm[start:start + 1600]
            stream.push_frame(rtc.AudioFrame(chunk.tobytes(), 16000, 1, len(chunk)))
            await asyncio.sleep(PACE)
        stream.end_input()
        await asyncio.wait_for(reader, 90)
    kinds = [e.type for e in events]
    text = " ".join(e.alternatives[0].text for e in events if e.type == SpeechEventType.FINAL_TRANSCRIPT)
    assert LIBRI.within_native(text, native), (text, native)
    assert SpeechEventType.INTERIM_TRANSCRIPT in kinds and kinds.count(SpeechEventType.START_OF_SPEECH) == kinds.count(
        SpeechEventType.END_OF_SPEECH) >= 1, kinds


async def test_pipecat_deepgram_stt_service(public_api: Api, native: str):
    """Pipecat's DeepgramSTTService with its defaults, only the base URL changed, in a pipeline of its own."""
    from pipecat.frames.frames import EndFrame, InputAudioRawFrame, InterimTranscriptionFrame, TranscriptionFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.runner import PipelineRunner
    from pipecat.pipeline.task import PipelineParams, PipelineTask
    from pipecat.processors.frame_processor import FrameProcessor
    from pipecat.services.deepgram.stt import DeepgramSTTService

    class Collect(FrameProcessor):
        def __init__(self) -> None:
            super().__init__()
            self.frames: list[Any] = []

        async def process_frame(self, frame: Any, direction: Any) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, TranscriptionFrame | InterimTranscriptionFrame):
                self.frames.append(frame)
            await self.push_frame(frame, direction)

    base = await public_api.serve()
    pcm = LIBRI.pcm(silence=1.5)
    collect = Collect()
    stt = DeepgramSTTService(api_key=FOREIGN_KEY, base_url=base)
    task = PipelineTask(Pipeline([stt, collect]), params=PipelineParams(audio_in_sample_rate=16000))

    async def feed() -> None:
        for start in range(0, len(pcm), CHUNK):
            await task.queue_frame(InputAudioRawFrame(audio=pcm[start:start + CHUNK], sample_rate=16000,
                                                      num_channels=1))
            await asyncio.sleep(PACE)
        for _ in range(600):  # until the last utterance's final is in (CloseStream ends Pipecat's stream at once)
            last = collect.frames[-1:]
            if last and isinstance(last[0], TranscriptionFrame) and words(last[0].text)[-1:] == [LIBRI.last_word]:
                break
            await asyncio.sleep(0.05)
        await task.queue_frame(EndFrame())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        await asyncio.wait_for(asyncio.gather(PipelineRunner(handle_sigint=False).run(task), feed()), 90)
    text = " ".join(f.text for f in collect.frames if isinstance(f, TranscriptionFrame))
    assert LIBRI.within_native(text, native), (text, native)
    assert any(isinstance(f, InterimTranscriptionFrame) for f in collect.frames)


async def live(base: str, query: str = "encoding=linear16&sample_rate=16000", headers: dict[str, str] | None = None,
               sends: tuple[str | bytes, ...] = ()) -> tuple[list[dict[str, Any]], ConnectionClosed]:
    """Connects, sends, and reads every message until the server closes."""
    got: list[dict[str, Any]] = []
    async with connect(f"{base.replace('http', 'ws', 1)}/v1/listen?{query}", additional_headers=headers,
                       max_size=None) as ws:
        for message in sends:
            await ws.send(message)
        try:
            while True:
                got.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
        except ConnectionClosed as exc:
            return got, exc
    raise AssertionError("unreachable")


@pytest.mark.parametrize("query", ["encoding=linear16", "encoding=pcm9&sample_rate=16000", "sample_rate=96000",
                                   "channels=0", "interim_results=yes", "utterance_end_ms=10", "language=en_US!",
                                   "callback=http://x.org/", "diarize=true&multichannel=true"])
async def test_live_bad_params_close_with_an_error(public_api: Api, query: str):
    got, closed = await live(await public_api.serve(), query)
    assert [m["type"] for m in got] == ["Error"] and got[0]["variant"] == "INVALID_PARAMS", got
    assert closed.rcvd is not None and closed.rcvd.code == 1008 and closed.rcvd.reason, closed


async def test_live_bad_messages_get_errors_and_the_stream_goes_on(public_api: Api):
    """Non-JSON, unknown and oversized text messages, an oversized frame: an Error each, nothing lost; then
    a Finalize before any audio answers an empty final, and CloseStream ends with Metadata."""
    big_frame = b"\x00" * (public_api.settings.max_frame_kb * 1024 + 2)
    sends = ("{not json", json.dumps({"type": "Transcribe"}), "x" * 20000, big_frame, json.dumps({"type": "KeepAlive"}),
             json.dumps({"type": "Configure", "keyterms": ["voxlane"]}), json.dumps({"type": "Finalize"}),
             json.dumps({"type": "CloseStream"}))
    got, closed = await live(await public_api.serve(), sends=sends)
    assert [m["type"] for m in got] == ["Error"] * 4 + ["ConfigureFailure", "Results", "Metadata"], got
    assert "JSON" in got[0]["description"] and "over this server's limit" in got[3]["description"]
    assert got[5]["from_finalize"] is True and got[5]["channel"]["alternatives"][0]["transcript"] == ""
    assert got[6]["duration"] == 0 and closed.rcvd is not None and closed.rcvd.code == 1000


async def test_live_closes_a_client_that_keeps_sending_garbage(public_api: Api):
    limit = public_api.settings.ws_max_bad_messages
    got, closed = await live(await public_api.serve(), sends=("nope",) * (limit + 5))
    assert len(got) == limit + 1 and all(m["type"] == "Error" for m in got) and got[-1]["variant"] == "TOO_MANY_ERRORS"
    assert closed.rcvd is not None and closed.rcvd.code == 1008


async def test_live_tokens_in_private_mode(private_api: Api):
    base = await private_api.serve()
    _, closed = await live(base, headers={"Authorization": f"Token {FOREIGN_KEY}"})
    assert closed.rcvd is not None and closed.rcvd.code == 4401, closed  # a foreign key is no token here
    reader = private_api.jwt("alice", ["transcripts:read"])
    _, closed = await live(base, headers={"Authorization": f"Token {reader}"})
    assert closed.rcvd is not None and closed.rcvd.code == 4403 and "transcripts:write" in closed.rcvd.reason
    writer = private_api.jwt("alice", ["transcripts:read", "transcripts:write"])
    got, closed = await live(base, headers={"Authorization": f"Token {writer}"},
                             sends=(JFK.pcm()[:CHUNK * 5], json.dumps({"type": "CloseStream"})))
    assert got[-1]["type"] == "Metadata" and closed.rcvd is not None and closed.rcvd.code == 1000, got
    row = await private_api.wait_transcript(got[-1]["request_id"], headers=private_api.auth("alice"))
    assert row["status"] == "completed"
