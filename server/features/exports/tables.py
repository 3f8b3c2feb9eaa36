"""The conversation table as CSV or XLSX, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from typing import Any

from server.features.exports.meeting import parse_time
from server.features.exports.roster import Roster

TABLE_COLUMNS = ("id", "name", "tags", "created", "duration", "status", "speakers", "word_count")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """Text a spreadsheet would run as a formula (= + - @, tab, CR first) gets a leading single quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def table_row(transcript: dict[str, Any], conversation: dict[str, Any] | None,
              segments: list[dict[str, Any]]) -> dict[str, Any]:
    conversation = conversation or {}
    roster = Roster(transcript, segments, default_name=conversation.get("name"))
    speakers = [p.label for p in roster if p.key[0] != "default" or p.name]
    return {
        "id": transcript["id"],
        "name": conversation.get("name") or transcript.get("name") or "",
        "tags": ", ".join(conversation.get("tags") or []),
        "created": conversation.get("created_at") or transcript.get("created_at"),
        "duration": round(float(transcript.get("duration") or 0.0), 3),
        "status": transcript.get("status"),
        "speakers": ", ".join(speakers),
        "word_count": sum(len(s["text"].split()) for s in segments),
    }


def csv_line(values: Iterable[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n").writerow(
        [safe_cell("" if v is None else v) for v in values])
    return buf.getvalue()


def _xml_text(value: Any) -> Any:
    """Text without the control characters XML cannot hold: openpyxl refuses them in a cell (a 500 before) and
    writes them into a sheet title, which makes a workbook Excel cannot open. A name may well contain them."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return ILLEGAL_CHARACTERS_RE.sub("", value) if isinstance(value, str) else value


def write_xlsx(path: str, rows: Iterable[dict[str, Any]], title: str = "Conversations") -> None:
    """The conversation table as an Excel workbook (openpyxl, write-only: rows go to disk as they come)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(re.sub(r"[\[\]:*?/\\]", " ", _xml_text(title))[:31] or "Conversations")
    bold = Font(bold=True)
    header = []
    for name in TABLE_COLUMNS:
        cell = WriteOnlyCell(ws, value=name)
        cell.font = bold
        header.append(cell)
    ws.append(header)
    for row in rows:
        values: list[Any] = []
        for name in TABLE_COLUMNS:
            value = row.get(name)
            if name == "created" and value:
                cell = WriteOnlyCell(ws, value=parse_time(value).replace(tzinfo=None))
                cell.number_format = "yyyy-mm-dd hh:mm:ss"
                values.append(cell)
                continue
            # a WriteOnlyCell holding text starting with '=' would become a formula: always text here
            cell = WriteOnlyCell(ws, value=_xml_text(safe_cell(value)))
            if isinstance(cell.value, str):
                cell.data_type = "s"
            values.append(cell)
        ws.append(values)
    wb.save(path)
