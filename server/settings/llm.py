"""The settings of the language model behind summaries and chat, and of the extra local models /api/retranslate
may load; without an LLM URL, summaries are extractive and offline."""

from __future__ import annotations

from dataclasses import dataclass, field

from server.settings.base import SettingsError, setting

__all__ = ["LLMSettings", "check_llm"]


@dataclass
class LLMSettings:
    llm_url: str | None = field(default=None, metadata=setting(
        "VOXLANE_LLM_URL", "OpenAI-compatible chat endpoint for summaries and chat, e.g. http://host:port/v1"
        " (default: offline extractive summaries, no chat)"))
    llm_model: str | None = field(default=None, metadata=setting(
        "VOXLANE_LLM_MODEL", "model name sent to VOXLANE_LLM_URL"))
    llm_api_key: str | None = field(default=None, metadata=setting(
        "VOXLANE_LLM_API_KEY", "bearer key for VOXLANE_LLM_URL", secret=True))
    llm_timeout: float = field(default=120.0, metadata=setting(
        "VOXLANE_LLM_TIMEOUT", "seconds to wait for one chat completion", lo=1, hi=3600))
    retranslate_models: str = field(default="", metadata=setting(
        "VOXLANE_RETRANSLATE_MODELS", "comma-separated extra local models (names or directories)"
        " /api/retranslate may load on first use, besides the server's own and the bundled one"))


def check_llm(settings: LLMSettings) -> None:
    """Raises ``SettingsError`` naming the setting that is wrong."""
    if settings.llm_url and not settings.llm_url.startswith(("http://", "https://")):
        raise SettingsError("VOXLANE_LLM_URL must start with http:// or https://")
