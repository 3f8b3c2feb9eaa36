"""Project reports: a two-phase job over a project's conversations (or those with a tag, or from a date range)
that summarizes each one (phase one, fanned out: the summaries feature, extractive or LLM) and then generates
the report (phase two): an overview, topics across conversations with their frequency, key points, action
items and notable quotes, each linked to its conversation and time. Read as JSON, Markdown or PDF;
``report.generated`` announces it.
"""

from typing import Any

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


def report_pdf(report: dict[str, Any]) -> bytes:
    """The report as a PDF. fpdf2 is imported on the first one: it took 0.3 s of every node's start."""
    from server.features.reports.pdf import report_pdf as render

    return render(report)


def conversation_pdf(report: dict[str, Any]) -> bytes:
    """A conversation's participant report as a PDF (see :func:`report_pdf`)."""
    from server.features.reports.pdf import conversation_pdf as render

    return render(report)


def pdf_text(text: Any) -> str:
    """``text`` as the PDF's core fonts can set it (see :func:`report_pdf` for why the import is here)."""
    from server.features.reports.pdf import pdf_text as fit

    return fit(text)

__all__ = ["MAX_CONVERSATIONS", "MAX_UNFINISHED", "REPORT_GENERATE", "REPORT_SUMMARIZE", "TASKS", "SelectionError",
           "conversation_pdf", "generate_report", "give_up_conversation", "give_up_report", "pdf_text",
           "report_markdown", "report_pdf", "select_conversations", "start_report", "summarize_conversation"]
