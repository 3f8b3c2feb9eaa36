"""``voxlane bench --flood``: does ``/health`` stay fast while one family of floods after another runs?

Each family (:data:`FAMILIES`) floods one live door for ``--flood-s`` seconds while a steady poller on a thread
of its own times ``GET /health``; the families run one at a time, after a quiet window, so each one's p50/p99 is
its own. The target is a p99 within 100 ms under any flood. A family whose route the server does not have (a
WebSocket handshake refused) is skipped and said so: adding a door is adding a :class:`Family`.

Without ``--url`` it starts a server of its own on a free port (``VOXLANE_*`` variables apply; a temporary
data directory), and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import websockets

from bench.hostile import TARGET_P99_MS, HealthProbe, Tally, error_code, ws_attack
from server.cli.live_client import create_transcript, ws_url

REPO = Path(__file__).resolve().parents[1]
NEAR_CONTROL = 64 * 1024 - 512
"""Just under the largest control message (a Realtime event other than an append, a native control message):
the size that is still parsed."""
NEAR_EVENT = 15 * 1024 * 1024
"""Just under a Realtime event's limit (the base64 of an append): refused unparsed unless it is an append."""
SESSION_BURST = 40
"""Realtime sessions opened at once from one token, again and again."""


@dataclass
class Flood:
    """What a family's attack is given: the server, the token, where the answers go, and until when."""

    base: str
    token: str | None
    tally: Tally
    until: float
    frame_kb: int

    def ws(self, path: str) -> str:
        url = self.base.replace("http://", "ws://").replace("https://", "wss://").rstrip("/") + path
        if self.token:
            url += ("&" if "?" in url else "?") + f"token={self.token}"
        return url


@dataclass(frozen=True)
class Family:
    name: str
    probe: str  # a WebSocket path: a refused handshake skips the family
    about: str
    attack: Callable[[Flood], Awaitable[None]]


# ---------------------------------------------------------------- payloads


