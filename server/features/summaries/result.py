"""A summary as stored and published, and a transcript's text as the summarizers read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol import Summary
from server.storage.base import utcnow

EXTRACTIVE = "extractive"  # the offline method's name, in ``model_used``


@dataclass
class SummaryResult:
    summary: str
    topics: list[str] = field(default_factory=list)
    action_items: list[str] = field(default_factory=list)
    key_points: list[str] = field(default_factory=list)
    model_used: str = EXTRACTIVE
    error: str | None = None

    def stored(self) -> dict[str, Any]:
        """What goes in the transcript's ``summary`` field."""
        out = {"summary": self.summary, "topics": self.topics, "action_items": self.action_items,
               "key_points": self.key_points, "model_used": self.model_used, "created_at": utcnow()}
        if self.error:
            out["error"] = self.error
        return out

    def message(self) -> Summary:
        return Summary(summary=self.summary, topics=self.topics, action_items=self.action_items,
                       key_points=self.key_points)


def transcript_text(segments: list[dict[str, Any]], speakers: bool = True) -> str:
    """The transcript as lines of text (``Speaker: text`` where a speaker is known)."""
    lines = []
    for seg in segments:
        text = " ".join(str(seg.get("text") or "").split())
        if not text:
            continue
        who = seg.get("speaker") if speakers else None
        lines.append(f"{who}: {text}" if who else text)
    return "\n".join(lines)
