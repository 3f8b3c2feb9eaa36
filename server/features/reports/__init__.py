"""Project reports: a two-phase job over a project's conversations (or those with a tag, or from a date range)
that summarizes each one (phase one, fanned out: the summaries feature, extractive or LLM) and then generates
the report (phase two): an overview, topics across conversations with their frequency, key points, action
items and notable quotes, each linked to its conversation and time. Read as JSON, Markdown or PDF;
``report.generated`` announces it.
"""

from server.features.reports.jobs import (
    MAX_CONVERSATIONS,
    MAX_UNFINISHED,
    REPORT_GENERATE,
    REPORT_SUMMARIZE,
    TASKS,
    SelectionError,
    generate_report,
    give_up_conversation,
    give_up_report,
    select_conversations,
    start_report,
    summarize_conversation,
)
from server.features.reports.markdown import report_markdown
from server.features.reports.pdf import conversation_pdf, pdf_text, report_pdf

__all__ = ["MAX_CONVERSATIONS", "MAX_UNFINISHED", "REPORT_GENERATE", "REPORT_SUMMARIZE", "TASKS", "SelectionError",
           "conversation_pdf", "generate_report", "give_up_conversation", "give_up_report", "pdf_text",
           "report_markdown", "report_pdf", "select_conversations", "start_report", "summarize_conversation"]
