"""Summaries, topics, action items and key points of a transcript, and chat with a transcript as context.

Out of the box this is offline: an extractive method (TextRank over the transcript's sentences blended with
word-frequency scores; topics from frequent content terms; action items from sentences with obligation or
future cues). With ``VOXLANE_LLM_URL`` (+ ``VOXLANE_LLM_MODEL``, ``VOXLANE_LLM_API_KEY``) set, an
OpenAI-compatible chat-completions endpoint writes them instead; if it fails, the automatic summary falls
back to the extractive one and says so (``model_used``, ``error``).

When a transcript completes (live stream stopped, upload/job/conversation transcribed), its completion queues
a ``summarize`` job: the result is stored in the transcript's ``summary`` field and published as a ``summary``
message, never delaying ``completed``. ``POST /api/summary/`` requests are jobs too, stored in ``summary_jobs``
(:mod:`server.features.summaries.background`).
"""

from server.features.summaries.background import (
    SUMMARIZE,
    SUMMARY_REQUEST,
    give_up_summary_request,
    request_expired,
    request_summary,
    result_body,
    run_summary_request,
    summarize,
    summarize_job,
    summarize_transcript,
)
from server.features.summaries.extractive import extractive_summary
from server.features.summaries.llm import (
    LlmError,
    LlmNotConfigured,
    chat_completion,
    clip_context,
    llm_configured,
    summarize_texts,
)
from server.features.summaries.result import EXTRACTIVE, SummaryResult, transcript_text

__all__ = ["EXTRACTIVE", "SUMMARIZE", "SUMMARY_REQUEST", "LlmError", "LlmNotConfigured", "SummaryResult",
           "chat_completion", "clip_context", "extractive_summary", "give_up_summary_request", "llm_configured",
           "request_expired", "request_summary", "result_body", "run_summary_request", "summarize",
           "summarize_job", "summarize_texts", "summarize_transcript", "transcript_text"]
