"""What must hold after any fault, read from the database the nodes share: every fault scenario (the tests marked
``faults``) ends with :func:`assert_invariants` over the transcripts it touched, besides its own checks.

- nothing is left ``live`` or ``processing`` (the scenario waited out its grace period and its jobs);
- no final is stored twice (two segments of one transcript with the same start and text);
- no chunk is left unfinished (``uploaded``, ``receiving``, ``processing``), and none was failed;
- a completed transcript's duration covers its last segment, and with ``one_timeline`` (a single live stream,
  no participants) no segment overlaps the one before it: a stream that went on elsewhere did not write over
  what was stored.
"""

from __future__ import annotations

from collections import Counter

from tests.db_support import fetch_rows


async def assert_invariants(database_url: str, transcript_ids: list[str], *, one_timeline: bool = False) -> None:
    problems: list[str] = []
    for tid in transcript_ids:
        rows = await fetch_rows(database_url, "SELECT status, duration FROM transcripts WHERE id = :t", t=tid)
        if not rows:
            problems.append(f"{tid}: gone")
            continue
        [(status, duration)] = rows
        if status in ("live", "processing"):
            problems.append(f"{tid}: left {status}")
        segments = await fetch_rows(database_url, 'SELECT start, "end", text FROM segments WHERE transcript_id = :t'
                                    " ORDER BY start", t=tid)
        twice = [key for key, n in Counter((round(s, 2), text) for s, _, text in segments).items() if n > 1]
        if twice:
            problems.append(f"{tid}: finals stored twice: {twice[:3]}")
        if status == "completed" and segments and duration is not None and duration < segments[-1][1] - 0.05:
            problems.append(f"{tid}: completed at {duration} s, before its last segment ends ({segments[-1][1]} s)")
        if one_timeline:
            overlaps = [(a, b) for a, b in zip(segments, segments[1:], strict=False) if b[0] < a[1] - 0.05]
            if overlaps:
                problems.append(f"{tid}: overlapping segments: {overlaps[:3]}")
        chunks = await fetch_rows(database_url, "SELECT idx, status, error FROM chunks WHERE transcript_id = :t",
                                  t=tid)
        for idx, chunk_status, error in chunks:
            if chunk_status in ("uploaded", "receiving", "processing", "failed"):
                problems.append(f"{tid}: chunk {idx} left {chunk_status} {error or ''}".rstrip())
    assert not problems, "invariants broken after the fault:\n" + "\n".join(problems)
