"""NVIDIA Riva's streaming recognizer, through ``nvidia-riva-client``'s own gRPC stubs.

One :class:`RivaRecognizer` holds one channel (``riva.client.Auth`` on grpc.aio) and opens a
``StreamingRecognize`` call per stream: the first request carries the ``StreamingRecognitionConfig``, the rest
16-bit PCM in chunks of ``chunk_ms``. Riva endpoints itself and answers with interim results (each the utterance
so far) and one final result per utterance, word offsets in milliseconds from the call's first audio; those are
turned into :class:`~asr.backends.streaming.StreamingResult` here, so no protobuf type leaves this module.

The package is optional (``pip install voxlane[riva]``) and imported only when a recognizer is made.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from asr.backends.streaming import StreamedWord, StreamingOptions, StreamingResult
from media.audio import float_to_s16


@dataclass(frozen=True, slots=True)
class RivaConfig:
    """Where the Riva server is and how to talk to it (``VOXLANE_RIVA_*``)."""

    uri: str = "localhost:50051"
    use_ssl: bool = False
    ssl_root_cert: str | None = None  # a CA file for a server whose certificate the system does not trust
    api_key: str | None = None  # sent as ``authorization: Bearer <key>`` (NVIDIA's hosted endpoints)
    metadata: tuple[tuple[str, str], ...] = ()  # more call metadata (a hosted function's ``function-id``)
    model: str = ""  # empty: the server's default ASR model for the language
    language: str = "en-US"
    chunk_ms: int = 100  # audio per request; Riva's own examples send 100 ms
    boost: float = 20.0  # word boosting score of the stream's phrases (StreamingOptions.phrases)


class RivaRecognizer:
    """:class:`~asr.backends.streaming.StreamingRecognizer` on a Riva server (one channel for every stream)."""

    name = "riva"

    def __init__(self, config: RivaConfig) -> None:
        import riva.client
        from riva.client.proto import riva_asr_pb2_grpc

        self.config = config
        metadata = [list(pair) for pair in config.metadata]
        if config.api_key:
            metadata.append(["authorization", f"Bearer {config.api_key}"])
        self._auth = riva.client.Auth(ssl_root_cert=config.ssl_root_cert, use_ssl=config.use_ssl, uri=config.uri,
                                      metadata_args=metadata or None, use_aio=True)
        self._stub = riva_asr_pb2_grpc.RivaSpeechRecognitionStub(self._auth.channel)

    def streaming_config(self, options: StreamingOptions) -> Any:
        from riva.client.proto import riva_asr_pb2 as rasr
        from riva.client.proto import riva_audio_pb2 as raudio

        config = rasr.RecognitionConfig(
            encoding=raudio.AudioEncoding.LINEAR_PCM, sample_rate_hertz=options.sample_rate,
            language_code=self.language_code(options.language), max_alternatives=1, audio_channel_count=1,
            enable_automatic_punctuation=options.punctuation, enable_word_time_offsets=options.word_timestamps,
            verbatim_transcripts=not options.punctuation, model=self.config.model)
        if options.phrases:
            config.speech_contexts.append(rasr.SpeechContext(phrases=list(options.phrases), boost=self.config.boost))
        return rasr.StreamingRecognitionConfig(config=config, interim_results=options.interim_results)

    def language_code(self, language: str | None) -> str:
        """Riva names languages with their region (en-US); a stream's bare code (en) takes the configured
        default's region when that is the same language."""
        default = self.config.language
        if not language or language == default.split("-")[0]:
            return default
        return language

    async def recognize(self, audio: AsyncIterator[np.ndarray],
                        options: StreamingOptions) -> AsyncIterator[StreamingResult]:
        import grpc
        from riva.client.proto import riva_asr_pb2 as rasr

        chunk = max(1, self.config.chunk_ms * options.sample_rate // 1000) * 2  # bytes of 16-bit mono

        call = self._stub.StreamingRecognize(metadata=self._auth.get_auth_metadata())

        async def send() -> None:
            """The requests, written by us rather than by gRPC from an iterator: a write after the server ended
            the call fails here and is dropped, so the call's own status (why the server ended it) is what the
            reader raises."""
            try:
                await call.write(rasr.StreamingRecognizeRequest(streaming_config=self.streaming_config(options)))
                pending = bytearray()
                async for samples in audio:
                    pending += float_to_s16(samples)  # Riva's LINEAR_PCM
                    while len(pending) >= chunk:
                        await call.write(rasr.StreamingRecognizeRequest(audio_content=bytes(pending[:chunk])))
                        del pending[:chunk]
                if pending:
                    await call.write(rasr.StreamingRecognizeRequest(audio_content=bytes(pending)))
                await call.done_writing()
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
                return  # the call is over

        writer = asyncio.create_task(send(), name="riva-writer")
        try:
            async for response in call:
                for result in response.results:
                    converted = read_result(result)
                    if converted is not None:
                        yield converted
        finally:
            call.cancel()  # a consumer that stops early ends the call (no-op once it finished)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def close(self) -> None:
        await self._auth.channel.close()


def read_result(result: Any) -> StreamingResult | None:
    """One ``StreamingRecognitionResult`` as the session's value (None: it holds no alternative).

    Riva gives word offsets in milliseconds from the call's first audio, ``audio_processed`` in seconds, and
    word confidences only where the model has them (0 otherwise: the alternative's confidence stands in)."""
    if not result.alternatives:
        return None
    best = result.alternatives[0]
    fallback = min(1.0, max(0.0, best.confidence)) if best.confidence > 0 else 0.0
    words = tuple(StreamedWord(text=w.word.strip(), start=w.start_time / 1000, end=max(w.start_time, w.end_time) / 1000,
                               confidence=min(1.0, max(0.0, w.confidence)) if w.confidence > 0 else fallback)
                  for w in best.words if w.word.strip())
    return StreamingResult(text=best.transcript.strip(), is_final=result.is_final, words=words,
                           confidence=fallback, stability=1.0 if result.is_final else result.stability,
                           audio_end=float(result.audio_processed))
