"""A generated report as a PDF (fpdf2): a title page header, the report's sections, and each quote with its
conversation, time and link.

Text uses the PDF core fonts (Helvetica), which every reader has and which keep files small, in their
Windows-1252 encoding. Transcripts can hold any Unicode, so every string goes through :func:`pdf_text` first:
what Windows-1252 has stays as it is (accented Latin letters, typographic quotes and dashes), everything else
is transliterated to ASCII (``anyascii``: "Привет" becomes "Privet", CJK becomes pinyin or romaji), and what
has no transliteration becomes "?". Nothing in a transcript can make rendering fail; the JSON and Markdown
forms of the report keep the original text.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Any

from anyascii import anyascii
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from server.features.exports.archive import hms, one_line
from server.features.reports.markdown import cited

ENCODING = "windows-1252"
FONT = "Helvetica"


@lru_cache(maxsize=4096)
def _char(ch: str) -> str:
    if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
        return " " if ch in "\t\n\r" else ""
    try:
        ch.encode(ENCODING)
        return ch
    except UnicodeEncodeError:
        return anyascii(ch) or "?"


def pdf_text(text: Any) -> str:
    """``text`` as the core fonts can show it (see the module's note), on one line."""
    return "".join(_char(ch) for ch in unicodedata.normalize("NFC", one_line(text)))


class _Report(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(format="A4")
        self.core_fonts_encoding = ENCODING
        self.report_title = title
        self.set_auto_page_break(auto=True, margin=18)
        self.set_margins(18, 18, 18)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, size=8)
        self.set_text_color(120)
        self.cell(0, 5, f"{self.report_title} - page {self.page_no()}/{{nb}}", align="C")
        self.set_text_color(0)

    def heading(self, text: str) -> None:
        self.ln(4)
        self.set_font(FONT, "B", 14)
        self.cell(0, 8, pdf_text(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_draw_color(180)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.ln(2)

    def para(self, text: str, style: str = "", size: float = 10.5, height: float = 5.2, gray: int = 0) -> None:
        self.set_font(FONT, style, size)
        self.set_text_color(gray)
        self.multi_cell(0, height, pdf_text(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(0)

    def bullet(self, text: str, note: str = "") -> None:
        self.set_font(FONT, "", 10.5)
        self.cell(5, 5.2, "-")
        self.multi_cell(0, 5.2, pdf_text(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if note:
            self.set_x(self.l_margin + 5)
            self.set_font(FONT, "", 8.5)
            self.set_text_color(90)
            self.multi_cell(0, 4.4, pdf_text(note), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            self.set_text_color(0)
        self.ln(0.8)


def report_pdf(report: dict[str, Any]) -> bytes:
    """The report's PDF (CPU work: call it in a thread)."""
    result = report["result"]
    overview = result["overview"]
    pdf = _Report(pdf_text(result["title"]))
    pdf.set_title(pdf_text(result["title"]))
    pdf.set_creator("voxlane")
    pdf.alias_nb_pages()
    pdf.add_page()
    pdf.set_font(FONT, "B", 20)
    pdf.multi_cell(0, 9, pdf_text(result["title"]), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    span = ""
    if overview.get("first_conversation_at"):
        span = f", {overview['first_conversation_at'][:10]} to {overview['last_conversation_at'][:10]}"
    pdf.para(f"Project report over {overview['conversation_count']} conversations{span}; total duration"
             f" {hms(overview.get('total_duration'))}. Generated {result['generated_at'][:16].replace('T', ' ')} UTC"
             f" ({overview.get('model_used') or 'no summaries'}). Report {report['id']}.", size=9, gray=90)

    pdf.heading("Overview")
    pdf.para(overview.get("summary") or "No conversation had text to summarize.")

    pdf.heading("Topics")
    for t in result["topics"]:
        pdf.bullet(f"{t['topic']}: {t['conversations']} of {overview['conversation_count']} conversations,"
                   f" {t['mentions']} mentions")
    if not result["topics"]:
        pdf.para("No topic came up.")

    for title, key in (("Key points", "key_points"), ("Action items", "action_items")):
        pdf.heading(title)
        for item in result[key]:
            pdf.bullet(item["text"], cited(item, "{where} - {url}"))
        if not result[key]:
            pdf.para("None.")

    pdf.heading("Notable quotes")
    for q in result["quotes"]:
        pdf.para(f"\u201c{q['text']}\u201d", style="I")
        who = f"{q['speaker']}, " if q.get("speaker") else ""
        pdf.para(f"- {who}{q['conversation_name']} at {q['time']} (conversation {q['conversation_id']},"
                 f" {q['start']:.1f} s) {q['url']}", size=8.5, height=4.4, gray=90)
        pdf.ln(2)
    if not result["quotes"]:
        pdf.para("None.")

    pdf.heading("Conversations")
    for c in result["conversations"]:
        pdf.para(c["name"], style="B", size=11)
        facts = [c["created_at"][:16].replace("T", " ") + " UTC", hms(c.get("duration")), c["url"]]
        if c.get("tags"):
            facts.append("tags: " + ", ".join(c["tags"]))
        pdf.para(" | ".join(facts), size=8.5, height=4.4, gray=90)
        pdf.para(c.get("summary") or f"No summary ({c['summary_state']}).")
        pdf.ln(2)
    return bytes(pdf.output())


def conversation_pdf(report: dict[str, Any]) -> bytes:
    """One conversation's report (the participant report's shape: name, created_at, duration, summary,
    transcript) as a PDF: the summary's sections, then the transcript with times and speakers (CPU work: call
    it in a thread)."""
    title = report.get("name") or "Conversation"
    pdf = _Report(pdf_text(title))
    pdf.set_title(pdf_text(title))
    pdf.set_creator("voxlane")
    pdf.alias_nb_pages()
    pdf.add_page()
    pdf.set_font(FONT, "B", 20)
    pdf.multi_cell(0, 9, pdf_text(title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.para(f"Recorded {str(report['created_at'])[:16].replace('T', ' ')} UTC; duration"
             f" {hms(report.get('duration'))}. Conversation {report['conversation_id']}.", size=9, gray=90)
    summary = report.get("summary") or {}
    pdf.heading("Summary")
    pdf.para(summary.get("summary") or "No summary yet.")
    for heading, key in (("Key points", "key_points"), ("Action items", "action_items"), ("Topics", "topics")):
        if summary.get(key):
            pdf.heading(heading)
            for item in summary[key]:
                pdf.bullet(str(item))
    pdf.heading("Transcript")
    for seg in report.get("transcript") or []:
        who = f"{seg['speaker']}  " if seg.get("speaker") else ""
        pdf.para(f"{hms(seg['start'])}  {who}", style="B", size=8.5, height=4.4, gray=90)
        pdf.para(seg["text"])
    if not report.get("transcript"):
        pdf.para("Nothing was transcribed.")
    return bytes(pdf.output())
