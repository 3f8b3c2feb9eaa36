"""What a test that hangs was waiting on, written out before pytest-timeout fails it.

A hung test must fail, not hold the suite until CI gives up: ``timeout`` in pyproject.toml bounds every test
(pytest-timeout, whose alarm interrupts an event loop waiting in ``select``). What it reports is where the main
thread was, and an asyncio test hangs inside one ``select`` call whatever it awaits; so shortly before that,
this plugin writes every pending task's chain of awaits to stderr, which the failure report shows.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

AHEAD_S = 30.0


def _awaits(task: asyncio.Task[Any]) -> list[str]:
    lines = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None:
            lines.append(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return lines


def dump_tasks(nodeid: str) -> None:
    lines = [f"\n{nodeid} is still running; its pending asyncio tasks:"]
    for task in list(asyncio.tasks._all_tasks):  # every loop's: the session loop's and the test's own
        if not task.done():
            lines.append(f"  {task.get_name()}")
            lines += _awaits(task)
    sys.__stderr__.write("\n".join(lines) + "\n")
    sys.__stderr__.flush()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    try:
        limit = item.config.getini("timeout")
    except ValueError:  # pytest-timeout is not installed (the test extra brings it): nothing to come before
        limit = None
    timer = None
    if limit and float(limit) > AHEAD_S:
        timer = threading.Timer(float(limit) - AHEAD_S, dump_tasks, (item.nodeid,))
        timer.daemon = True
        timer.start()
    try:
        return (yield)
    finally:
        if timer is not None:
            timer.cancel()
