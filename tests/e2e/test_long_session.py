"""A 60-minute live stream against a real server: real speech clips between 150-210 s of low noise, sent faster than
real time (the model only reads the speech). Over the hour the server's RSS, its asyncio task count and the
stream's ``lag_seconds`` stay flat, nothing is transcribed in the silences, and nothing repeats in a loop.

Part of the normal suite: it takes about a minute on two cores. Each silence is held on the wall until the server
has caught up (at most 30 s), so a machine busy with other work slows the test instead of piling one clip's backlog
onto the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from statistics import median

import httpx
import pytest

from bench.metrics import normalize, wer_counts
from bench.soak import soak_program, soak_stream
from tests.conftest import RunningServer, served
from tests.http_support import TLS

MINUTES = 60
SPEED = 30.0  # x real time for the speech
SILENCE_SPEED = 90.0  # and for the silences (the model reads none of them): under a minute of sending for the hour
SILENCES = (150.0, 210.0)  # s between clips: 19 clips in the hour, each a model reading the soak server pays for
CLIPS = ["single/librispeech_61-70968-0000.wav", "single/librispeech_1089-134686_1utt.wav",
         "single/jfk_inaugural_1961_excerpt.wav", "single/librispeech_2412-153948-0000.wav"]


@pytest.fixture(scope="module")
def soak_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # decodes on every core, as a node does by default (the suite's servers take one thread): the hour's lag is
    # compared early against late, and a lone stream's decodes take about a quarter longer on one thread
    with served(tmp_path_factory.mktemp("soak"), VOXLANE_MAX_AUDIO_LEAD_SECONDS="0",
                VOXLANE_STATUS_INTERVAL="0.5", VOXLANE_DIARIZATION="off", VOXLANE_CPU_THREADS="0") as srv:
        yield srv


def _longest_repeat(words: list[str], max_n: int = 4) -> int:
    """How many times in a row one n-gram (n <= max_n) occurs: a decoding loop repeats a phrase many times."""
    best = 1
    for n in range(1, max_n + 1):
        i = 0
        while i + n <= len(words):
            k = 1
            while words[i + k * n:i + (k + 1) * n] == words[i:i + n]:
                k += 1
            best = max(best, k)
            i += 1
    return best


async def test_an_hour_stays_flat(soak_server, audio_dir, references):
    program = soak_program(references, MINUTES, CLIPS, silence_s=SILENCES)
    assert program[-1].start + program[-1].seconds > (MINUTES - 2) * 60
    rec = await soak_stream(soak_server.url, program, audio_dir, speed=SPEED, silence_speed=SILENCE_SPEED,
                            sample_every_s=120,
                            pid=soak_server.process.pid, settle_s=240, catch_up_s=30)
    assert rec.completed and not rec.errors, rec.errors
    samples = rec.samples[1:]  # the first is before any audio
    report = "\n".join(str(s) for s in rec.samples)

    # memory and tasks: the last quarter of the hour holds what the first quarter held. RSS is sampled between
    # clips, once the model has caught up, and compared by each quarter's median: a leak lifts every sample
    quarter = max(1, len(samples) // 4)
    early, late = samples[:quarter], samples[-quarter:]
    assert median(s["rss_mb"] for s in late) - median(s["rss_mb"] for s in early) < 80, report
    assert max(s["tasks"] for s in late) <= max(s["tasks"] for s in early) + 5, report
    # lag: it never builds up over the hour (each silence gives the model time to catch up). By quarter medians
    # too: a build-up lifts every clip's lag, while one decode slowed by other work on the machine, with the
    # silence sent 90x real time meanwhile, shows as a single spike of a minute or two in stream seconds
    assert median(s["lag_max_s"] for s in late) <= max(median(s["lag_max_s"] for s in early) * 2, 5.0), report

    # text only where speech was, and no loops
    speech = [(p.start, p.start + p.seconds) for p in program if p.file is not None]
    for f in rec.finals:
        assert any(a - 1.0 <= f["start"] and f["end"] <= b + 1.5 for a, b in speech), f"text in a silence: {f}"
        assert _longest_repeat(normalize(f["text"])) <= 3, f"a repetition loop: {f['text']}"
    ref = " ".join(p.text for p in program if p.file is not None)
    said = " ".join(f["text"] for f in rec.finals)
    errors, words = wer_counts(ref, said)
    assert errors / words < 0.25, said
    assert len(normalize(said)) < 1.3 * words

    async with httpx.AsyncClient(verify=TLS, timeout=30) as client:
        body = (await client.get(f"{soak_server.url}/v1/transcripts/{rec.transcript_id}")).json()
    assert body["status"] == "completed"
    assert abs(body["duration"] - rec.audio_seconds) < 1.0
    assert len(body["segments"]) == len(rec.finals)
