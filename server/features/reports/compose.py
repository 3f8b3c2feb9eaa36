"""Phase two of a report, the part that reads text: topics counted across conversations, quotes picked from
the transcripts, action items and key points traced back to their conversation and time.

Pure functions over plain rows (CPU work: the job runs them in a thread). One conversation's segments are
scanned at a time (:func:`scan_conversation`), so a report holds its conversations' summaries and a few
candidates each, never every transcript at once.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from server.features.exports.archive import hms
from server.features.summaries.extractive import content_words, split_sentences

MAX_TOPICS = 12
MAX_TOPIC_CANDIDATES = 40
MAX_KEY_POINTS = 10
MAX_ACTION_ITEMS = 40
MAX_QUOTES = 12
QUOTES_PER_CONVERSATION = 3
QUOTE_WORDS = (8, 45)
"""A notable quote is a sentence of this many words (shorter says little, longer is a paragraph)."""
LOCATE_WORDS = 6
"""A summary's sentence is found in its transcript by its first words."""


@dataclass
class Quote:
    text: str
    conversation_id: str
    speaker: str | None
    start: float
    score: float


@dataclass
class ConversationScan:
    """What phase two keeps of one conversation's transcript."""

    conversation_id: str
    mentions: Counter[str] = field(default_factory=Counter)
    quotes: list[Quote] = field(default_factory=list)
    located: dict[str, float] = field(default_factory=dict)  # a summary sentence -> seconds into the conversation


