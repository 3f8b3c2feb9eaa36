"""Recorded audio (uploads, kiosk chunks, jobs) through the same session pipeline as live audio.

The file is decoded in blocks and fed faster than real time to a file-mode session
(:func:`~asr.transcriber.open_session`) at ``BULK`` priority, so the inference loop serves live
streams first; backpressure keeps at most a couple of segments waiting, so a
long upload never sits in memory.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asr.inference import Priority
from asr.transcriber import Session, open_session
from media import SAMPLE_RATE, AudioTooLong, DecodeError, WavAppender, iter_decode_file, probe_file
from protocol import Error, Status, Transcription
from protocol.messages import StatusValue
from server.http.audio_limits import AUDIO_TOO_LONG, claims_too_long, too_long_message
from server.jobs.progress import BLOCK_SECONDS
from server.pipeline.channels import channel_participants
from server.pipeline.configs import stream_config
from server.pipeline.convert import unredacted_keeper, wire_emit
from server.pipeline.ingest import IngestQueue
from server.pipeline.publisher import PIECE_SECONDS
from server.pipeline.recordings import recording_key
from server.pipeline.speaker_relay import LiveSpeakers, live_speakers, settle_speakers

if TYPE_CHECKING:
    from server.pipeline.parts import StreamParts

log = logging.getLogger("voxlane.files")


@dataclass
class FileResult:
    duration: float
    segments: int
    error: str | None = None
    limit_seconds: float | None = None
    """Set when the file was refused for passing its ``max_seconds`` (``error`` says so)."""


async def transcribe_file(services: StreamParts, transcript_id: str, path: str | Path, *, offset: float = 0.0,
                          speaker: str | None = None, participant_id: str | None = None,
                          emit: Callable[[Transcription], Awaitable[None]] | None = None,
                          on_progress: Callable[[float, float], Awaitable[None]] | None = None,
                          publish_status: bool = True, language: str | None = None,
                          prompt: str | None = None, split_channels: bool = False,
                          channel_names: list[str] | None = None, diarize: bool = False,
                          max_seconds: float | None = None, id_seed: str | None = None,
                          key_terms: Sequence[str] = ()) -> FileResult:
    """Transcribe one file into ``transcript_id``; finals are stored and broadcast like live ones.

    ``offset`` places the file on the transcript's timeline (kiosk chunks); ``prompt`` is context for the
    first segment; ``key_terms`` steer the model and the correction pass (``server.features.correction``) writes
    their near-misses with their spelling. With ``split_channels`` every channel is its own participant
    (``channel-1`` ..., named from ``channel_names`` or ``Channel 1`` ...) with its own session and its own audio
    file, as a live split stream has. ``diarize`` labels the speakers of a mixed file (not of a participant's or
    a channel's audio), as a live mixed stream is labelled, and stores its turns. Raises nothing for bad audio:
    the result carries the error and subscribers get ``error`` + ``status failed``.

    ``max_seconds`` is the caller's limit on the file's length, counted from the decoded audio (a header that
    understates it is not trusted): decoding stops there and the result is an error with ``limit_seconds``,
    having fed the model no more than the limit. A header that already admits more is refused undecoded.

    ``id_seed`` (a job's chunk id) derives the segment ids, so a job run again stores the same segments again
    rather than a second copy of them.
    """
    hub = services.hub

    async def status(state: StatusValue, progress: float | None, message: str) -> None:
        if publish_status:
            await hub.publish(transcript_id, Status(status=state, stage="transcription", progress=progress,
                                                    message=message, participant_id=participant_id))

    try:
        info = await asyncio.to_thread(probe_file, path)
    except DecodeError as exc:
        await _fail(services, transcript_id, str(exc), publish_status, participant_id)
        return FileResult(0.0, 0, str(exc))
    if max_seconds is not None and claims_too_long(info, max_seconds):
        return await _too_long(services, transcript_id, max_seconds, 0.0, 0, publish_status, participant_id)
    total = float(info.get("duration") or 0.0)
    config = stream_config(services.settings, Priority.BULK)
    config.live = False
    config.language = language or config.language
    config.initial_prompt = prompt or ""
    config.key_terms = tuple(key_terms)
    width = max(1, int(info.get("channels") or 1)) if split_channels else None
    people: list[tuple[str | int | None, str | None]] = (
        [(p.id, p.name) for p in channel_participants(width, channel_names)] if width else [(participant_id, speaker)])
    correction = services.correction(config.key_terms, names=[name for _, name in people if name])
    keep = unredacted_keeper(services, transcript_id)
    deliver = emit or (lambda m: hub.publish(transcript_id, m))
    speakers: LiveSpeakers | None = None
    if diarize and not width and participant_id is None and speaker is None:
        speakers = live_speakers(services, transcript_id, offset)
        deliver = speakers.relay(deliver)
    sessions = [open_session(services.model[0], vad_model=services.model[1],
                              emit=wire_emit(deliver, correction, keep), config=replace(config), offset=offset,
                              speaker=name, participant_id=pid, listener=speakers,
                              segment_ids=None if id_seed is None else derived_ids(f"{id_seed}:{n}"))
                for n, (pid, name) in enumerate(people)]
    keys = [recording_key(transcript_id, pid) for pid, _ in people] if width else []
    wavs = await _channel_files(services, keys)
    assert services.ingest is not None  # a node that transcribes has its ingest threads
    queues = [services.ingest.queue() for _ in sessions]  # the VAD off the event loop, beside the live streams'
    for session in sessions:
        session.start()
    if width:
        await _record_channels(services, transcript_id, people, "join", offset)
    await status("processing", 0.0, "transcribing")
    blocks = iter_decode_file(path, chunk_seconds=BLOCK_SECONDS, split_channels=width, max_seconds=max_seconds)
    fed = done = 0.0
    try:
        while True:
            block = await asyncio.to_thread(next, blocks, None)
            if block is None:
                break
            tracks = [block] if not width else [np.ascontiguousarray(block[:, i]) for i in range(width)]
            await asyncio.gather(*(_take_in(queue, session, samples)
                                   for queue, session, samples in zip(queues, sessions, tracks, strict=True)))
            if wavs:
                await asyncio.to_thread(_append, wavs, tracks)
            fed += len(block) / SAMPLE_RATE
            for session in sessions:
                # a closed segment is read before more audio goes in: the progress reported after each block is
                # what has been transcribed, not how far decoding ran ahead (the VAD of a block costs little)
                await session.wait_backlog(0)
            done = max(done, min(session.transcribed_until for session in sessions))  # never reported backwards
            if on_progress is not None:
                await on_progress(done, max(total, fed))
            pct = min(99.0, 100.0 * done / max(total, fed, 1e-6))
            await status("processing", round(pct, 1), f"transcribed {done:.0f} s of {max(total, fed):.0f} s")
    except AudioTooLong as exc:
        await _cancel(sessions, wavs)
        return await _too_long(services, transcript_id, exc.limit_seconds, fed,
                               sum(s.segments_emitted for s in sessions), publish_status, participant_id)
    except DecodeError as exc:
        await _cancel(sessions, wavs)
        await _fail(services, transcript_id, str(exc), publish_status, participant_id)
        return FileResult(fed, sum(s.segments_emitted for s in sessions), str(exc))
    except BaseException:  # cancelled (the transcript was deleted, the server is stopping), or the caller stopped
        await _cancel(sessions, wavs)  # it (a newer attempt holds the transcript): no session is left running
        raise
    await asyncio.gather(*(session.finish(flush_timeout=600.0) for session in sessions))
    if speakers is not None:
        await settle_speakers(services, transcript_id, speakers)
    if wavs:
        await asyncio.to_thread(_close, wavs)
        for key in keys:  # each channel's recording reaches the audio store once it is closed
            await services.audio.publish(key)
        await _record_channels(services, transcript_id, people, "leave", offset + fed)
    emitted = sum(s.segments_emitted for s in sessions)
    error = next((s.error for s in sessions if s.error), None)
    if error:
        await _fail(services, transcript_id, error, publish_status, participant_id)
        return FileResult(fed, emitted, error)
    if on_progress is not None:
        await on_progress(fed, fed)
    return FileResult(fed, emitted)


def derived_ids(seed: str) -> Callable[[], str]:
    """Segment ids that are a function of ``seed`` and their order: 12 hex digits, as random ones have."""
    counter = itertools.count()
    return lambda: hashlib.sha256(f"{seed}:{next(counter)}".encode()).hexdigest()[:12]


async def _channel_files(services: StreamParts, keys: list[str]) -> list[WavAppender]:
    """Each channel's own recording, started afresh (a retried file rewrites them)."""
    out = []
    for key in keys:
        path = await services.audio.working_file(key)
        await asyncio.to_thread(path.unlink, missing_ok=True)
        out.append(await asyncio.to_thread(WavAppender, path))
    return out


def _append(wavs: list[WavAppender], tracks: list[np.ndarray]) -> None:
    for wav, samples in zip(wavs, tracks, strict=True):
        wav.append(samples)


def _close(wavs: list[WavAppender]) -> None:
    for wav in wavs:
        wav.sync()
        wav.close()


async def _cancel(sessions: list[Session], wavs: list[WavAppender]) -> None:
    await asyncio.gather(*(s.cancel() for s in sessions))
    await asyncio.to_thread(_close, wavs)


async def _record_channels(services: StreamParts, transcript_id: str, people: list[tuple[str | int | None, str | None]],
                           kind: str, t: float) -> None:
    """Join (at the start) and leave (at the end) of each channel's participant, as live participants have;
    a retried file replaces the events an earlier attempt left."""
    ids = {pid for pid, _ in people}
    added: list[dict[str, Any]] = []
    for pid, name in people:
        event: dict[str, Any] = {"type": kind, "participant_id": pid, "data": {}, "time": round(t, 3)}
        if kind == "join":
            event["participant"] = {"id": pid, "name": name}
        added.append(event)

    def replaced(meta: dict[str, Any]) -> dict[str, Any]:
        kept = [e for e in meta.get("participant_events") or [] if not (
            isinstance(e, dict) and e.get("participant_id") in ids and e.get("type") in (kind, "leave"))]
        meta["participant_events"] = kept + added
        return meta

    await services.store.edit_transcript_meta(transcript_id, replaced, fence=services.hub.fence_of(transcript_id))


async def _too_long(services: StreamParts, transcript_id: str, limit: float, fed: float, segments: int,
                    publish: bool, participant_id: str | None) -> FileResult:
    message = too_long_message(limit)
    await _fail(services, transcript_id, message, publish, participant_id, code=AUDIO_TOO_LONG,
                details={"limit_seconds": limit})
    return FileResult(fed, segments, message, limit_seconds=limit)


async def _fail(services: StreamParts, transcript_id: str, message: str, publish: bool,
                participant_id: str | None, code: str = "AUDIO_FORMAT_ERROR",
                details: dict[str, Any] | None = None) -> None:
    log.warning("transcription of %s failed: %s", transcript_id, message)
    if publish:
        await services.hub.publish(transcript_id, Error(code=code, message=message, details=details or {},
                                                        recoverable=False))
        await services.hub.publish(transcript_id, Status(status="failed", stage="transcription", message=message,
                                                         participant_id=participant_id))


async def _take_in(queue: IngestQueue, session: Any, samples: np.ndarray) -> None:
    """A block of a file into its session on the ingest threads, a second at a time (see
    :mod:`server.pipeline.ingest`): ten seconds of VAD on the event loop held every live stream up for 85 ms."""
    step = int(PIECE_SECONDS * SAMPLE_RATE)
    await asyncio.gather(*(queue.feed(functools.partial(_as_is, samples[i:i + step]), session)
                           for i in range(0, len(samples), step)))


def _as_is(samples: np.ndarray) -> tuple[int, np.ndarray]:
    return len(samples), samples
