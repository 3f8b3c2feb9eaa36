"""A generated report as Markdown: the same sections as its JSON, every quote and item linked to its
conversation at its time. Stored text goes in as it is (one line each), placeholders such as ``[EMAIL]``
included."""

from __future__ import annotations

from typing import Any

from server.features.exports.archive import hms, one_line


def where(item: dict[str, Any]) -> str:
    """``conversation name, 00:01:23`` (the conversation and time an item points at)."""
    if not item.get("conversation_id"):
        return ""
    name = one_line(item.get("conversation_name") or item["conversation_id"])
    return f"{name}, {item['time']}" if item.get("time") else name


def cited(item: dict[str, Any], form: str) -> str:
    """``form`` with the item's :func:`where` (``{where}``) and link (``{url}``) in it; "" for an item that points
    at no conversation."""
    label = where(item)
    return form.format(where=label, url=item["url"]) if label else ""


_LINK = " ([{where}]({url}))"


def report_markdown(report: dict[str, Any]) -> str:
    result = report["result"]
    overview = result["overview"]
    lines = [f"# {one_line(result['title'])}", ""]
    span = ""
    if overview.get("first_conversation_at"):
        span = f" from {overview['first_conversation_at'][:10]} to {overview['last_conversation_at'][:10]}"
    lines += [f"- Conversations: {overview['conversation_count']} ({overview['summarized']} summarized){span}",
              f"- Total duration: {hms(overview.get('total_duration'))}",
              f"- Generated: {result['generated_at']} ({overview.get('model_used') or 'no summaries'})",
              f"- Report: {report['id']}", "", "## Overview", "",
              one_line(overview.get("summary")) or "_No conversation had text to summarize._", "", "## Topics", ""]
    if result["topics"]:
        lines += ["| Topic | Conversations | Mentions |", "| --- | ---: | ---: |"]
        lines += [f"| {one_line(t['topic']).replace('|', '/')} | {t['conversations']} | {t['mentions']} |"
                  for t in result["topics"]]
    else:
        lines.append("_No topic came up._")
    lines += ["", "## Key points", ""]
    lines += [f"- {one_line(p['text'])}{cited(p, _LINK)}" for p in result["key_points"]] or ["_None._"]
    lines += ["", "## Action items", ""]
    lines += [f"- [ ] {one_line(a['text'])}{cited(a, _LINK)}" for a in result["action_items"]] or ["_None._"]
    lines += ["", "## Notable quotes", ""]
    for q in result["quotes"]:
        who = f"{one_line(q['speaker'])}, " if q.get("speaker") else ""
        lines += [f"> {one_line(q['text'])}", ">", f"> - {who}[{where(q)}]({q['url']})", ""]
    if not result["quotes"]:
        lines += ["_None._", ""]
    lines += ["## Conversations", ""]
    for c in result["conversations"]:
        facts = [c["created_at"][:16].replace("T", " ") + " UTC", hms(c.get("duration"))]
        if c.get("tags"):
            facts.append("tags: " + ", ".join(one_line(t) for t in c["tags"]))
        lines += [f"### [{one_line(c['name'])}]({c['url']})", "", " · ".join(facts), "",
                  one_line(c.get("summary")) or f"_No summary ({c['summary_state']})._", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
