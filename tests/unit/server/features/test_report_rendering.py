"""Report rendering on hostile text (any Unicode, control characters, unbroken tokens) and the times phase two
gives quotes and summary sentences. The PDF is read back by pypdf."""

from __future__ import annotations

import io

import pypdf

from server.features.reports import compose, pdf_text, report_markdown, report_pdf

HOSTILE = ("Zoë’s café — “quoted” … naïve 😀 Привет мир 東京 مرحبا e\u0301 \x00\x07 tab\there \ud800 [EMAIL] "
           "https://example.org/" + "x" * 400)


SHIP = "We will ship the remote control design by Friday next week."


def _report(text: str) -> dict:
    words = [{"text": w, "start": 10.0 + i * 0.3, "end": 10.2 + i * 0.3} for i, w in enumerate(SHIP.split())]
    segments = [{"start": 0.0, "end": 10.0, "text": "Hello there. " + text, "speaker": "Ana", "words": []},
                {"start": 10.0, "end": 14.0, "text": SHIP, "speaker": "Bo", "words": words}]
    summary = {"summary": text, "topics": ["remote control", "café"], "action_items": [SHIP], "key_points": [text]}
    info = compose.ConversationInfo(id="c1", name=text[:80], created_at="2024-03-01T10:00:00.000Z", duration=14.0,
                                    tags=[text[:20]], state="summarized", summary=summary)
    topics = compose.topic_candidates(["remote control"], [summary["topics"]])
    scan = compose.scan_conversation("c1", segments, topics, info.summary_sentences())
    result = compose.assemble(title="Report " + text[:40], project_id="p", filters={}, generated_at="2024-03-02T00:00Z",
                              infos=[info], overall={"summary": text, "topics": topics, "key_points": [text],
                                                     "model_used": "extractive"}, topics=topics, scans={"c1": scan})
    return {"id": "r1", "result": result}


def test_pdf_text_keeps_windows_1252_and_transliterates_the_rest():
    assert pdf_text("Zoë’s café — “ok” …") == "Zoë’s café — “ok” …"
    assert pdf_text("Привет 東京") == "Privet DongJing"
    assert pdf_text("a\x00b\tc\ud800d") == "ab cd"
    pdf_text(HOSTILE).encode("windows-1252")  # everything left is encodable


def test_hostile_text_renders_and_reads_back():
    report = _report(HOSTILE)
    assert "[EMAIL]" in report_markdown(report) and "Привет" in report_markdown(report)
    reader = pypdf.PdfReader(io.BytesIO(report_pdf(report)))
    text = " ".join(" ".join(p.extract_text().split()) for p in reader.pages)
    assert "Privet mir" in text and "Zoë’s café" in text and "[EMAIL]" in text and "Notable quotes" in text


def test_quotes_and_action_items_carry_their_time():
    result = _report("A plain sentence about nothing in particular at all today.")["result"]
    action = result["action_items"][0]
    assert action["start"] == 10.0 and action["time"] == "00:00:10" and action["url"].endswith("#t=10.0")
    ship = next(q for q in result["quotes"] if q["text"].startswith("We will ship"))
    assert ship["start"] == 10.0 and ship["speaker"] == "Bo"
    plain = next(q for q in result["quotes"] if q["text"].startswith("A plain sentence"))
    assert 0.0 < plain["start"] < 10.0, "no word timings: in proportion to the text"
    assert result["topics"][0] == {"topic": "remote control", "conversations": 1, "mentions": 1,
                                   "conversation_ids": ["c1"]}
