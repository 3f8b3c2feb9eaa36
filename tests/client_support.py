"""What the tests of third-party clients (Deepgram's, OpenAI's, the frameworks' plugins) share: a recording as they
send it, the native WebSocket's transcript of it as their baseline, and the checks on what they transcribe.

Their WER checks run on :data:`LIBRI` (two LibriSpeech utterances, 59 words): within two points of the native
WebSocket is within one word there. On JFK's 22 words one word is 4.5 points, and a word that tips either way on
the very same samples ("ask"/"asked") or a word cut out of its sentence ("not" read as "Knock!") decides a test;
JFK stays where a short clip is all a test needs."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from websockets.asyncio.client import connect

from bench.metrics import wer_counts
from tests.rest_support import AUDIO, Api, read_wav, reference

CHUNK = 3200  # 100 ms of 16 kHz 16-bit mono
PACE = 0.005
"""Seconds a client waits after each 100 ms of audio: twenty times real time, fast enough that the in-process
server reads a recording in a few steps (at 0.01-0.02 it reads every 500 ms step and takes 15-18 s of this
2-core machine for :data:`LIBRI`), with partials still coming while the audio does."""


@dataclass(frozen=True)
class Speech:
    """A recording of the corpus (``../shared/audio``) with its exact reference text."""

    name: str

    @property
    def path(self) -> Path:
        return AUDIO / self.name

    @property
    def text(self) -> str:
        return reference(self.name)

    @property
    def last_word(self) -> str:
        return words(self.text)[-1]

    def pcm(self, silence: float = 0.0) -> bytes:
        """16 kHz 16-bit mono, with ``silence`` seconds after it (the VAD ends the last utterance in them)."""
        samples, rate = read_wav(self.path)
        assert rate == 16000
        return np.concatenate([samples.astype("<i2"), np.zeros(int(silence * rate), "<i2")]).tobytes()

    def within_native(self, text: str, native: str, points: float = 0.02) -> bool:
        """The WER of ``text`` is at most ``points`` above the native WebSocket's on the same recording: a client's
        route loses no more than that. Better is no fault: the two are separate live readings, and under load one
        read "Hester Prin" where the native one read "has to print" (3.4 points apart, the client's the closer)."""
        errors, n = wer_counts(self.text, text)
        return (errors - wer_counts(self.text, native)[0]) / n <= points

    def repeated_runs(self, texts: list[str]) -> list[tuple[str, str]]:
        """Word pairs the transcripts, joined in order, hold more often than the reference does: a word run read
        into two items (``... for you`` + ``for you ...``) or a word said once and written twice (``you`` +
        ``you``). A pair the reference lacks counts once it comes twice, or as a word next to itself; one misheard
        pair is no repeat."""
        said = pairs(self.text)
        heard = pairs(" ".join(texts))
        return [pair for pair, n in heard.items() if n > said[pair] and (n > 1 or pair[0] == pair[1])]


JFK = Speech("single/jfk_inaugural_1961_excerpt.wav")
"""11 s, 22 words in one utterance with a long pause ("ask | not"): a short clip."""
LIBRI = Speech("single/librispeech_1221-135766_2utt.wav")
"""21.6 s, 59 words in two utterances (0.3-16.24 s, 16.74-21.14 s): the WER checks."""


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def pairs(text: str) -> Counter[tuple[str, str]]:
    w = words(text)
    return Counter(zip(w, w[1:], strict=False))


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
    """The native WebSocket's transcript of each audio the clients of a module send, measured once: a small model
    can read a word two ways from two resamplers' 24 kHz, or at two paces (see
    tests/api/test_realtime_api.py::speech_24k), so a client is held to the native WebSocket on the very samples
    it sends, at its pace."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.texts: dict[str, str] = {}

    async def of(self, name: str, pcm: bytes, rate: int = 16000, pause: float = 0.0) -> str:
        if name not in self.texts:
            self.texts[name] = await native_text(self.api, await self.api.serve(), pcm, rate, pause)
        return self.texts[name]
