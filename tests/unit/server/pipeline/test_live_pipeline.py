"""The live pipeline built by the composition root with a stand-in model, on both databases: a publisher's audio
is recorded, its finals are stored before anyone hears them, and the transcript completes once, with the one
lifecycle every source shares. No speech model is loaded: this runs in seconds."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np

from media import SAMPLE_RATE, float_to_s16
from protocol import Participant, StartParams
from server import services as composition
from server.cli.live_client import load_pcm16k
from server.settings import Settings
from tests.fake_backend import WORDS, FakeBackend

pytest_plugins = ("tests.db_support",)
SPEECH = Path(__file__).resolve().parents[5] / "shared" / "audio" / "single" / "jfk_inaugural_1961_excerpt.wav"


async def test_a_stream_is_recorded_stored_then_published_and_completed_once(database_url: str, tmp_path: Path):
    settings = Settings(data_dir=str(tmp_path / "data"), database_url=database_url, diarization="off",
                        status_interval=0, max_audio_lead_seconds=0, publisher_idle_timeout=0)
    services = await composition.build(settings, backend=FakeBackend())
    try:
        row = await services.store.create_transcript(name="pipeline")
        tid = row["id"]
        sub = services.hub.subscribe(tid)
        heard: list[dict] = []
        stored_when_heard: list[bool] = []

        async def listen() -> None:
            while (msg := await sub.queue.get()) is not None:
                heard.append(msg)
                if msg["type"] == "transcription" and msg["data"]["is_final"] and msg["data"]["text"]:
                    ids = {s["id"] for s in await services.store.get_segments(tid)}
                    stored_when_heard.append(msg["data"]["segment_id"] in ids)
                if msg["type"] == "status" and msg["data"]["status"] == "completed" \
                        and msg["data"].get("progress") == 100.0:
                    return

        listener = asyncio.create_task(listen())
        audio = load_pcm16k(SPEECH)
        pub = await services.live.get(tid).add_publisher(StartParams(format="pcm_s16le", sample_rate=SAMPLE_RATE,
                                                                      channels=1))
        pcm = float_to_s16(audio)
        for i in range(0, len(pcm), 3200):  # 100 ms frames
            await pub.feed_bytes(pcm[i:i + 3200])
        await pub.finish()
        await asyncio.wait_for(listener, 30)

        finals = [m["data"] for m in heard if m["type"] == "transcription" and m["data"]["is_final"]
                  and m["data"]["text"]]
        assert finals and all(stored_when_heard), "every final is stored before a subscriber hears it"
        stored = await services.store.get_segments(tid)
        assert [s["id"] for s in stored] == [f["segment_id"] for f in finals]
        assert all(set(s["text"].split()) <= set(WORDS) for s in stored)
        # a word per 0.3 s of speech, kept: the loop guard cut one name said again and again to its first
        assert max(len(s["text"].split()) for s in stored) > 7, [s["text"] for s in stored]
        completed = [m for m in heard if m["type"] == "status" and m["data"]["status"] == "completed"
                     and m["data"].get("progress") == 100.0]
        assert len(completed) == 1
        row = await services.store.get_transcript(tid)
        assert row["status"] == "completed"
        assert abs(row["duration"] - len(audio) / SAMPLE_RATE) < 0.05
        recording = services.audio_dir(tid) / "recording.wav"
        assert recording.is_file()
        samples = (recording.stat().st_size - 44) // 2
        assert abs(samples - len(audio)) <= SAMPLE_RATE // 100
        assert np.isfinite(row["duration"])
    finally:
        await composition.close(services)


async def test_sixteen_streams_are_taken_in_by_the_same_threads_and_each_keeps_its_order(tmp_path: Path):
    """Sixteen publishers at once: no thread more than one, each stream's frames recorded in the order sent, its
    speech after three seconds of silence heard where it was said, and the ingest threads take several streams'
    frames in one pass (one model call scores a chunk of each)."""
    settings = Settings(data_dir=str(tmp_path / "data"), diarization="off", status_interval=0,
                        max_audio_lead_seconds=0, publisher_idle_timeout=0)
    services = await composition.build(settings, backend=FakeBackend())
    try:
        assert services.ingest is not None
        silence = np.zeros(3 * SAMPLE_RATE, dtype=np.float32)
        pcm = float_to_s16(np.concatenate([silence, load_pcm16k(SPEECH), silence]))
        tids = [(await services.store.create_transcript(name=f"stream {i}"))["id"] for i in range(16)]
        first = await services.live.get(tids[0]).add_publisher(StartParams(format="pcm_s16le",
                                                                           sample_rate=SAMPLE_RATE, channels=1))
        threads = threading.active_count()
        pubs = [first] + [await services.live.get(t).add_publisher(StartParams(
            format="pcm_s16le", sample_rate=SAMPLE_RATE, channels=1)) for t in tids[1:]]
        assert threading.active_count() == threads, "a stream more is no thread more"
        passes, pieces = services.ingest.passes, services.ingest.pieces

        async def stream(pub) -> None:
            for i in range(0, len(pcm), 3200):  # 100 ms frames
                await pub.feed_bytes(pcm[i:i + 3200])
            await pub.finish()

        await asyncio.gather(*(stream(p) for p in pubs))
        taken = services.ingest.pieces - pieces
        assert taken >= 16 * (len(pcm) // 3200)
        assert services.ingest.passes - passes < taken, "several streams' frames in one pass"
        for tid in tids:
            segments = await services.store.get_segments(tid)
            assert segments and all(set(s["text"].split()) <= set(WORDS) for s in segments)
            assert segments[0]["start"] >= 2.5, "the speech after the silence is heard where it was said"
            recorded = (services.audio_dir(tid) / "recording.wav").read_bytes()[44:]
            assert recorded == pcm[:len(recorded)] and len(pcm) - len(recorded) < 64
    finally:
        await composition.close(services)


async def test_a_stream_s_key_terms_reach_the_model_and_its_words_without_moving_a_committed_one(tmp_path: Path):
    """The stand-in model writes "word" (told to); with the key term "Wordle" every stored word is "Wordle", every
    decode request carries the term as hotwords, and no word a partial showed as final reads otherwise in its
    final."""
    settings = Settings(data_dir=str(tmp_path / "data"), diarization="off", status_interval=0,
                        max_audio_lead_seconds=0, publisher_idle_timeout=0)
    backend = FakeBackend(word="word")
    seen: list[str] = []
    decode = backend.transcribe

    def recorded(requests):  # noqa: ANN001, ANN202
        seen.extend(r.hotwords for r in requests)
        return decode(requests)

    backend.transcribe = recorded  # type: ignore[method-assign]
    services = await composition.build(settings, backend=backend)
    try:
        tid = (await services.store.create_transcript(name="key terms"))["id"]
        sub = services.hub.subscribe(tid)
        pub = await services.live.get(tid).add_publisher(StartParams(format="pcm_s16le", sample_rate=SAMPLE_RATE,
                                                                      channels=1, key_terms=["Wordle"]))
        pcm = float_to_s16(load_pcm16k(SPEECH))
        for i in range(0, len(pcm), 3200):
            await pub.feed_bytes(pcm[i:i + 3200])
        await pub.finish()
        shown: dict[str, list] = {}
        finals: dict[str, list] = {}
        while not sub.queue.empty():
            msg = sub.queue.get_nowait()
            if msg is None or msg["type"] != "transcription":
                continue
            d = msg["data"]
            words = [(w["text"], w["start"], w["end"]) for w in d["words"] if w["final"] or d["is_final"]]
            if d["is_final"]:
                finals[d["segment_id"]] = words
            elif len(words) > len(shown.get(d["segment_id"], [])):
                shown[d["segment_id"]] = words
        assert seen and set(seen) == {"Wordle"}
        assert all(finals[sid][:len(words)] == words for sid, words in shown.items())
        stored = await services.store.get_segments(tid)
        assert stored and all(set(s["text"].split()) == {"Wordle"} for s in stored)
    finally:
        await composition.close(services)


async def test_a_stream_without_key_terms_takes_its_transcript_s(tmp_path: Path):
    """A meeting room's key terms are on its meetings' transcripts (``meta.key_terms``): every participant stream
    that names none is steered and corrected by them; one that names its own keeps its own."""
    settings = Settings(data_dir=str(tmp_path / "data"), diarization="off", status_interval=0,
                        max_audio_lead_seconds=0, publisher_idle_timeout=0)
    services = await composition.build(settings, backend=FakeBackend())
    try:
        tid = (await services.store.create_transcript(name="meeting", meta={"key_terms": ["Wordle"]}))["id"]
        live = services.live.get(tid)
        plain = await live.add_publisher(StartParams(format="pcm_s16le", sample_rate=SAMPLE_RATE, channels=1,
                                                     participant=Participant(id="a", name="Ann")))
        own = await live.add_publisher(StartParams(format="pcm_s16le", sample_rate=SAMPLE_RATE, channels=1,
                                                   participant=Participant(id="b", name="Bo"), key_terms=["Worf"]))
        assert plain.session.config.key_terms == ("Wordle",) and own.session.config.key_terms == ("Worf",)
        await plain.finish()
        await own.finish()
    finally:
        await composition.close(services)
