"""Client JSON, parsed safely for every place that takes it (HTTP bodies, live control messages, Realtime events):
nesting measured without recursion (``json.loads`` raises RecursionError on deep input, which must become a clear
error), and only JSON's own numbers."""

from __future__ import annotations

import json
import re

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays/objects a client's JSON may have: no request or message of this API needs more,
and parsers, validators and encoders downstream recurse per level (``json.loads`` alone gives up near 1000)."""

_JSON_TOKENS = re.compile(rb'[\[\]{}"\\]')


def json_depth(raw: bytes | str, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep arrays/objects nest in ``raw`` (counting stops past ``limit``), in one pass and without
    recursion; brackets inside strings do not count. Meant for bodies ``json.loads`` will then parse."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return 0  # cannot nest deeper than it has brackets: most bodies stop here
    depth, in_string, skip = 0, False, -1
    for m in _JSON_TOKENS.finditer(raw):
        pos = m.start()
        if pos == skip:  # the character after a backslash inside a string
            continue
        c = raw[pos]
        if in_string:
            if c == 0x5C:
                skip = pos + 1
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return depth
        else:
            depth -= 1
    return 0


def _not_json(constant: str) -> float:
    raise ValueError(f"{constant} is not a JSON number")


def loads(raw: str | bytes) -> object:
    """``json.loads`` that holds a client to JSON: Python's also takes ``NaN`` and ``Infinity``, which no JSON
    encoder writes back (they would come back to the client as ``null``)."""
    return json.loads(raw, parse_constant=_not_json)
