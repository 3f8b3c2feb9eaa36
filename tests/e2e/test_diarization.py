"""Who said what in one mixed stream: the real speaker encoder, online clustering, live labels and corrections."""

from __future__ import annotations

import httpx
import numpy as np

from asr.diarization import DiarizationConfig, SpeakerDiarizer
from asr.diarization.encoder import SpeakerEncoder
from asr.vad import SileroModel
from bench.diarization import der, reference, timeline
from server.cli.live_client import load_pcm16k, stream_audio
from tests.e2e.test_participants import wait_done
from tests.http_support import TLS

PHONE = "multi/pyannote_sample_2spk_phone_conversation.wav"  # 30 s, Diane and Sheila
SEVEN = "multi/constructed_turns_real_voices_7spk.wav"  # 108 s, 7 voices, exact turns


def test_embeddings_tell_two_voices_apart(audio_dir):
    enc = SpeakerEncoder()
    a = load_pcm16k(audio_dir / "single/ljspeech_LJ001-0001_0016.wav")
    b = load_pcm16k(audio_dir / "single/librispeech_1221-135766_2utt.wav")
    ea = enc.embed_windows([a[16000 * k:16000 * (k + 1)] for k in range(2, 6)])
    eb = enc.embed_windows([b[16000 * k:16000 * (k + 1)] for k in range(2, 6)])
    assert np.allclose(np.linalg.norm(ea, axis=1), 1.0, atol=1e-5)
    same = float(np.mean(ea @ ea.T))
    other = float(np.mean(ea @ eb.T))
    assert same > other + 0.1, (same, other)


def test_seven_voices_streamed_in_small_chunks(audio_dir):
    """The constructed 7-speaker file fed as a live stream: speakers found without being told how many,
    DER against the exact reference turns, and labels that stay put as evidence accumulates."""
    audio = load_pcm16k(audio_dir / SEVEN)
    enc = SpeakerEncoder(threads=2)
    d = SpeakerDiarizer(SileroModel(), DiarizationConfig())
    for i in range(0, len(audio), 1600):  # 100 ms frames, one embedding batch per second
        d.feed(audio[i:i + 1600])
        if i // 1600 % 10 == 9:
            centers, windows = d.take_windows()
            d.add_embeddings(centers, enc.embed_windows(windows))
    centers, windows = d.take_windows(final=True)
    d.add_embeddings(centers, enc.embed_windows(windows), recluster=True)
    turns = d.turns()
    hyp = timeline([(t.start, t.end, str(t.speaker)) for t in turns], len(audio) / 16000)
    ref = reference(audio_dir / "rttm" / "constructed_turns_real_voices_7spk.rttm")
    assert der(ref, hyp) <= 0.15
    assert 6 <= len(d.speakers) <= 8
    assert all(t.end > t.start for t in turns) and all(a.end <= b.start for a, b in zip(turns, turns[1:], strict=False))


def test_one_voice_over_two_minutes_stays_one_speaker(audio_dir):
    """A long single-speaker recording drifts in embedding space; it must not come out as several voices."""
    audio = load_pcm16k(audio_dir / "single/ljspeech_LJ001-0001_0016.wav")
    enc = SpeakerEncoder(threads=2)
    d = SpeakerDiarizer(SileroModel(), DiarizationConfig())
    for i in range(0, len(audio), 16000 * 5):
        d.feed(audio[i:i + 16000 * 5])
        centers, windows = d.take_windows()
        d.add_embeddings(centers, enc.embed_windows(windows))
    centers, windows = d.take_windows(final=True)
    d.add_embeddings(centers, enc.embed_windows(windows), recluster=True)
    assert d.speakers == [1]


def test_max_speakers_is_a_ceiling(audio_dir):
    audio = load_pcm16k(audio_dir / SEVEN)[: 16000 * 60]
    enc = SpeakerEncoder(threads=2)
    d = SpeakerDiarizer(SileroModel(), DiarizationConfig(max_speakers=2))
    d.feed(audio)
    centers, windows = d.take_windows(final=True)
    d.add_embeddings(centers, enc.embed_windows(windows), recluster=True)
    assert 1 <= len(d.speakers) <= 2


