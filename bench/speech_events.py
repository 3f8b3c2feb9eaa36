"""``voxlane bench --speech-events``: how soon the Realtime route tells a voice agent that speech started and
stopped, against the reference utterance times of real speech.

Each file is streamed in real time (100 ms appends of 24 kHz PCM, as an OpenAI client sends them) through
``WS /v1/realtime?intent=transcription`` with the server's turn detection, all files at once. A file with
reference utterances (``segments``) is streamed as those utterances with ``--turn-gap`` seconds of silence between
them (:func:`spaced`); another file as recorded, its utterances the RTTM turns (turns closer than the session's
``silence_duration_ms`` are one: no stop is due between them). ``speech_started`` latency: when the event
arrived, after the utterance's onset was sent; ``speech_stopped``: after its end was sent. The stop cannot come
before the silence window has passed, so its target is that window plus a margin; a reference with no event
within 2 s of it counts as missed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.metrics import fmt, percentile

CHUNK_S = 0.1
MATCH_S = 2.0  # an event this far from a reference time is not its event


def utterances(rttm: Path, merge_gap: float) -> list[tuple[float, float]]:
    turns = sorted((float(p[3]), float(p[3]) + float(p[4])) for p in (line.split() for line in
                   rttm.read_text().splitlines()) if len(p) > 4 and p[0] == "SPEAKER")
    out: list[tuple[float, float]] = []
    for start, end in turns:
        if out and start - out[-1][1] < merge_gap:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _pcm24k(samples: np.ndarray) -> bytes:
    from media.resample import Resampler

    r = Resampler(16000, 24000)
    up = np.concatenate([r.process(samples.astype(np.float32)), r.flush()])
    return np.clip(np.round(up * 32768), -32768, 32767).astype("<i2").tobytes()


async def stream_file(url: str, token: str | None, samples: np.ndarray) -> dict[str, Any]:
    """Stream one file in real time; (silence window, [(event, audio ms, arrival s after the stream's t0)])."""
    import websockets

    ws_url = url.replace("http", "ws", 1).rstrip("/") + "/v1/realtime?intent=transcription&model=gpt-4o-transcribe"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    pcm, step = _pcm24k(samples), int(CHUNK_S * 24000) * 2
    events: list[tuple[str, int, float]] = []
    async with websockets.connect(ws_url, additional_headers=headers, max_size=None) as ws:
        created = json.loads(await ws.recv())
        silence_ms = created["session"]["audio"]["input"]["turn_detection"]["silence_duration_ms"]
        t0 = time.monotonic()

        async def receive() -> None:
            async for raw in ws:
                e = json.loads(raw)
                if e["type"] == "input_audio_buffer.speech_started":
                    events.append(("started", e["audio_start_ms"], time.monotonic() - t0))
                elif e["type"] == "input_audio_buffer.speech_stopped":
                    events.append(("stopped", e["audio_end_ms"], time.monotonic() - t0))
                elif e["type"] == "error":
                    raise RuntimeError(e["error"])

        reader = asyncio.create_task(receive())
        pcm += bytes(int((silence_ms / 1000 + 1.0) / CHUNK_S) * step)  # silence after: the last stop is due
        for k, start in enumerate(range(0, len(pcm), step)):
            await asyncio.sleep(max(0.0, t0 + (k + 1) * CHUNK_S - time.monotonic()))  # the chunk's audio is out
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(pcm[start:start + step]).decode()}))
        await asyncio.sleep(0.5)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    return {"silence_ms": silence_ms, "events": events}


def latencies(refs: list[tuple[float, float]], events: list[tuple[str, int, float]]) -> dict[str, list[float]]:
    """Per reference utterance: arrival of the nearest started (stopped) event minus its onset (end)."""
    out: dict[str, list[float]] = {"started": [], "stopped": [], "missed_started": [], "missed_stopped": []}
    for kind, i in (("started", 0), ("stopped", 1)):
        for ref in refs:
            near = [(abs(ms / 1000 - ref[i]), at) for k, ms, at in events if k == kind
                    and abs(ms / 1000 - ref[i]) <= MATCH_S]
            if near:
                out[kind].append(round(min(near)[1] - ref[i], 3))
            else:
                out[f"missed_{kind}"].append(ref[i])
    return out