def link(conversation_id: str, start: float | None = None) -> str:
    """The URL path of a conversation's transcript, at ``start`` seconds (a media fragment, ``#t=``)."""
    path = f"/api/conversations/{conversation_id}/transcript"
    return path if start is None else f"{path}#t={start:.1f}"


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[\w']+", text.lower()))


def topic_candidates(overall: list[str], per_conversation: list[list[str]]) -> list[str]:
    """The report's topics first, then each conversation's in turn (round robin), lower-cased, once each."""
    out: list[str] = []
    columns = [overall, *per_conversation]
    for rank in range(max((len(c) for c in columns), default=0)):
        for column in columns:
            if rank < len(column):
                term = " ".join(str(column[rank]).lower().split())[:80]
                if term and _norm(term) and term not in out:
                    out.append(term)
    return out[:MAX_TOPIC_CANDIDATES]


def _topic_pattern(topic: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in topic.split()]
    return re.compile(r"(?<![\w'])" + r"\s+".join(words) + r"(?:s|es)?(?![\w'])", re.IGNORECASE)


def _offset(segment: dict[str, Any], text: str, char_pos: int) -> float:
    """Seconds into the conversation where the sentence at ``char_pos`` of the segment's (normalised) text
    starts: from its word timings when the segment has them, else in proportion to the characters."""
    words = segment.get("words") or []
    before = len(text[:char_pos].split())
    if before < len(words) and isinstance(words[before], dict) and words[before].get("start") is not None:
        return float(words[before]["start"])
    start, end = float(segment.get("start") or 0.0), float(segment.get("end") or 0.0)
    return start + max(0.0, end - start) * char_pos / max(1, len(text))


def scan_conversation(conversation_id: str, segments: list[dict[str, Any]], topics: list[str],
                      sentences_to_locate: list[str]) -> ConversationScan:
    """Topic mentions, the best quote candidates, and where the given summary sentences were said."""
    scan = ConversationScan(conversation_id)
    patterns = {t: _topic_pattern(t) for t in topics}
    wanted = {s: _norm(" ".join(s.split()[:LOCATE_WORDS])) for s in sentences_to_locate}
    candidates: list[Quote] = []
    for seg in segments:
        text = " ".join(str(seg.get("text") or "").split())
        if not text:
            continue
        for topic, pattern in patterns.items():
            scan.mentions[topic] += len(pattern.findall(text))
        normalised = _norm(text)
        for sentence, head in wanted.items():
            if sentence not in scan.located and head and head in normalised:
                pos = text.lower().find(sentence.split()[0].lower())
                scan.located[sentence] = _offset(seg, text, max(0, pos))
        cursor = 0
        for sentence in split_sentences([text]):
            pos = text.find(sentence, cursor)
            pos = cursor if pos < 0 else pos
            cursor = pos + len(sentence)
            n = len(sentence.split())
            if not QUOTE_WORDS[0] <= n <= QUOTE_WORDS[1]:
                continue
            hits = sum(1 for p in patterns.values() if p.search(sentence))
            substance = len(content_words(sentence)) / n
            candidates.append(Quote(sentence, conversation_id, seg.get("speaker"), _offset(seg, text, pos),
                                    hits + substance + min(n, 25) / 50))
    candidates.sort(key=lambda q: (-q.score, q.start))
    scan.quotes = candidates[:QUOTES_PER_CONVERSATION]
    return scan


@dataclass
class ConversationInfo:
    """A conversation of the report as phase two sees it: its row's facts and its summary (None: none)."""

    id: str
    name: str
    created_at: str
    duration: float | None
    tags: list[str]
    state: str
    summary: dict[str, Any] | None

    def summary_sentences(self) -> list[str]:
        s = self.summary or {}
        return [*s.get("action_items", []), *s.get("key_points", [])]


def _ref(info: ConversationInfo, start: float | None) -> dict[str, Any]:
    """How a report item points at its conversation (and the time in it, where known)."""
    out: dict[str, Any] = {"conversation_id": info.id, "conversation_name": info.name, "url": link(info.id, start)}
    out["start"] = None if start is None else round(start, 1)
    out["time"] = None if start is None else hms(start)
    return out


def _ranked_topics(topics: list[str], scans: dict[str, ConversationScan]) -> list[dict[str, Any]]:
    rows = []
    for order, topic in enumerate(topics):
        where = [cid for cid, scan in scans.items() if scan.mentions[topic] > 0]
        if where:
            rows.append((-len(where), -sum(scans[c].mentions[topic] for c in where), order, topic, where))
    rows.sort()
    out: list[dict[str, Any]] = []
    for count, mentions, _, topic, where in rows:
        if any(topic in kept["topic"].split() for kept in out):
            continue  # "book" under "printed book": the longer term already counts it
        out.append({"topic": topic, "conversations": -count, "mentions": -mentions, "conversation_ids": where})
        if len(out) >= MAX_TOPICS:
            break
    return out


def _owner_of(sentence: str, infos: list[ConversationInfo]) -> ConversationInfo | None:
    """The conversation whose summary holds ``sentence`` (the report's key points come from the summaries)."""
    target = _norm(sentence)
    for info in infos:
        s = info.summary or {}
        if any(target and target in _norm(part) for part in [s.get("summary") or "", *s.get("key_points", [])]):
            return info
    return None


def assemble(*, title: str, project_id: str, filters: dict[str, Any], generated_at: str,
             infos: list[ConversationInfo], overall: dict[str, Any], topics: list[str],
             scans: dict[str, ConversationScan]) -> dict[str, Any]:
    """The report as JSON: overview, topics with their frequency, key points, action items, quotes, and the
    conversations it covers."""
    by_id = {i.id: i for i in infos}
    key_points = []
    for point in overall.get("key_points", [])[:MAX_KEY_POINTS]:
        info = _owner_of(point, infos)
        start = scans[info.id].located.get(point) if info and info.id in scans else None
        key_points.append({"text": point, **(_ref(info, start) if info else {"conversation_id": None})})
    actions: list[dict[str, Any]] = []
    seen: set[str] = set()
    for info in infos:
        for item in (info.summary or {}).get("action_items", []):
            if _norm(item) in seen or len(actions) >= MAX_ACTION_ITEMS:
                continue
            seen.add(_norm(item))
            start = scans[info.id].located.get(item) if info.id in scans else None
            actions.append({"text": item, **_ref(info, start)})
    quotes = _pick_quotes(scans)
    durations = [i.duration for i in infos if i.duration]
    dates = sorted(i.created_at for i in infos if i.created_at)
    overview = {"summary": overall.get("summary") or "", "conversation_count": len(infos),
                "summarized": sum(1 for i in infos if i.summary), "total_duration": round(sum(durations), 1),
                "first_conversation_at": dates[0] if dates else None, "last_conversation_at": dates[-1] if dates
                else None, "model_used": overall.get("model_used")}
    if overall.get("error"):
        overview["error"] = overall["error"]
    return {
        "title": title, "project_id": project_id, "generated_at": generated_at, "filters": filters,
        "overview": overview, "topics": _ranked_topics(topics, scans), "key_points": key_points,
        "action_items": actions,
        "quotes": [{"text": q.text, "speaker": q.speaker, **_ref(by_id[q.conversation_id], q.start)}
                   for q in quotes if q.conversation_id in by_id],
        "conversations": [{"id": i.id, "name": i.name, "created_at": i.created_at, "duration": i.duration,
                           "tags": i.tags, "summary_state": i.state, "summary": (i.summary or {}).get("summary"),
                           "topics": (i.summary or {}).get("topics", []), "url": link(i.id)} for i in infos],
    }


def _pick_quotes(scans: dict[str, ConversationScan]) -> list[Quote]:
    """Each conversation's best quote first (every voice heard), then the best of the rest; in the report's
    order of conversations and time."""
    order = {cid: n for n, cid in enumerate(scans)}
    firsts = [s.quotes[0] for s in scans.values() if s.quotes]
    firsts.sort(key=lambda q: -q.score)
    chosen = firsts[:MAX_QUOTES]
    rest = sorted((q for s in scans.values() for q in s.quotes[1:]), key=lambda q: -q.score)
    chosen += rest[:MAX_QUOTES - len(chosen)]
    return sorted(chosen, key=lambda q: (order[q.conversation_id], q.start))
