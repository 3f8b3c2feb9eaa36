"""Which model an OpenAI client's ``model`` field means: one rule for ``POST /v1/audio/transcriptions``,
``GET /v1/models`` and the Realtime route.

Clients hard-code OpenAI's ids (LiveKit's ``openai.STT()`` sends ``gpt-4o-mini-transcribe``, Pipecat's
``gpt-transcribe``, older code ``whisper-1``); an id of OpenAI's means the model this server runs unless the
operator maps it elsewhere (``VOXLANE_OPENAI_MODELS``). A name that is neither is refused with
``MODEL_NOT_AVAILABLE`` rather than silently transcribed, so a typo is seen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPENAI_TRANSCRIPTION_MODELS = (
    "whisper-1", "gpt-transcribe", "gpt-live-transcribe", "gpt-4o-transcribe", "gpt-4o-mini-transcribe",
    "gpt-4o-mini-transcribe-2025-12-15", "gpt-4o-transcribe-diarize", "gpt-realtime-whisper",
)
"""The transcription ids of the ``openai`` SDK (3.57): ``openai.types.AudioModel`` and the Realtime
``AudioTranscription.model`` literals (tests/unit/features/test_openai_models.py checks them against the SDK)."""
ALL_OPENAI = "openai"
MAX_ENTRIES = 100
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]{0,199}")


class ModelNotServed(ValueError):
    """A model name this server does not transcribe with; the message says what to use instead."""

    def __init__(self, message: str, available: list[str]) -> None:
        super().__init__(message)
        self.available = available


def served_name(model: str) -> str:
    """The served model's own name: its name, or its directory's name."""
    return Path(model).name


def parse_model_map(spec: str, model: str) -> dict[str, str]:
    """``VOXLANE_OPENAI_MODELS`` as {requested id: served model name}; raises ValueError naming a bad entry."""
    served = served_name(model)
    out: dict[str, str] = {}
    entries = [e.strip() for e in spec.split(",") if e.strip()]
    if len(entries) > MAX_ENTRIES:
        raise ValueError(f"at most {MAX_ENTRIES} entries, not {len(entries)}")
    for entry in entries:
        if entry == ALL_OPENAI:
            out.update((m, served) for m in OPENAI_TRANSCRIPTION_MODELS if m not in out)
            continue
        name, _, target = (p.strip() for p in entry.partition("="))
        for part in (name, target) if "=" in entry else (name,):
            if not _NAME.fullmatch(part):
                raise ValueError(f"{part!r} in {entry!r} is not a model name (letters, digits and ._:/+-, at most"
                                 " 200 characters)")
        out[name] = served_name(target) if target else served
    return out


@dataclass(frozen=True)
class ModelMap:
    """The ids this server answers to and the served model each one means."""

    served: str
    full: str  # the served model as configured (a path, say): taken too
    names: dict[str, str]

    @classmethod
    def of(cls, settings: Any) -> ModelMap:
        """The map of ``VOXLANE_OPENAI_MODELS`` and ``VOXLANE_MODEL`` (checked at start: it parses)."""
        return cls(served=served_name(settings.model), full=settings.model,
                   names=parse_model_map(settings.openai_models, settings.model))

    def ids(self) -> list[str]:
        """The served model's name, then every id mapped to it (what ``GET /v1/models`` lists)."""
        return [self.served, *(m for m, target in self.names.items() if target == self.served and m != self.served)]

    def resolve(self, requested: str) -> str:
        """The served model ``requested`` means; raises :class:`ModelNotServed`."""
        if requested in (self.served, self.full):
            return self.served
        target = self.names.get(requested)
        if target == self.served:
            return target
        available = self.ids()
        if target is not None:
            raise ModelNotServed(f"model {requested!r} maps to {target!r}, which this server does not run; use one"
                                 f" of {', '.join(available)}", available)
        raise ModelNotServed(f"model {requested!r} is not served here; use one of {', '.join(available)}", available)
