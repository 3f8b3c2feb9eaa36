"""What the tests of third-party clients (Deepgram's, OpenAI's, the frameworks' plugins) share: JFK as they send
it, the native WebSocket's transcript of it as their baseline, and the checks on what they transcribe."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter

import numpy as np
from websockets.asyncio.client import connect

from server.cli.bench.metrics import wer_counts
from tests.rest_support import AUDIO, Api, read_wav, reference

JFK_NAME = "single/jfk_inaugural_1961_excerpt.wav"
JFK = AUDIO / JFK_NAME
CHUNK = 3200  # 100 ms of 16 kHz 16-bit mono


def jfk_pcm(silence: float = 0.0) -> bytes:
    """JFK as 16 kHz 16-bit mono, with ``silence`` seconds after it (the VAD ends the last utterance in them)."""
    samples, rate = read_wav(JFK)
    assert rate == 16000
    return np.concatenate([samples.astype("<i2"), np.zeros(int(silence * rate), "<i2")]).tobytes()


def within_native(text: str, native: str, points: float = 0.02) -> bool:
    """The WER of ``text`` on JFK is within ``points`` of the native WebSocket's on the same file."""
    ref = reference(JFK_NAME)
    errors, n = wer_counts(ref, text)
    return abs(errors - wer_counts(ref, native)[0]) / n <= points


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def pairs(text: str) -> Counter[tuple[str, str]]:
    w = words(text)
    return Counter(zip(w, w[1:], strict=False))


def repeated_runs(texts: list[str], ref: str | None = None) -> list[tuple[str, str]]:
    """Word pairs the transcripts, joined in order, hold more often than the reference does: a word run read into
    two items (``... for you`` + ``for you ...``) or a word said once and written twice (``you`` + ``you``). A
    pair the reference lacks counts once it comes twice, or as a word next to itself; one misheard pair is no
    repeat."""
    said = pairs(ref if ref is not None else reference(JFK_NAME))
    heard = pairs(" ".join(texts))
    return [pair for pair, n in heard.items() if n > said[pair] and (n > 1 or pair[0] == pair[1])]


async def native_text(api: Api, base: str, pcm: bytes, rate: int = 16000, pause: float = 0.0) -> str:
    """The same audio through voxlane's own WebSocket, in 100 ms messages with ``pause`` s after each (a client's
    pace): the text of its finals."""
    tid = (await api.client.post("/v1/transcripts/", json={"name": "native"})).json()["id"]
    chunk = rate // 10 * 2
    async with connect(f"{base.replace('http', 'ws', 1)}/v1/transcripts_websocket/{tid}", max_size=None) as ws:
        await ws.send(json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": rate}}))
        for start in range(0, len(pcm), chunk):
            await ws.send(pcm[start:start + chunk])
            await asyncio.sleep(pause)
        await ws.send(json.dumps({"action": "stop"}))
        row = await api.wait_transcript(tid, within=90)
    return " ".join(s["text"] for s in row["segments"])


class Baselines:
    """The native WebSocket's transcript of each audio the clients of a module send, measured once: tiny.en reads
    JFK's cold "ask not" as "asked not" from some resamplers' 24 kHz, and at some paces (see
    tests/api/test_realtime_api.py::speech_24k), so a client is held to the native WebSocket on the very samples
    it sends, at its pace."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.texts: dict[str, str] = {}

    async def of(self, name: str, pcm: bytes, rate: int = 16000, pause: float = 0.0) -> str:
        if name not in self.texts:
            self.texts[name] = await native_text(self.api, await self.api.serve(), pcm, rate, pause)
        return self.texts[name]
