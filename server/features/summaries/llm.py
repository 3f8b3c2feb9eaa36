"""Summaries from an OpenAI-compatible chat-completions endpoint (``VOXLANE_LLM_URL``), falling back to the
extractive ones."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import httpx

from server.features.summaries.extractive import MAX_CONTEXT_CHARS, extractive_summary
from server.features.summaries.result import EXTRACTIVE, SummaryResult
from server.settings import Settings

log = logging.getLogger("voxlane.summaries")


class LlmError(RuntimeError):
    pass


class LlmNotConfigured(LlmError):
    pass


def llm_configured(settings: Settings) -> bool:
    return bool(settings.llm_url)


def _completions_url(base: str) -> str:
    base = base.rstrip("/")
    return base if base.endswith("/chat/completions") else base + "/chat/completions"


async def chat_completion(settings: Settings, messages: list[dict[str, str]], *, model: str | None = None,
                          temperature: float | None = None, max_tokens: int | None = None,
                          json_reply: bool = False) -> tuple[str, dict[str, int], str]:
    """(reply text, usage {prompt, completion, total}, model) from the configured endpoint."""
    if not settings.llm_url:
        raise LlmNotConfigured("no LLM is configured: set VOXLANE_LLM_URL (an OpenAI-compatible /v1 endpoint)"
                               " and VOXLANE_LLM_MODEL")
    model = model or settings.llm_model
    if not model:
        raise LlmNotConfigured("VOXLANE_LLM_MODEL is not set (the model name to ask VOXLANE_LLM_URL for)")
    body: dict[str, Any] = {"model": model, "messages": messages}
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if json_reply:
        body["response_format"] = {"type": "json_object"}
    headers = {"Authorization": f"Bearer {settings.llm_api_key}"} if settings.llm_api_key else {}
    try:
        async with httpx.AsyncClient(timeout=settings.llm_timeout) as client:
            r = await client.post(_completions_url(settings.llm_url), json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise LlmError(f"the LLM endpoint could not be reached: {type(exc).__name__}: {exc}") from None
    if r.status_code != 200:
        raise LlmError(f"the LLM endpoint answered {r.status_code}: {r.text[:300]}")
    try:
        data = r.json()
        content = data["choices"][0]["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError):
        raise LlmError(f"the LLM endpoint's answer is not a chat completion: {r.text[:300]}") from None
    usage = data.get("usage") or {}
    counts = {"prompt": int(usage.get("prompt_tokens") or 0), "completion": int(usage.get("completion_tokens") or 0)}
    counts["total"] = int(usage.get("total_tokens") or counts["prompt"] + counts["completion"])
    return content, counts, str(data.get("model") or model)


def clip_context(text: str, limit: int = MAX_CONTEXT_CHARS) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + "\n[… transcript shortened …]\n" + text[-half:]


SUMMARY_PROMPT = (
    "You summarize transcripts of spoken conversations. Reply with one JSON object and nothing else, with the"
    " keys: \"summary\" (a paragraph{length}), \"topics\" (a list of short topic names), \"action_items\" (a"
    " list of tasks someone committed to or was asked to do; empty if none), \"key_points\" (a list of the most"
    " important points, one sentence each). Use only what the transcript says.")


def _json_object(text: str) -> dict[str, Any]:
    text = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1).strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object")
    obj = json.loads(text[start:end + 1])
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [line.strip(" -•*\t") for line in value.splitlines()]
    if not isinstance(value, list):
        return []
    return [str(v).strip() for v in value if str(v).strip()]


async def llm_summary(settings: Settings, text: str, *, model: str | None = None,
                      max_words: int | None = None) -> SummaryResult:
    length = f" of at most {max_words} words" if max_words else ""
    messages = [{"role": "system", "content": SUMMARY_PROMPT.format(length=length)},
                {"role": "user", "content": "Transcript:\n" + clip_context(text)}]
    content, _, used = await chat_completion(settings, messages, model=model, temperature=0.2)
    try:
        obj = _json_object(content)
    except ValueError:  # a model that ignored the format: its text is the summary
        return SummaryResult(summary=content.strip(), model_used=used)
    return SummaryResult(summary=str(obj.get("summary") or "").strip(), topics=_str_list(obj.get("topics")),
                         action_items=_str_list(obj.get("action_items")),
                         key_points=_str_list(obj.get("key_points")), model_used=used)


async def summarize_texts(settings: Settings, texts: list[str], *, model_name: str | None = None,
                          max_words: int | None = None, fallback: bool = True) -> SummaryResult:
    """The LLM's summary when one is configured (and not ``model_name='extractive'``), else the extractive one.
    With ``fallback``, an LLM failure gives the extractive summary with the error noted."""
    if llm_configured(settings) and model_name != EXTRACTIVE:
        try:
            return await llm_summary(settings, "\n".join(texts), model=model_name, max_words=max_words)
        except LlmError as exc:
            if not fallback:
                raise
            log.warning("LLM summary failed (%s); using the extractive summary", exc)
            result = await asyncio.to_thread(extractive_summary, texts, max_words=max_words)
            result.error = str(exc)
            return result
    return await asyncio.to_thread(extractive_summary, texts, max_words=max_words)
