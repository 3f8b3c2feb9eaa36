"""Metrics over recorded live streams: WER, commit latency per utterance, final latency, lag."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import jiwer
import numpy as np

from server.cli.live_client import StreamRecord

_NON_WORD = re.compile(r"[^\w' ]+")


def normalize(text: str) -> list[str]:
    """Lower case, punctuation removed, nothing expanded (the corpus' convention)."""
    return [w.strip("'") for w in _NON_WORD.sub(" ", text.lower().replace("-", " ")).split() if w.strip("'")]


def wer_counts(reference: str, hypothesis: str) -> tuple[int, int]:
    """(errors, reference words), so WER can be pooled over files."""
    ref, hyp = " ".join(normalize(reference)), " ".join(normalize(hypothesis))
    if not ref:
        return len(hyp.split()), 0
    out = jiwer.process_words(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, len(ref.split())


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


@dataclass
class _HypWord:
    key: str
    segment_id: str
    index: int
    start: float


def _utterance_ends(rec: StreamRecord, segments: list[dict[str, Any]]) -> list[tuple[dict[str, Any], _HypWord]]:
    """Each reference utterance with the final word that matches its last word (utterances not heard are left
    out)."""
    hyp: list[_HypWord] = []
    for seg in rec.finals:
        for i, w in enumerate(seg["words"]):
            for key in normalize(w["text"]):
                hyp.append(_HypWord(key, seg["segment_id"], i, w["start"]))
    ref: list[tuple[str, int]] = []
    for u, seg in enumerate(segments):
        ref += [(k, u) for k in normalize(seg["text"])]
    matcher = difflib.SequenceMatcher(None, [k for k, _ in ref], [h.key for h in hyp], autojunk=False)
    last_match: dict[int, _HypWord] = {}
    for block in matcher.get_matching_blocks():
        for j in range(block.size):
            last_match[ref[block.a + j][1]] = hyp[block.b + j]  # later matches overwrite: the last word wins
    return [(seg, last_match[u]) for u, seg in enumerate(segments) if u in last_match]


def commit_latencies(rec: StreamRecord, segments: list[dict[str, Any]]) -> list[float]:
    """For each reference utterance: from the moment its last audio was sent to the first message in
    which the word matching its last word is final (in a partial or in the segment's final)."""
    return [latency for _, latency in utterance_commits(rec, segments)]


def utterance_commits(rec: StreamRecord, segments: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float]]:
    """:func:`commit_latencies` with the utterance each is of (utterances never committed are left out)."""
    out = []
    for seg, word in _utterance_ends(rec, segments):
        first = _first_final(rec, word)
        if first is not None:
            out.append((seg, first - rec.sent_at(seg["end"])))
    return out


def segment_final_latencies(rec: StreamRecord, segments: list[dict[str, Any]]) -> list[float]:
    """For each reference utterance: from the moment its last audio was sent to the first ``is_final`` message
    that holds the word matching its last word: what a subscriber acting on segment finals waits for."""
    out = []
    for seg, word in _utterance_ends(rec, segments):
        for r in rec.transcriptions:
            d = r.data
            if d["is_final"] and d["segment_id"] == word.segment_id:
                out.append(r.t - rec.sent_at(seg["end"]))
                break
    return out


def onset_latencies(rec: StreamRecord, segments: list[dict[str, Any]]) -> list[float]:
    """For each reference utterance: from the moment its first audio was sent to the first message showing one of
    its words (a word stamped inside it), final or not: how long a caption stays blank when someone starts to
    speak, or, at a turn, how long the words shown are still only the last speaker's."""
    out = []
    for seg in segments:
        for r in rec.transcriptions:
            if any(seg["start"] - 0.2 <= w["start"] <= seg["end"] for w in r.data["words"]):
                out.append(r.t - rec.sent_at(seg["start"]))
                break
    return out


def utterance_id(segment_id: str) -> str:
    """The segment a final part came from: a final split at a speaker change is ``<segment_id>-<n>``, and its
    words were already in the partials of ``<segment_id>``."""
    return segment_id.split("-", 1)[0]


def _first_final(rec: StreamRecord, word: _HypWord) -> float | None:
    for r in rec.transcriptions:
        d = r.data
        if utterance_id(d["segment_id"]) != utterance_id(word.segment_id):
            continue
        for w in d["words"]:
            if w["final"] and abs(w["start"] - word.start) < 0.05 and word.key in normalize(w["text"]):
                return r.t
    return None


def final_latencies(rec: StreamRecord) -> list[float]:
    """From the last audio of each segment to its final (the parts of a segment split at a speaker change
    count as one segment, ending where its last part ends)."""
    ends: dict[str, tuple[float, float]] = {}
    for r in rec.transcriptions:
        d = r.data
        if d["is_final"]:
            key = utterance_id(d["segment_id"])
            end, t = ends.get(key, (d["end"], r.t))
            ends[key] = (max(end, d["end"]), max(t, r.t))
    return [t - rec.sent_at(end) for end, t in ends.values()]


def first_partial(rec: StreamRecord) -> float | None:
    for r in rec.transcriptions:
        return r.t - rec.started
    return None


def lag_series(rec: StreamRecord) -> list[tuple[float, float]]:
    return [(round(r.t - rec.started, 2), r.data["lag_seconds"]) for r in rec.of_type("status")
            if r.data.get("lag_seconds") is not None and r.data["status"] == "processing"]


GROWTH_MIN_SECONDS = 30.0


def lag_growth(series: list[tuple[float, float]]) -> float | None:
    """Slope of lag over time (s/s) in the second half of the stream: ~0 when the server keeps up.

    Lag rises within every utterance and falls at its end, so a slope needs a stream long enough to hold
    several utterances: over the second half of a 6 s clip (three samples) it measures one sawtooth.
    """
    if len(series) < 4 or series[-1][0] - series[0][0] < GROWTH_MIN_SECONDS:
        return None
    half = series[len(series) // 2:]
    t = np.array([p[0] for p in half])
    y = np.array([p[1] for p in half])
    if np.ptp(t) == 0:
        return None
    return float(np.polyfit(t, y, 1)[0])


def level_figures(n: int, chosen: list[str], records: list[Any], refs: dict[str, Any],
                  max_seconds: float = 0) -> dict[str, Any]:
    """Latency, WER and lag of one level's streams, from what their client received."""
    per_file, commits, finals, seg_finals, onsets, firsts, lag_max, growth = [], [], [], [], [], [], [], []
    errors = words = 0
    for f, rec in zip(chosen, records, strict=True):
        ref = refs.get(f, {})
        segs = [s for s in ref.get("segments") or [] if s["end"] <= rec.audio_seconds + 0.05]
        c = commit_latencies(rec, segs)
        sf = segment_final_latencies(rec, segs)
        on = onset_latencies(rec, segs)
        fl = final_latencies(rec)
        fp = first_partial(rec)
        lags = lag_series(rec)
        e, w = wer_counts(" ".join(s["text"] for s in segs) if max_seconds else ref.get("text", ""),
                          rec.final_text) if ref else (0, 0)
        errors, words = errors + e, words + w
        commits += c
        finals += fl
        seg_finals += sf
        onsets += on
        if fp is not None:
            firsts.append(fp)
        if lags:
            lag_max.append(max(v for _, v in lags))
        g = lag_growth(lags)
        if g is not None:
            growth.append(g)
        per_file.append({"file": f, "transcript_id": rec.transcript_id, "audio_seconds": round(rec.audio_seconds, 2),
                         "wer": round(e / w, 4) if w else None, "errors": e, "ref_words": w, "text": rec.final_text,
                         "commit_latency": [round(x, 3) for x in c],
                         "segment_final_latency": [round(x, 3) for x in sf],
                         "onset_latency": [round(x, 3) for x in on],
                         "final_latency": [round(x, 3) for x in fl], "first_partial_s": fp, "lag": lags,
                         "completed_after_stop_s": round(rec.completed - rec.stopped, 3)
                         if rec.completed and rec.stopped else None})
    return {
        "n": n,
        "files": chosen,
        "first_partial_s_p50": percentile(firsts, 50),
        "commit_latency_p50": percentile(commits, 50),
        "commit_latency_p95": percentile(commits, 95),
        "commit_latency_count": len(commits),
        "segment_final_latency_p50": percentile(seg_finals, 50),
        "segment_final_latency_p95": percentile(seg_finals, 95),
        "onset_latency_p50": percentile(onsets, 50),
        "onset_latency_p95": percentile(onsets, 95),
        "final_latency_p50": percentile(finals, 50),
        "final_latency_p95": percentile(finals, 95),
        "wer": round(errors / words, 4) if words else None,
        "ref_words": words,
        "lag_max_s": max(lag_max) if lag_max else None,
        "lag_growth_s_per_s": max(growth) if growth else None,
        "per_file": per_file,
    }


def fmt(v: Any, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def admission_figures(records: list[Any]) -> dict[str, Any]:
    """How long each stream waited from its ``start`` to its ``receiving audio`` status (the longest), and how
    many were refused for load (``OVERLOADED``, ``RATE_LIMITED``)."""
    waits, refused = [], 0
    for rec in records:
        if any(r.type == "error" and r.data.get("code") in ("OVERLOADED", "RATE_LIMITED") for r in rec.received):
            refused += 1
        ack = next((r.t for r in rec.received if r.type == "status" and r.data.get("message") == "receiving audio"),
                   None)
        if ack is not None:
            waits.append(max(0.0, ack - rec.started))
    return {"admission_wait_max_s": round(max(waits), 3) if waits else None, "refused": refused}
