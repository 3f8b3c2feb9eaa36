"""The voice-agent frameworks' stock OpenAI speech-to-text plugins against a real server with the real model, on
real speech: LiveKit Agents' ``openai.STT`` (REST and Realtime) and Pipecat's ``OpenAISTTService`` and
``OpenAIRealtimeSTTService`` (committed by Pipecat's own VAD, or by the server's turn detection), each with its
defaults and only the base URL and a placeholder key given, as docs/clients.md tells. Each transcript is held to the
native WebSocket's on the same samples (the 24 kHz the Realtime plugins resample to, at their pace) of two
LibriSpeech utterances (59 words): its WER at most two points (one word) above the native one, no word run read
into two items, no error."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.client_support import CHUNK, LIBRI, PACE, Baselines, words
from tests.rest_support import Api

pytest_plugins = ("tests.rest_fixtures",)

KEY = "sk-placeholder"  # what an OpenAI key looks like: anonymous in public mode


@pytest.fixture(scope="module")
def natives(public_api: Api) -> Baselines:
    return Baselines(public_api)


def close_to(texts: list[str], native: str) -> bool:
    """The WER at most two points (one word) above the native WebSocket's."""
    return LIBRI.within_native(" ".join(texts), native)


def speech() -> bytes:
    """The recording the clients send, with 1.5 s of silence after it (the VAD ends the last utterance in them)."""
    return LIBRI.pcm(silence=1.5)


async def native_16k(natives: Baselines) -> str:
    return await natives.of("16k", speech(), pause=PACE)


async def settle(done: Callable[[], bool], within: float = 60.0) -> None:
    """Waits until ``done()`` or ``within`` seconds: the asserts after it say what was missing."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if done():
            return
        await asyncio.sleep(0.05)


def ends_the_speech(texts: list[str]) -> bool:
    """The transcripts end with the recording's last word: the last item is in."""
    return words(" ".join(texts))[-1:] == [LIBRI.last_word]


def frames_16k(pcm: bytes) -> list[Any]:
    from livekit import rtc

    samples = np.frombuffer(pcm, "<i2")
    return [rtc.AudioFrame(samples[i:i + 1600].tobytes(), 16000, 1, len(samples[i:i + 1600]))
            for i in range(0, len(samples), 1600)]


def livekit_24k(pcm: bytes) -> bytes:
    """What the plugin's stream sends for ``pcm``: its resampler's 24 kHz."""
    from livekit import rtc

    resampler = rtc.AudioResampler(16000, 24000, quality=rtc.AudioResamplerQuality.HIGH)
    out = [f for frame in frames_16k(pcm) for f in resampler.push(frame)] + list(resampler.flush())
    return b"".join(f.data.tobytes() for f in out)


async def pipecat_24k(pcm: bytes) -> bytes:
    """What ``OpenAIRealtimeSTTService`` sends for ``pcm`` in 100 ms frames: its resampler's 24 kHz."""
    from pipecat.audio.utils import create_stream_resampler

    resampler = create_stream_resampler()
    return b"".join([await resampler.resample(pcm[i:i + CHUNK], 16000, 24000) for i in range(0, len(pcm), CHUNK)])


# ---------------------------------------------------------------- LiveKit Agents


async def test_livekit_stt_recognize(public_api: Api, natives: Baselines):
    """``openai.STT()`` (``gpt-4o-mini-transcribe`` over ``POST /v1/audio/transcriptions``): one buffer, one
    final."""
    from livekit.plugins import openai

    base = await public_api.serve()
    stt = openai.STT(base_url=f"{base}/v1", api_key=KEY)
    errors: list[Any] = []
    stt.on("error", errors.append)
    event = await stt.recognize(frames_16k(LIBRI.pcm()))
    await stt.aclose()
    text = event.alternatives[0].text
    native = await native_16k(natives)
    assert not errors, errors
    assert close_to([text], native), (text, native)
    assert not LIBRI.repeated_runs([text]), text


async def test_livekit_stt_realtime_stream(public_api: Api, natives: Baselines):
    """``openai.STT(use_realtime=True)``: its stream sends ``server_vad``; voxlane's VAD ends each item, the
    plugin's speech events come from it."""
    from livekit.agents.stt import SpeechEventType
    from livekit.agents.utils import http_context
    from livekit.plugins import openai

    base = await public_api.serve()
    events: list[Any] = []
    errors: list[Any] = []
    async with http_context.open():
        stt = openai.STT(base_url=f"{base}/v1", api_key=KEY, use_realtime=True)
        stt.on("error", errors.append)
        stream = stt.stream()

        async def read() -> None:
            async for event in stream:
                events.append(event)

        reader = asyncio.create_task(read())
        for frame in frames_16k(speech()):
            stream.push_frame(frame)
            await asyncio.sleep(PACE)
        stream.end_input()

        def finals() -> list[str]:
            return [e.alternatives[0].text for e in events if e.type == SpeechEventType.FINAL_TRANSCRIPT]

        await settle(lambda: ends_the_speech(finals()))
        await stream.aclose()
        await stt.aclose()
        reader.cancel()
    kinds = [e.type for e in events]
    texts = finals()
    native = await natives.of("livekit 24k", livekit_24k(speech()), 24000, PACE)
    assert not errors, errors
    assert close_to(texts, native), (texts, native)
    assert not LIBRI.repeated_runs(texts), texts
    assert SpeechEventType.INTERIM_TRANSCRIPT in kinds, kinds
    assert kinds.count(SpeechEventType.START_OF_SPEECH) == kinds.count(SpeechEventType.END_OF_SPEECH) >= 1, kinds


