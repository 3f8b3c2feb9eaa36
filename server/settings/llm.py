"""The settings of the language model behind summaries and chat, and of the extra local models /api/retranslate
may load; without an LLM URL, summaries are extractive and offline."""

from __future__ import annotations

from server.settings.base import check_http_url, setting, settings_group

__all__ = ["LLMSettings", "check_llm"]


@settings_group
class LLMSettings:
    llm_url: str | None = setting(None, "OpenAI-compatible chat endpoint for summaries and chat, e.g."
        " http://host:port/v1 (default: offline extractive summaries, no chat)")
    llm_model: str | None = setting(None, "model name sent to VOXLANE_LLM_URL")
    llm_api_key: str | None = setting(None, "bearer key for VOXLANE_LLM_URL", secret=True)
    llm_timeout: float = setting(120.0, "seconds to wait for one chat completion", lo=1, hi=3600)
    retranslate_models: str = setting("", "comma-separated extra local models (names or directories) /api/retranslate"
        " may load on first use, besides the server's own and the bundled one")


def check_llm(settings: LLMSettings) -> None:
    """Raises ``SettingsError`` naming the setting that is wrong."""
    check_http_url("VOXLANE_LLM_URL", settings.llm_url)
