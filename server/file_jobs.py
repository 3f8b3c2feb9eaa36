"""Recorded audio (uploads, kiosk chunks, jobs) through the same session pipeline as live audio.

The file is decoded in blocks and fed faster than real time to a file-mode
``StreamSession`` at ``BULK`` priority, so the inference loop serves live
streams first; backpressure keeps at most a couple of segments waiting, so a
long upload never sits in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from asr.inference import Priority
from asr.session import StreamSession
from media import DecodeError, iter_decode_file, probe_file
from protocol import Error, Status, Transcription
from server.live import Services, stream_config

log = logging.getLogger("voxlane.files")
BLOCK_SECONDS = 10.0


@dataclass
class FileResult:
    duration: float
    segments: int
    error: str | None = None


async def transcribe_file(services: Services, transcript_id: str, path: str | Path, *, offset: float = 0.0,
                          speaker: str | None = None, participant_id: str | None = None,
                          emit: Callable[[Transcription], Awaitable[None]] | None = None,
                          on_progress: Callable[[float, float], Awaitable[None]] | None = None,
                          publish_status: bool = True, language: str | None = None,
                          prompt: str | None = None) -> FileResult:
    """Transcribe one file into ``transcript_id``; finals are stored and broadcast like live ones.

    ``offset`` places the file on the transcript's timeline (kiosk chunks); ``prompt`` is context for the
    first segment. Raises nothing for bad audio: the result carries the error and subscribers get ``error`` +
    ``status failed``.
    """
    hub = services.hub

    async def status(state: str, progress: float | None, message: str) -> None:
        if publish_status:
            await hub.publish(transcript_id, Status(status=state, stage="transcription", progress=progress,
                                                    message=message, participant_id=participant_id))

    try:
        info = await asyncio.to_thread(probe_file, path)
    except DecodeError as exc:
        await _fail(services, transcript_id, str(exc), publish_status, participant_id)
        return FileResult(0.0, 0, str(exc))
    total = float(info.get("duration") or 0.0)
    config = stream_config(services.settings, Priority.BULK)
    config.live = False
    config.language = language or config.language
    config.initial_prompt = prompt or ""
    session = StreamSession(engine=services.engine, vad_model=services.vad_model,
                            emit=emit or (lambda m: hub.publish(transcript_id, m)), config=config,
                            offset=offset, speaker=speaker, participant_id=participant_id)
    session.start()
    await status("processing", 0.0, "transcribing")
    blocks = iter_decode_file(path, chunk_seconds=BLOCK_SECONDS)
    fed = 0.0
    try:
        while True:
            block = await asyncio.to_thread(next, blocks, None)
            if block is None:
                break
            session.feed(block)
            fed += len(block) / 16000
            await session.wait_backlog(1)
            done = session.transcribed_until
            if on_progress is not None:
                await on_progress(done, max(total, fed))
            pct = min(99.0, 100.0 * done / max(total, fed, 1e-6))
            await status("processing", round(pct, 1), f"transcribed {done:.0f} s of {max(total, fed):.0f} s")
    except DecodeError as exc:
        await session.cancel()
        await _fail(services, transcript_id, str(exc), publish_status, participant_id)
        return FileResult(fed, session.segments_emitted, str(exc))
    except asyncio.CancelledError:  # the transcript was deleted, or the server is stopping
        await session.cancel()
        raise
    await session.finish(flush_timeout=600.0)
    if session.error:
        await _fail(services, transcript_id, session.error, publish_status, participant_id)
        return FileResult(fed, session.segments_emitted, session.error)
    if on_progress is not None:
        await on_progress(fed, fed)
    return FileResult(fed, session.segments_emitted)


async def _fail(services: Services, transcript_id: str, message: str, publish: bool,
                participant_id: str | None) -> None:
    log.warning("transcription of %s failed: %s", transcript_id, message)
    if publish:
        await services.hub.publish(transcript_id, Error(code="AUDIO_FORMAT_ERROR", message=message,
                                                        recoverable=False))
        await services.hub.publish(transcript_id, Status(status="failed", stage="transcription", message=message,
                                                         participant_id=participant_id))
