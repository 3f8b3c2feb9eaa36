"""The settings of the OpenAI-compatible routes (REST and Realtime): which OpenAI model ids clients may name, and
the served model each one maps to."""

from __future__ import annotations

from typing import Protocol

from server.settings.base import reported_as, setting, settings_group

__all__ = ["OpenAISettings", "check_openai"]


@settings_group
class OpenAISettings:
    openai_models: str = setting("openai", "the model ids OpenAI clients may name (REST and Realtime),"
        " comma-separated: 'openai' (the default) maps every OpenAI transcription id (whisper-1, gpt-4o-transcribe,"
        " gpt-4o-mini-transcribe, gpt-transcribe, ...) to the served model; 'ID' maps one more id to it; 'ID=NAME'"
        " maps an id to a served model's name (one this server does not run is refused, naming it). The served model's"
        " own name is always taken")


class _OpenAIView(Protocol):
    """What the check reads: this group's setting, and the served model of the inference group."""

    openai_models: str
    model: str


def check_openai(settings: _OpenAIView) -> None:
    """Raises ``SettingsError`` naming the setting that is wrong."""
    from server.features.openai_models import parse_model_map  # here: settings import nothing of the server

    with reported_as("VOXLANE_OPENAI_MODELS"):
        parse_model_map(settings.openai_models, settings.model)
