"""``voxlane bench --hostile``: does the server stay responsive while a client attacks it?

One client sends hostile input over every door at once: huge WebSocket frames, audio in garbage formats,
oversized and deeply nested JSON control messages, floods of control messages, and oversized, nested and
garbage HTTP bodies. Meanwhile another client, on a thread of its own, times ``GET /health`` (first on a quiet
server, then under attack). The server passes when the p99 under attack stays within the target (100 ms).
What the attacks got back (protocol error codes, HTTP statuses, closes) is tallied too: a 5xx is a bug.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import websockets

from bench.metrics import percentile
from server.cli.live_client import create_transcript, ws_url

TARGET_P99_MS = 100.0
PROBE_INTERVAL_S = 0.02


class HealthProbe:
    """``GET /health`` in a loop on its own thread and connection: the attack's client work never delays it."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/health"
        self.samples: list[tuple[float, float | None]] = []  # (monotonic time, latency ms or None: failed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="health-probe")

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    ok = client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.samples.append((time.monotonic(), (time.perf_counter() - t0) * 1000 if ok else None))
                self._stop.wait(PROBE_INTERVAL_S)

    def figures(self, start: float, end: float) -> dict[str, Any]:
        window = [ms for t, ms in self.samples if start <= t < end]
        good = [ms for ms in window if ms is not None]
        return {"requests": len(window), "failed": len(window) - len(good), "p50_ms": percentile(good, 50),
                "p99_ms": percentile(good, 99), "max_ms": max(good) if good else None}