# ---------------------------------------------------------------- Pipecat


class Pipecat:
    """A pipeline of ``processors`` with a collector after them; every error the task hears is kept."""

    def __init__(self, processors: list[Any]) -> None:
        from pipecat.frames.frames import InterimTranscriptionFrame, TranscriptionFrame
        from pipecat.pipeline.pipeline import Pipeline
        from pipecat.pipeline.task import PipelineParams, PipelineTask
        from pipecat.processors.frame_processor import FrameProcessor

        frames: list[Any] = []
        self.frames = frames
        self.errors: list[Any] = []

        class Collect(FrameProcessor):
            async def process_frame(self, frame: Any, direction: Any) -> None:
                await super().process_frame(frame, direction)
                if isinstance(frame, TranscriptionFrame | InterimTranscriptionFrame):
                    frames.append(frame)
                await self.push_frame(frame, direction)

        self.task = PipelineTask(Pipeline([*processors, Collect()]),
                                 params=PipelineParams(audio_in_sample_rate=16000))

        @self.task.event_handler("on_pipeline_error")
        async def on_error(_task: Any, frame: Any) -> None:
            self.errors.append(frame)

    def finals(self) -> list[str]:
        from pipecat.frames.frames import TranscriptionFrame

        return [f.text for f in self.frames if isinstance(f, TranscriptionFrame)]

    async def run(self, pcm: bytes, wait: bool = True) -> None:
        """Feeds ``pcm`` in 100 ms frames at :data:`PACE`; then (``wait``) until the last item's final is in,
        and ends the pipeline."""
        from pipecat.frames.frames import EndFrame, InputAudioRawFrame
        from pipecat.pipeline.runner import PipelineRunner

        async def feed() -> None:
            for start in range(0, len(pcm), CHUNK):
                await self.task.queue_frame(InputAudioRawFrame(audio=pcm[start:start + CHUNK], sample_rate=16000,
                                                               num_channels=1))
                await asyncio.sleep(PACE)
            if wait:
                await settle(lambda: ends_the_speech(self.finals()))
            await self.task.queue_frame(EndFrame())

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            await asyncio.wait_for(asyncio.gather(PipelineRunner(handle_sigint=False).run(self.task), feed()), 120)


def silero() -> Any:
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.processors.audio.vad_processor import VADProcessor

    return VADProcessor(vad_analyzer=SileroVADAnalyzer())


async def test_pipecat_segmented_stt(public_api: Api, natives: Baselines):
    """``OpenAISTTService`` (``gpt-transcribe`` over REST): Pipecat's VAD cuts the utterances, each one is a
    WAV file transcribed on its own."""
    from pipecat.services.openai.stt import OpenAISTTService

    base = await public_api.serve()
    pipe = Pipecat([silero(), OpenAISTTService(base_url=f"{base}/v1", api_key=KEY)])
    await pipe.run(speech(), wait=False)  # the EndFrame waits for the segments queued before it
    texts = pipe.finals()
    native = await native_16k(natives)
    assert not pipe.errors, pipe.errors
    assert len(texts) > 1, texts
    assert not LIBRI.repeated_runs(texts), texts
    assert close_to(texts, native), (texts, native)


async def test_pipecat_realtime_stt_committed_by_its_vad(public_api: Api, natives: Baselines):
    """``OpenAIRealtimeSTTService`` as it comes (``gpt-realtime-whisper``, turn detection off): Pipecat's VAD
    commits the buffer when the user stops; each commit ends an item there."""
    from pipecat.frames.frames import InterimTranscriptionFrame
    from pipecat.services.openai.stt import OpenAIRealtimeSTTService

    base = await public_api.serve()
    stt = OpenAIRealtimeSTTService(base_url=f"{base.replace('http', 'ws', 1)}/v1/realtime", api_key=KEY)
    pipe = Pipecat([silero(), stt])
    await pipe.run(speech())
    texts = pipe.finals()
    native = await natives.of("pipecat 24k", await pipecat_24k(speech()), 24000, PACE)
    assert not pipe.errors, pipe.errors
    assert not LIBRI.repeated_runs(texts), texts
    assert any(isinstance(f, InterimTranscriptionFrame) for f in pipe.frames)
    assert close_to(texts, native), (texts, native)


async def test_pipecat_realtime_stt_with_server_vad(public_api: Api, natives: Baselines):
    """``OpenAIRealtimeSTTService(turn_detection={"type": "server_vad"})``, no VAD in the pipeline: the server's
    turn detection ends the items."""
    from pipecat.frames.frames import InterimTranscriptionFrame
    from pipecat.services.openai.stt import OpenAIRealtimeSTTService

    base = await public_api.serve()
    stt = OpenAIRealtimeSTTService(base_url=f"{base.replace('http', 'ws', 1)}/v1/realtime", api_key=KEY,
                                   turn_detection={"type": "server_vad"})
    pipe = Pipecat([stt])
    await pipe.run(speech())
    texts = pipe.finals()
    native = await natives.of("pipecat 24k", await pipecat_24k(speech()), 24000, PACE)
    assert not pipe.errors, pipe.errors
    assert close_to(texts, native), (texts, native)
    assert not LIBRI.repeated_runs(texts), texts
    assert any(isinstance(f, InterimTranscriptionFrame) for f in pipe.frames)