def pathological_events() -> list[str]:
    """Realtime events just under the size that is parsed, each the worst of one kind, and one just under the
    size that is refused unparsed."""
    head = '{"type":"session.update","event_id":"flood","session":{"type":"transcription"},'
    depth = (NEAR_CONTROL - len(head)) // 2 - 8
    keys: list[str] = []
    size = len(head)
    while size < NEAR_CONTROL - 16:
        keys.append(f'"k{len(keys)}":0')
        size += len(keys[-1]) + 1
    many = head + ",".join(keys) + "}"
    return [
        head + '"x":' + "[" * depth + "]" * depth + "}",  # deep nesting
        head + '"x":' + "9" * (NEAR_CONTROL - len(head) - 8) + "}",  # a huge number
        head + '"x":"' + "\\u00e9" * ((NEAR_CONTROL - len(head)) // 6 - 2) + '"}',  # a long run of escapes
        many,  # many keys
        '{"type":"session.update",' + ",".join(['"audio":0'] * (NEAR_EVENT // 10)) + "}",  # 15 MiB, unparsed
    ]


def appends() -> list[str]:
    """A run of appends: small valid ones, one of 10 s (paced), one that is not base64, one over the limit."""
    def event(audio: str) -> str:
        return json.dumps({"type": "input_audio_buffer.append", "audio": audio})

    small = event(base64.b64encode(bytes(4800)).decode())  # 100 ms of 24 kHz PCM
    return [*[small] * 20, event(base64.b64encode(os.urandom(480_000)).decode()), event("!" * 1_000_000),
            event("A" * (NEAR_EVENT - 1024))]


# ---------------------------------------------------------------- the families


async def _cycle(ws: Any, messages: list[str | bytes]) -> None:
    for m in messages:
        await ws.send(m)


async def realtime_json(flood: Flood) -> None:
    events: list[str | bytes] = list(pathological_events())
    url = flood.ws("/v1/realtime?intent=transcription")
    await asyncio.gather(*(ws_attack(url, flood.tally, "realtime json", flood.until, lambda ws: _cycle(ws, events))
                           for _ in range(2)))


async def realtime_appends(flood: Flood) -> None:
    events: list[str | bytes] = list(appends())
    url = flood.ws("/v1/realtime?intent=transcription")
    await asyncio.gather(*(ws_attack(url, flood.tally, "realtime appends", flood.until,
                                     lambda ws: _cycle(ws, events)) for _ in range(2)))


async def realtime_sessions(flood: Flood) -> None:
    """Bursts of sessions opened at once from one token; each reads its first event, then leaves."""
    url = flood.ws("/v1/realtime?intent=transcription")

    async def one() -> None:
        try:
            async with websockets.connect(url, open_timeout=10) as ws:
                first = json.loads(await asyncio.wait_for(ws.recv(), 10))
                flood.tally.answer("realtime sessions", error_code(first) or first.get("type", "?"))
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            flood.tally.answer("realtime sessions", type(exc).__name__)
        flood.tally.sent["realtime sessions"] += 1

    while time.monotonic() < flood.until:
        await asyncio.gather(*(one() for _ in range(SESSION_BURST)))


async def native_ws(flood: Flood) -> None:
    """Frames of the largest size to a started stream (held to real time), and runs of bad control messages."""
    frame = os.urandom(flood.frame_kb * 1024)
    start = json.dumps({"action": "start", "params": {"format": "pcm_s16le", "sample_rate": 16000}})
    bad: list[str | bytes] = ["{not json", json.dumps({"action": "dance"}), "[" * 20_000 + "]" * 20_000,
                              json.dumps({"action": "get_status", "pad": "x" * NEAR_CONTROL})]
    tids = [await create_transcript(flood.base, f"flood {i}", flood.token) for i in range(2)]

    async def frames(ws: Any) -> None:
        await ws.send(frame)

    await asyncio.gather(
        ws_attack(ws_url(flood.base, tids[0], flood.token), flood.tally, "native frames", flood.until, frames,
                  opening=start),
        ws_attack(ws_url(flood.base, tids[1], flood.token), flood.tally, "native bad control", flood.until,
                  lambda ws: _cycle(ws, bad)))


async def deepgram_ws(flood: Flood) -> None:
    """The same on the Deepgram-compatible route: the largest frames, and bad control messages."""
    url = flood.ws("/v1/listen?encoding=linear16&sample_rate=16000&channels=1")
    frame = os.urandom(flood.frame_kb * 1024)
    bad: list[str | bytes] = ["{not json", json.dumps({"type": "Dance"}), "[" * 20_000 + "]" * 20_000,
                              json.dumps({"type": "KeepAlive", "pad": "x" * NEAR_CONTROL})]

    async def frames(ws: Any) -> None:
        await ws.send(frame)

    await asyncio.gather(ws_attack(url, flood.tally, "deepgram frames", flood.until, frames),
                         ws_attack(url, flood.tally, "deepgram bad control", flood.until, lambda ws: _cycle(ws, bad)))


FAMILIES = [
    Family("realtime-json", "/v1/realtime?intent=transcription",
           "Realtime events just under the size limits: deep nesting, huge numbers, escapes, many keys", realtime_json),
    Family("realtime-appends", "/v1/realtime?intent=transcription",
           "Realtime appends: small valid ones, 10 s ones, invalid base64, over the limit", realtime_appends),
    Family("realtime-sessions", "/v1/realtime?intent=transcription",
           f"{SESSION_BURST} Realtime sessions opened at once from one token, again and again", realtime_sessions),
    Family("native-ws", "/v1/transcripts_websocket/flood-probe",
           "native WebSocket: frames of the largest size, runs of bad control messages", native_ws),
    Family("deepgram-ws", "/v1/listen?encoding=linear16&sample_rate=16000",
           "WS /v1/listen: frames of the largest size, bad control messages", deepgram_ws),
]


# ---------------------------------------------------------------- running


async def route_refusal(flood: Flood, path: str) -> str | None:
    """Why the server has no such WebSocket route (its handshake was refused), or None: it has."""
    try:
        async with websockets.connect(flood.ws(path), open_timeout=10):
            return None
    except websockets.InvalidStatus as exc:
        return f"handshake refused with HTTP {exc.response.status_code}"
    except (OSError, TimeoutError, websockets.WebSocketException):
        return None  # accepted, then closed (an unknown transcript's 4404): the route exists


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def own_server() -> Iterator[str]:
    """A server of this run's own (``voxlane serve`` with the caller's ``VOXLANE_*``, a temporary data dir)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="voxlane-flood-") as tmp:
        env = {**os.environ, "VOXLANE_DATA_DIR": str(Path(tmp) / "data"), "VOXLANE_PORT": str(port),
               "VOXLANE_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"voxlane bench --flood: the server did not start:\n"
                                     f"{(Path(tmp) / 'server.log').read_text()[-4000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def chosen(names: str) -> list[Family]:
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = set(wanted) - {f.name for f in FAMILIES}
    if unknown:
        raise SystemExit(f"voxlane bench --flood: unknown families {sorted(unknown)};"
                         f" known: {[f.name for f in FAMILIES]}")
    return [f for f in FAMILIES if not wanted or f.name in wanted]


def run_flood(args: argparse.Namespace, own: bool) -> dict[str, Any]:
    families = chosen(args.families)
    with own_server() if own else contextlib.nullcontext(args.url) as base:
        return {**_run(args, base, families), "own_server": own}


def _run(args: argparse.Namespace, base: str, families: list[Family]) -> dict[str, Any]:
    result: dict[str, Any] = {"mode": "flood", "url": base, "label": args.label,
                              "started": time.time(), "cpu_count": os.cpu_count(), "flood_s": args.flood_s,
                              "target_p99_ms": TARGET_P99_MS, "families": []}
    with HealthProbe(base) as probe:
        t0 = time.monotonic()
        time.sleep(args.quiet_s)
        result["health_quiet"] = probe.figures(t0, time.monotonic())
        for family in families:
            tally = Tally()
            flood = Flood(base, args.token, tally, 0.0, args.frame_kb)
            row: dict[str, Any] = {"family": family.name, "about": family.about}
            refusal = asyncio.run(route_refusal(flood, family.probe))
            if refusal is not None:
                result["families"].append({**row, "skipped": refusal})
                print(f"{family.name}: skipped ({refusal})", file=sys.stderr)
                continue
            start = time.monotonic()
            flood.until = start + args.flood_s
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(family.attack(flood))
            end = time.monotonic()
            health = probe.figures(start, end)
            p99 = health["p99_ms"]
            row.update(seconds=round(end - start, 1), health=health, sent=dict(tally.sent),
                       answers={k: dict(v) for k, v in tally.got.items()},
                       within_target=None if p99 is None else p99 <= TARGET_P99_MS and health["failed"] == 0)
            result["families"].append(row)
            print(f"{family.name}: /health p50/p99 {health['p50_ms']}/{p99} ms", file=sys.stderr)
            time.sleep(1.0)  # what the flood left (paced audio, closing sessions) is not the next one's cost
    return result


def flood_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    from bench.metrics import fmt

    cols = ["family", "seconds", "sent", "/health", "failed", "p50 ms", "p99 ms", "max ms", "target"]
    quiet = result["health_quiet"]
    rows = [["(quiet)", "-", "-", str(quiet["requests"]), str(quiet["failed"]), fmt(quiet["p50_ms"], 1),
             fmt(quiet["p99_ms"], 1), fmt(quiet["max_ms"], 1), "-"]]
    for f in result["families"]:
        if "skipped" in f:
            rows.append([f["family"], "skipped", "-", "-", "-", "-", "-", "-", "-"])
            continue
        h = f["health"]
        rows.append([f["family"], fmt(f["seconds"], 1), str(sum(f["sent"].values())), str(h["requests"]),
                     str(h["failed"]), fmt(h["p50_ms"], 1), fmt(h["p99_ms"], 1), fmt(h["max_ms"], 1),
                     {True: "within", False: "OVER", None: "-"}[f["within_target"]]])
    return cols, rows


def print_answers(result: dict[str, Any]) -> None:
    for f in result["families"]:
        if "skipped" in f:
            print(f"  {f['family']}: skipped, {f['skipped']}")
            continue
        for name in sorted(set(f["sent"]) | set(f["answers"])):
            got = f["answers"].get(name, {})
            answers = ", ".join(f"{k} x{v}" for k, v in sorted(got.items(), key=lambda kv: -kv[1])) or "nothing"
            print(f"  {name}: sent {f['sent'].get(name, 0)}, got {answers}")
