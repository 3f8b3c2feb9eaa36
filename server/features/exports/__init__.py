"""Every rendering of a stored transcript, in one package (routes and the CLI both use it).

Stored final segments in, text out: plain, timestamped, SRT, WebVTT with speaker voice tags, JSON with
words and a speaker timeline (``GET /v1/transcripts/{id}?transcript_format=...``); a Markdown page per
conversation and a streamed zip of them; a conversation table as CSV or XLSX (safe to open in a
spreadsheet); and the meeting-bot download shapes (participants, participant events, speaker timeline,
words per participant), where speakers stand in for participants that were never declared.
"""

from server.features.exports.archive import as_markdown, zip_entry_name, zip_stream
from server.features.exports.formats import EXTENSIONS, FORMATS, as_srt, as_text, as_webvtt, render
from server.features.exports.meeting import (
    Timeline,
    parse_time,
    participant_events_download,
    participants_download,
    speaker_timeline_download,
    transcript_download,
)
from server.features.exports.roster import MAX_PARTICIPANT_ID, Roster, participant_event_log
from server.features.exports.tables import TABLE_COLUMNS, csv_line, table_row, write_xlsx

__all__ = ["EXTENSIONS", "FORMATS", "MAX_PARTICIPANT_ID", "TABLE_COLUMNS", "Roster", "Timeline", "as_markdown",
           "as_srt", "as_text", "as_webvtt", "csv_line", "parse_time", "participant_event_log",
           "participant_events_download", "participants_download", "render", "speaker_timeline_download",
           "table_row", "transcript_download", "write_xlsx", "zip_entry_name", "zip_stream"]