class Tally:
    """What the attacks sent and what came back, by attack."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.got: dict[str, Counter[str]] = {}

    def answer(self, attack: str, what: str) -> None:
        self.got.setdefault(attack, Counter())[what] += 1


def error_code(msg: Any) -> str | None:
    """The code of an error message of any of the live protocols (voxlane's, OpenAI Realtime's); None if
    ``msg`` is not an error."""
    if not isinstance(msg, dict) or str(msg.get("type", "")).lower() != "error":
        return None
    body = msg.get("data") or msg.get("error") or {}
    return str(body.get("code") or "error") if isinstance(body, dict) else "error"


async def ws_attack(url: str, tally: Tally, name: str, until: float, send: Callable[[Any], Awaitable[None]],
                    opening: str | None = None) -> None:
    """Reconnects whenever the server closes the socket (as it may, for a frame over its hard limit, or a run of
    invalid messages)."""
    while time.monotonic() < until:
        try:
            async with websockets.connect(url, max_size=None, open_timeout=10, compression=None) as ws:
                if opening is not None:
                    await ws.send(opening)
                async def read() -> None:
                    try:
                        async for raw in ws:
                            code = error_code(json.loads(raw))
                            if code is not None:
                                tally.answer(name, code)
                    except websockets.ConnectionClosed as exc:  # the server dropped the connection
                        tally.answer(name, f"closed {exc.rcvd.code if exc.rcvd else 'abnormally'}")
                    tally.answer(name, "connection ended")

                reader = asyncio.create_task(read())
                try:
                    while (left := until - time.monotonic()) > 0:
                        try:
                            await asyncio.wait_for(send(ws), left)
                        except TimeoutError:
                            tally.answer(name, "still sending at the end (the server reads no faster)")
                            break
                        tally.sent[name] += 1
                        await asyncio.sleep(0)  # a send that never blocks must not starve the other attackers
                finally:
                    reader.cancel()
                    await asyncio.gather(reader, return_exceptions=True)
        except websockets.ConnectionClosed as exc:
            tally.answer(name, f"closed {exc.rcvd.code if exc.rcvd else 'abnormally'}")
        except (OSError, TimeoutError) as exc:
            tally.answer(name, f"connect failed: {type(exc).__name__}")
            await asyncio.sleep(0.2)


async def _http_attack(base: str, tally: Tally, name: str, until: float,
                       request: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        while (left := until - time.monotonic()) > 0:
            try:
                r = await asyncio.wait_for(request(http), left)
                tally.answer(name, str(r.status_code))
            except TimeoutError:
                tally.answer(name, "unanswered at the end")
                break
            except httpx.HTTPError as exc:
                tally.answer(name, type(exc).__name__)
            tally.sent[name] += 1


async def attack(base: str, seconds: float, tally: Tally, frame_mb: float = 8.0) -> None:
    """Every hostile client at once, for ``seconds``."""
    until = time.monotonic() + seconds
    tids = [await create_transcript(base, f"hostile {i}") for i in range(7)]
    huge = os.urandom(int(frame_mb * 2**20) & ~1)
    garbage = os.urandom(64 * 1024)
    big_json = json.dumps({"action": "start", "params": {"pad": "x" * 200_000}})
    nested = '{"action": "start", "params": ' + "[" * 30_000 + "]" * 30_000 + "}"
    start_pcm = json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 16000}})

    async def huge_frames(ws: Any) -> None:
        await ws.send(huge)

    async def garbage_format(ws: Any) -> None:
        await ws.send(json.dumps({"action": "start", "params": {"format": "ogg"}}))
        await ws.send(garbage)
        await ws.send(json.dumps({"action": "stop", "params": {}}))

    async def oversized_json(ws: Any) -> None:
        await ws.send(big_json)
        await ws.send("{" * 1000)

    async def nested_json(ws: Any) -> None:
        await ws.send(nested)

    async def control_flood(ws: Any) -> None:
        for _ in range(200):
            await ws.send('{"action": "get_status"}')
        await asyncio.sleep(0)  # let the reader run once per burst

    nested_body = ("[" * 100_000 + "]" * 100_000).encode()
    big_body = b'{"name": "' + b"x" * (8 * 2**20) + b'"}'
    tasks = [
        ws_attack(ws_url(base, tids[0]), tally, "ws huge frames", until, huge_frames, opening=start_pcm),
        ws_attack(ws_url(base, tids[1]), tally, "ws garbage audio", until, garbage_format),
        ws_attack(ws_url(base, tids[2]), tally, "ws oversized json", until, oversized_json),
        ws_attack(ws_url(base, tids[5]), tally, "ws nested json", until, nested_json),
        ws_attack(ws_url(base, tids[3]), tally, "ws control flood", until, control_flood),
        _http_attack(base, tally, "http oversized json", until,
                     lambda h: h.post("/v1/transcripts/", content=big_body,
                                      headers={"Content-Type": "application/json"})),
        _http_attack(base, tally, "http nested json", until,
                     lambda h: h.post("/v1/transcripts/", content=nested_body,
                                      headers={"Content-Type": "application/json"})),
        _http_attack(base, tally, "http garbage upload", until,
                     lambda h: h.post(f"/v1/transcripts_audio/{tids[6]}/upload", content=garbage,
                                      headers={"Content-Type": "audio/ogg"})),
    ]
    await asyncio.gather(*tasks)


def run_hostile(args: argparse.Namespace) -> dict[str, Any]:
    tally = Tally()
    with HealthProbe(args.url) as probe:
        quiet_start = time.monotonic()
        time.sleep(args.quiet_s)
        attack_start = time.monotonic()
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(attack(args.url, args.duration_s, tally, args.frame_mb))
        attack_end = time.monotonic()
    quiet = probe.figures(quiet_start, attack_start)
    hostile = probe.figures(attack_start, attack_end)
    p99 = hostile["p99_ms"]
    server_errors = sum(n for got in tally.got.values() for what, n in got.items() if what.startswith("5"))
    return {"mode": "hostile", "url": args.url, "label": args.label, "started": time.time(),
            "duration_s": round(attack_end - attack_start, 1), "target_p99_ms": TARGET_P99_MS,
            "health_quiet": quiet, "health_under_attack": hostile,
            "within_target": None if p99 is None else p99 <= TARGET_P99_MS and hostile["failed"] == 0,
            "server_errors_5xx": server_errors, "sent": dict(tally.sent),
            "answers": {k: dict(v) for k, v in tally.got.items()}}


def hostile_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    from bench.metrics import fmt

    cols = ["/health", "requests", "failed", "p50 ms", "p99 ms", "max ms"]
    rows = [[name, str(f["requests"]), str(f["failed"]), fmt(f["p50_ms"], 1), fmt(f["p99_ms"], 1),
             fmt(f["max_ms"], 1)]
            for name, f in (("quiet", result["health_quiet"]), ("under attack", result["health_under_attack"]))]
    return cols, rows


def print_answers(result: dict[str, Any]) -> None:
    verdict = {True: "within", False: "OVER", None: "-"}[result["within_target"]]
    print(f"p99 under attack {verdict} the {result['target_p99_ms']:g} ms target; 5xx answers:"
          f" {result['server_errors_5xx']}")
    for name in sorted(set(result["sent"]) | set(result["answers"])):
        got = result["answers"].get(name, {})
        answers = ", ".join(f"{k} x{v}" for k, v in sorted(got.items(), key=lambda kv: -kv[1])) or "nothing"
        print(f"  {name}: sent {result['sent'].get(name, 0)}, got {answers}")
