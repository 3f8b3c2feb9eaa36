"""The settings of the OpenAI-compatible routes, a base of :class:`server.settings.Settings`: the same
``VOXLANE_*`` mechanism, kept apart so that each file stays one concern."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server.settings_shared import SettingsError, _opt


@dataclass
class OpenAISettings:
    openai_models: str = field(default="openai", metadata=_opt(
        "VOXLANE_OPENAI_MODELS", "the model ids OpenAI clients may name (REST and Realtime), comma-separated:"
        " 'openai' (the default) maps every OpenAI transcription id (whisper-1, gpt-4o-transcribe,"
        " gpt-4o-mini-transcribe, gpt-transcribe, ...) to the served model; 'ID' maps one more id to it;"
        " 'ID=NAME' maps an id to a served model's name (one this server does not run is refused, naming it)."
        " The served model's own name is always taken"))


def check_openai(settings: Any) -> None:
    """Raises ``SettingsError`` naming the setting that is wrong."""
    from server.features.openai_models import parse_model_map  # here: settings import nothing of the server

    try:
        parse_model_map(settings.openai_models, settings.model)
    except ValueError as exc:
        raise SettingsError(f"VOXLANE_OPENAI_MODELS: {exc}") from None
