"""Summaries, topics, action items and key points of a transcript, and chat with a transcript as context.

Out of the box this is offline: an extractive method (TextRank over the transcript's sentences blended with
word-frequency scores; topics from frequent content terms; action items from sentences with obligation or
future cues). With ``VOXLANE_LLM_URL`` (+ ``VOXLANE_LLM_MODEL``, ``VOXLANE_LLM_API_KEY``) set, an
OpenAI-compatible chat-completions endpoint writes them instead; if it fails, the automatic summary falls
back to the extractive one and says so (``model_used``, ``error``).

When a transcript completes (live stream stopped, upload/job/conversation transcribed),
:func:`summarize_transcript` summarizes it in a background task: the result is stored in the transcript's
``summary`` field and published as a ``summary`` message, never delaying ``completed``. The jobs of
``POST /api/summary/`` live in memory (:class:`SummaryJobs`).
"""

from server.features.summaries.background import SummaryJob, SummaryJobs, stop, summarize_transcript, wait_idle
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

__all__ = ["EXTRACTIVE", "LlmError", "LlmNotConfigured", "SummaryJob", "SummaryJobs", "SummaryResult",
           "chat_completion", "clip_context", "extractive_summary", "llm_configured", "stop", "summarize_texts",
           "summarize_transcript", "transcript_text", "wait_idle"]