def spaced(samples: np.ndarray, segments: list[dict[str, Any]], gap_s: float) -> tuple[np.ndarray,
                                                                                      list[tuple[float, float]]]:
    """The file's reference utterances (energy-trimmed clips, exact times) one after another with ``gap_s`` of
    silence between them, and their times in the new stream. Recorded back to back, clips follow each other
    closer than a turn ends (the LJ and LibriSpeech files: one utterance to the ear), so a stream as recorded
    gives one onset and one end a file; spaced, every utterance is a turn to start and end."""
    parts, times, cursor = [], [], 0.0
    gap = np.zeros(int(gap_s * 16000), dtype=np.float32)
    for seg in segments:
        clip = samples[int(seg["start"] * 16000):int(seg["end"] * 16000)]
        parts += [gap, clip]
        cursor += gap_s
        times.append((round(cursor, 3), round(cursor + len(clip) / 16000, 3)))
        cursor += len(clip) / 16000
    return np.concatenate(parts), times


async def run_speech_events(url: str, token: str | None, audio_dir: Path, refs: dict[str, Any],
                            files: list[str], explicit: bool = False, gap_s: float = 1.5) -> dict[str, Any]:
    """Unless the files were named (``explicit``), those whose turn times are only approximate (an energy VAD's:
    the JFK excerpt, the sonnets, the MFA corpora, off by up to a second) are left out: latencies of a few hundred
    milliseconds cannot be read against them."""
    from server.cli.live_client import load_pcm16k

    chosen = [f for f in files if refs[f].get("rttm") and (explicit or "approximate" not in
                                                            (refs[f].get("rttm_kind") or ""))]
    streams, ref_times = [], {}
    for f in chosen:
        audio, segments = load_pcm16k(audio_dir / f), refs[f].get("segments") or []
        if gap_s > 0 and segments:
            audio, ref_times[f] = spaced(audio, segments, gap_s)
        streams.append(audio)
    runs = await asyncio.gather(*(stream_file(url, token, audio) for audio in streams))
    per: dict[str, Any] = {}
    pooled: dict[str, list[float]] = {"started": [], "stopped": []}
    missed = [0, 0]
    for f, run in zip(chosen, runs, strict=True):
        ref = ref_times.get(f) or utterances(audio_dir / refs[f]["rttm"], run["silence_ms"] / 1000)
        lat = latencies(ref, run["events"])
        pooled["started"] += lat["started"]
        pooled["stopped"] += lat["stopped"]
        missed[0], missed[1] = missed[0] + len(lat["missed_started"]), missed[1] + len(lat["missed_stopped"])
        per[f] = {"utterances": ref, "events": run["events"], **lat}
    silence_ms = runs[0]["silence_ms"] if runs else None
    figures = {k: {"p50": percentile(v, 50), "p95": percentile(v, 95), "n": len(v)} for k, v in pooled.items()}
    return {"mode": "speech-events", "files": chosen, "turn_gap_s": gap_s, "silence_duration_ms": silence_ms,
            "latency_s": figures,
            "missed": {"started": missed[0], "stopped": missed[1]},
            "targets_s": {"started_p95": 0.3, "stopped_p95": None if silence_ms is None else silence_ms / 1000 + 0.2},
            "per_file": per}


def speech_event_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    cols = ["event", "n", "p50 s", "p95 s", "target p95 s", "missed"]
    rows = []
    for kind in ("started", "stopped"):
        f = result["latency_s"][kind]
        rows.append([f"speech_{kind}", str(f["n"]), fmt(f["p50"], 3), fmt(f["p95"], 3),
                     fmt(result["targets_s"][f"{kind}_p95"], 3), str(result["missed"][kind])])
    return cols, rows
