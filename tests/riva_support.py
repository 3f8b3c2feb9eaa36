"""A local stand-in for an NVIDIA Riva server, for what cannot run here (Riva needs an NVIDIA GPU).

It is a real gRPC server built on ``nvidia-riva-client``'s own generated servicer stubs, so voxlane's recognizer
talks to it exactly as to Riva: a ``StreamingRecognize`` call whose first request is the
``StreamingRecognitionConfig`` and the rest 16-bit PCM. Instead of a model it reads from a script, the reference
utterances of a real recording (words spread evenly over each utterance's reference times), and answers the way
Riva documents streaming recognition: as the call's audio passes each word it sends an interim result of the
utterance so far (no word offsets, ``stability`` below 1); once the audio runs ``endpoint_s`` past the utterance's
end it sends the final result, with word offsets in milliseconds from the call's first audio and confidences;
``audio_processed`` is how much of the call's audio it has read. When the client ends the call, the utterance
being spoken is made final, as Riva flushes at the end of audio. A call may start anywhere in the recording (a
client's second call after a failure): its first audio is found in the recording's samples, as a model would
hear whatever it is sent.

Faults: ``flush_at_end=False`` ends a call whose audio stops mid-utterance without that final;
``fail_after_s`` aborts the first call with ``UNAVAILABLE`` at that much audio. Every call's config and metadata
are kept.
"""

from __future__ import annotations

import json
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from riva.client.proto import riva_asr_pb2 as rasr
from riva.client.proto import riva_asr_pb2_grpc

from media.audio import float_to_s16

BYTES_PER_SECOND = 16000 * 2


@dataclass(frozen=True)
class Utterance:
    words: tuple[tuple[str, float, float], ...]  # (word, start s, end s) in the recording's time

    @property
    def end(self) -> float:
        return self.words[-1][2]


pcm16 = float_to_s16  # the recording as voxlane sends it to Riva


def script_from_reference(references: dict, name: str) -> list[Utterance]:
    """The reference utterances of ``name`` (a key of ../shared/audio/references.json), words spread evenly."""
    out = []
    for seg in references[name]["segments"]:
        texts = seg["text"].split()
        step = (seg["end"] - seg["start"]) / len(texts)
        out.append(Utterance(tuple((t, seg["start"] + i * step, seg["start"] + (i + 1) * step)
                                   for i, t in enumerate(texts))))
    return out


@dataclass
class Call:
    config: Any = None
    metadata: dict[str, str] = field(default_factory=dict)
    audio_s: float = 0.0
    finals: list[str] = field(default_factory=list)


class ScriptedRiva(riva_asr_pb2_grpc.RivaSpeechRecognitionServicer):
    def __init__(self, script: list[Utterance], recording: bytes, endpoint_s: float = 0.5,
                 flush_at_end: bool = True, fail_after_s: float | None = None) -> None:
        self.script = script
        self.recording = recording  # the recording as 16-bit PCM, as a client sends it
        self.endpoint_s = endpoint_s
        self.flush_at_end = flush_at_end
        self.fail_after_s = fail_after_s
        self.calls: list[Call] = []
        self.lock = threading.Lock()

    def StreamingRecognize(self, request_iterator, context):  # noqa: N802 (the stub's name)
        call = Call(metadata={k: v for k, v in context.invocation_metadata()})
        with self.lock:
            self.calls.append(call)
            first_call = len(self.calls) == 1
        origin: float | None = None  # where in the recording the call's audio starts
        spoken = 0  # words of the current utterance sent in interims
        current: Utterance | None = None
        done: set[int] = set()
        for request in request_iterator:
            if request.HasField("streaming_config"):
                call.config = request.streaming_config
                continue
            if origin is None:
                at = self.recording.find(request.audio_content[:3200])
                while at % 2:  # samples start at even bytes
                    at = self.recording.find(request.audio_content[:3200], at + 1)
                assert at >= 0, "audio that is not the recording's"
                origin = at / BYTES_PER_SECOND
            call.audio_s += len(request.audio_content) / BYTES_PER_SECOND
            now = origin + call.audio_s  # recording time reached
            if first_call and self.fail_after_s is not None and call.audio_s >= self.fail_after_s:
                context.abort(grpc.StatusCode.UNAVAILABLE, "stand-in: the model server went away")
            for i, utt in enumerate(self.script):
                if i in done or utt.words[0][1] < origin:
                    continue
                if now >= utt.end + self.endpoint_s:
                    done.add(i)
                    current, spoken = None, 0
                    yield self._response(call, utt.words, origin, final=True)
                    continue
                heard = [w for w in utt.words if w[2] <= now]
                if heard and len(heard) > (spoken if current is utt else 0):
                    current, spoken = utt, len(heard)
                    yield self._response(call, tuple(heard), origin, final=False)
                break
        if current is not None and origin is not None and self.flush_at_end:  # Riva flushes at the end of audio
            yield self._response(call, current.words[:spoken], origin, final=True)

    def _response(self, call: Call, words: tuple[tuple[str, float, float], ...], origin: float,
                  final: bool) -> rasr.StreamingRecognizeResponse:
        text = " ".join(w for w, _, _ in words)
        alt = rasr.SpeechRecognitionAlternative(transcript=text + (" " if final else ""),
                                                confidence=0.93 if final else 0.0)
        if final:
            call.finals.append(text)
            for w, start, end in words:
                alt.words.append(rasr.WordInfo(word=w, start_time=int(round((start - origin) * 1000)),
                                               end_time=int(round((end - origin) * 1000)), confidence=0.91))
        result = rasr.StreamingRecognitionResult(alternatives=[alt], is_final=final,
                                                 stability=1.0 if final else 0.1, audio_processed=call.audio_s)
        return rasr.StreamingRecognizeResponse(results=[result])


class RivaStandIn:
    """The stand-in served on 127.0.0.1 (a free port) in threads of this process; ``uri`` is what to point at."""

    def __init__(self, servicer: ScriptedRiva) -> None:
        self.servicer = servicer
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        riva_asr_pb2_grpc.add_RivaSpeechRecognitionServicer_to_server(servicer, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.uri = f"127.0.0.1:{self.port}"

    def __enter__(self) -> RivaStandIn:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None)


def load_references(audio_dir: Path) -> dict:
    return json.loads((audio_dir / "references.json").read_text())
