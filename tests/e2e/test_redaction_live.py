"""PII redaction on by default in the live pipeline: subscribers receive finals already redacted, the stored
transcript is redacted, and the text as spoken is kept apart only where ``VOXLANE_KEEP_UNREDACTED`` says so.

The speech is real model output of a TTS voice (flite's awb) reading a phone number and an address, streamed
through the composition root's live pipeline with the bundled model, as a meeting bot's stream goes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from media import SAMPLE_RATE, decode_file, float_to_s16
from protocol import Participant, StartParams
from server import services as composition
from server.settings import Settings
from tests import dialogue
from tests.process_support import KNOWN_CALIBRATION_S
from tests.read_once import read_once

SAID = ("Hello. Call me at five five five, one two three four. My email is john dot smith at example dot com."
        " Thank you.")
SPOKEN = ("five", "555", "1234", "john", "smith", "example")


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    assert dialogue.available(), "flite and espeak-ng are installed by .ci/run"
    out = tmp_path_factory.mktemp("pii") / "said.wav"
    subprocess.run(["flite", "-voice", "awb", "-t", SAID, "-o", str(out)], check=True, capture_output=True)
    audio = decode_file(out)
    return np.concatenate([audio, np.zeros(SAMPLE_RATE, dtype=np.float32)])  # a second of silence closes it


def _leaks(text: str) -> list[str]:
    return [w for w in text.casefold().replace(",", " ").replace("-", " ").split() if w.strip(".") in SPOKEN]


@pytest.mark.parametrize("keep", ["off", "on"])
async def test_live_finals_are_redacted_before_anyone_hears_them(tmp_path: Path, speech: np.ndarray, keep: str):
    settings = Settings(data_dir=str(tmp_path / "data"), diarization="off", status_interval=0,
                        max_audio_lead_seconds=0, publisher_idle_timeout=0, keep_unredacted=keep,
                        calibration_seconds=KNOWN_CALIBRATION_S)
    assert settings.disable_redaction == "off", "redaction is on by default"
    # both runs stream the same speech: the second's readings are the first's (tests/read_once.py)
    services = await composition.build(settings, backend=await read_once(settings))
    try:
        tid = (await services.store.create_transcript(name="pii"))["id"]
        sub = services.hub.subscribe(tid)
        pub = await services.live.get(tid).add_publisher(StartParams(
            format="pcm_s16le", sample_rate=SAMPLE_RATE, channels=1, participant=Participant(id="7", name="Dana")))
        pcm = float_to_s16(speech)
        for i in range(0, len(pcm), 6400):
            await pub.feed_bytes(pcm[i:i + 6400])
        await pub.finish()
        finals, told = [], []
        while not sub.queue.empty():
            msg = sub.queue.get_nowait()
            if msg is None or msg["type"] != "transcription":
                continue
            d = msg["data"]
            (finals if d["is_final"] else told).append(d)
        heard = " ".join(d["text"] for d in finals)
        assert "[PHONE]" in heard and "[EMAIL]" in heard, heard
        assert not _leaks(heard), heard
        for d in told:  # a partial never tells a word of PII final
            assert not _leaks(" ".join(w["text"] for w in d["words"] if w["final"])), d
        stored = await services.store.get_segments(tid)
        assert " ".join(s["text"] for s in stored) == heard
        kept, total = await services.store.get_unredacted(tid, page=1, size=100)
        if keep == "on":
            assert total >= 1 and _leaks(" ".join(k["text"] for k in kept)), kept
            assert {k["id"] for k in kept} <= {s["id"] for s in stored}
        else:
            assert total == 0, "the text as spoken is not kept by default"
    finally:
        await composition.close(services)
