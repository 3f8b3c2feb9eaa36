"""``/api/retranslate``: re-transcribing a segment through the running inference loop (the server's model) or
a lazily loaded configured local model, from an uploaded clip or from a stored job's audio."""

from __future__ import annotations

from asr.backends.model_files import resolve_model
from bench.metrics import normalize, wer_counts
from tests.rest_support import AUDIO, Api, creds, read_wav, reference, wav_bytes

pytest_plugins = ("tests.rest_fixtures",)

JFK = "single/jfk_inaugural_1961_excerpt.wav"
WIZARD = "single/librispeech_61-70968-0000.wav"


def wer(ref: str, hyp: str) -> float:
    errors, n = wer_counts(ref, hyp)
    return errors / n


async def test_segment_from_full_audio_of_a_job(api: Api):
    h = creds(api)
    r = await api.client.post("/api/transcribe/", files={"file": ("jfk.wav", (AUDIO / JFK).read_bytes(), "audio/wav")},
                              headers=h)
    assert r.status_code == 202, r.text
    job = r.json()["job_id"]
    row = await api.wait_transcript(job, h)
    seg = row["segments"][0]
    before = api.svc.engine.stats.requests
    r = await api.client.post("/api/retranslate/segment-from-full", params={"job_id": job},
                              json={"segment_id": seg["id"]}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert api.svc.engine.stats.requests > before, "decoded by the running inference loop"
    assert body["segment_id"] == seg["id"] and body["model_used"] == api.settings.model
    assert set(body) >= {"segment_id", "text", "confidence", "speaker", "model_used"}
    assert 0 < body["confidence"] <= 1 and body["speaker"] == seg["speaker"]
    assert (body["start_time"], body["end_time"]) == (seg["start"], seg["end"])
    assert wer(seg["text"], body["text"]) < 0.4
    # an explicit range: the whole recording
    r = await api.client.post("/api/retranslate/segment-from-full", params={"job_id": job},
                              json={"segment_id": "all", "start_time": 0.0, "end_time": 11.0}, headers=h)
    assert r.status_code == 200 and wer(reference(JFK), r.json()["text"]) < 0.25
    r = await api.client.post("/api/retranslate/segment-from-full", params={"job_id": job},
                              json={"segment_id": "x", "start_time": 0, "end_time": 5, "model_name": "large-v3"},
                              headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "MODEL_NOT_AVAILABLE"
    assert api.settings.model in r.json()["error"]["details"]["available"]
    r = await api.client.post("/api/retranslate/segment-from-full", params={"job_id": job},
                              json={"segment_id": "x", "start_time": 5, "end_time": 2}, headers=h)
    assert r.status_code == 422
    r = await api.client.post("/api/retranslate/segment-from-full", params={"job_id": job},
                              json={"segment_id": "unknown"}, headers=h)
    assert r.status_code == 422
    r = await api.client.post("/api/retranslate/segment-from-full", params={"job_id": "nope"},
                              json={"segment_id": "x", "start_time": 0, "end_time": 1}, headers=h)
    assert r.status_code == 404
    if api.private:
        r = await api.client.post("/api/retranslate/segment-from-full", params={"job_id": job},
                                  json={"segment_id": seg["id"]}, headers=creds(api, "mallory"))
        assert r.status_code == 404


async def test_uploaded_clip_with_the_server_model_and_a_lazily_loaded_one(public_api: Api):
    api = public_api
    samples, rate = read_wav(AUDIO / WIZARD)
    clip = wav_bytes(samples, rate)
    form = {"segment_id": "seg-1", "start_time": "12.5", "end_time": "17.8", "speaker": "Dorothy"}
    r = await api.client.post("/api/retranslate/segment", files={"file": ("clip.wav", clip, "audio/wav")}, data=form)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["segment_id"] == "seg-1" and body["speaker"] == "Dorothy" and body["model_used"] == "tiny.en"
    assert body["start_time"] == 12.5 and "wizard" in normalize(body["text"])
    assert wer(reference(WIZARD), body["text"]) < 0.25

    # another configured local model (here: the bundled one by its directory) is loaded on first use
    other = resolve_model("tiny.en")
    api.svc.settings.retranslate_models = other
    try:
        r = await api.client.post("/api/retranslate/segment", files={"file": ("clip.wav", clip, "audio/wav")},
                                  data={"segment_id": "seg-2", "model_name": other})
        assert r.status_code == 200, r.text
        assert r.json()["model_used"] == other and wer(reference(WIZARD), r.json()["text"]) < 0.25
        assert other in api.app.state.retranslate_models.loaded()
    finally:
        api.svc.settings.retranslate_models = ""
    r = await api.client.post("/api/retranslate/segment", files={"file": ("clip.wav", clip, "audio/wav")}, data={})
    assert r.status_code == 422
    junk = {"file": ("clip.wav", b"RIFF0000WAVEjunk", "audio/wav")}
    r = await api.client.post("/api/retranslate/segment", files=junk, data={"segment_id": "s"})
    assert r.status_code == 422
    assert not list((api.data_dir / "tmp").glob("retranslate-*")), "clips are removed"