async def test_live_stream_is_labelled_corrected_stored_and_renamed(server, audio_dir):
    """Two voices in one WebSocket stream: finals carry speakers (split at turn changes), `diarization`
    messages give the turns, the stored transcript and its speaker turns survive the end-of-stream pass,
    and a rename reaches the speakers list and the segments."""
    audio = load_pcm16k(audio_dir / PHONE)
    rec = await stream_audio(server.url, audio, speed=3.0, settle_s=120)
    finals = rec.finals
    assert finals and all(f["speaker"] in ("Speaker 1", "Speaker 2") for f in finals)
    assert len({f["speaker"] for f in finals}) == 2
    turns = [r.data for r in rec.of_type("diarization")]
    assert turns and all(t["speaker_id"] in ("S1", "S2") and t["end_time"] > t["start_time"] for t in turns)
    ids = [f["segment_id"] for f in finals]
    assert len(ids) == len(set(ids)), "one final per segment, split parts included"
    async with httpx.AsyncClient(verify=TLS, base_url=server.url, timeout=30) as client:
        tid = rec.transcript_id
        spk = (await client.get(f"/v1/transcripts/{tid}/speakers")).json()
        assert spk["pass"] == "offline" and {s["label"] for s in spk["speakers"]} == {"Speaker 1", "Speaker 2"}
        hyp = timeline([(t["start"], t["end"], t["speaker_id"]) for t in spk["turns"]], 30.0)
        assert der(reference(audio_dir / "rttm" / "pyannote_sample_2spk_phone_conversation.rttm"), hyp) <= 0.2
        stored = (await client.get(f"/v1/transcripts/{tid}")).json()["segments"]
        assert {s["speaker"] for s in stored} == {"Speaker 1", "Speaker 2"}
        r = await client.patch(f"/v1/transcripts/{tid}", json={"participants": [{"id": "Speaker 1", "name": "Diane"}]})
        assert r.status_code == 200, r.text
        spk = (await client.get(f"/v1/transcripts/{tid}/speakers")).json()
        assert {s["name"] for s in spk["speakers"]} == {"Diane", "Speaker 2"}
        stored = (await client.get(f"/v1/transcripts/{tid}")).json()["segments"]
        assert {s["speaker"] for s in stored} == {"Diane", "Speaker 2"}
        srt_text = (await client.get(f"/v1/transcripts/{tid}", params={"transcript_format": "srt"})).text
        assert "Diane" in srt_text


async def test_diarization_can_be_turned_off_per_stream(server, audio_dir):
    audio = load_pcm16k(audio_dir / PHONE)[: 16000 * 12]
    rec = await stream_audio(server.url, audio, speed=3.0, settle_s=60, start_params={"diarization": False})
    assert rec.finals and all(f["speaker"] is None for f in rec.finals)
    assert not rec.of_type("diarization")


async def test_uploaded_conversation_is_diarized(server, audio_dir):
    """A recorded two-person call uploaded as one file: speakers labelled as in a live stream, turns stored."""
    async with httpx.AsyncClient(verify=TLS, base_url=server.url, timeout=60) as client:
        tid = (await client.post("/v1/transcripts/", json={"name": "uploaded call"})).json()["id"]
        r = await client.post(f"/v1/transcripts_audio/{tid}/upload",
                              files={"file": ("call.wav", (audio_dir / PHONE).read_bytes(), "audio/wav")})
        assert r.status_code == 202, r.text
        body = await wait_done(server.url, tid)
        assert body["status"] == "completed"
        assert {s["speaker"] for s in body["segments"]} == {"Speaker 1", "Speaker 2"}
        spk = (await client.get(f"/v1/transcripts/{tid}/speakers")).json()
        hyp = timeline([(t["start"], t["end"], t["speaker_id"]) for t in spk["turns"]], 30.0)
        assert der(reference(audio_dir / "rttm" / "pyannote_sample_2spk_phone_conversation.rttm"), hyp) <= 0.2
        off = (await client.post("/v1/transcripts/", json={"name": "no speakers"})).json()["id"]
        r = await client.post(f"/v1/transcripts_audio/{off}/upload", data={"diarization": "false"},
                              files={"file": ("call.wav", (audio_dir / PHONE).read_bytes(), "audio/wav")})
        assert r.status_code == 202, r.text
        body = await wait_done(server.url, off)
        assert body["segments"] and all(s["speaker"] is None for s in body["segments"])
