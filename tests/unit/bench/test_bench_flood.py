"""``voxlane bench --flood``: its payloads sit just under the limits they probe, and its table says which
families ran and which were skipped."""

from __future__ import annotations

import pytest

from bench.flood import FAMILIES, NEAR_CONTROL, chosen, flood_rows, pathological_events
from protocol.realtime import MAX_EVENT_CHARS
from server.transports.realtime_inbound import MAX_CONTROL_CHARS


def test_pathological_events_are_just_under_the_limits():
    *parsed, unparsed = pathological_events()
    assert all(MAX_CONTROL_CHARS - 1024 < len(e) <= MAX_CONTROL_CHARS for e in parsed), [len(e) for e in parsed]
    assert MAX_CONTROL_CHARS < len(unparsed) <= MAX_EVENT_CHARS
    assert NEAR_CONTROL < MAX_CONTROL_CHARS


def test_families_are_chosen_by_name():
    assert chosen("") == FAMILIES
    assert [f.name for f in chosen("native-ws, deepgram-ws")] == ["native-ws", "deepgram-ws"]
    with pytest.raises(SystemExit, match="unknown families"):
        chosen("native-ws,telnet")


def test_the_table_shows_skipped_families():
    health = {"requests": 200, "failed": 0, "p50_ms": 2.0, "p99_ms": 140.0, "max_ms": 180.0}
    result = {"health_quiet": {**health, "p99_ms": 5.0},
              "families": [{"family": "native-ws", "seconds": 5.0, "sent": {"a": 3, "b": 4}, "health": health,
                            "within_target": False},
                           {"family": "deepgram-ws", "skipped": "handshake refused with HTTP 403"}]}
    cols, rows = flood_rows(result)
    assert cols[0] == "family" and [r[0] for r in rows] == ["(quiet)", "native-ws", "deepgram-ws"]
    assert rows[1][2] == "7" and rows[1][-1] == "OVER" and rows[2][1] == "skipped"
