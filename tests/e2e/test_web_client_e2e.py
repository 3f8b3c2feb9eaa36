"""The web client in headless Chromium (fake microphone playing real speech), against a real server.

Chromium is driven over the DevTools protocol with a few lines of raw CDP (``websockets``); no
browser-automation package is needed. See ../shared/guides/webrtc-testing.md for the flags.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from conftest import REPO, stop_server
from webrtc_support import recording, start_loopback_server, start_offset

from bench.metrics import wer_counts
from media import float_to_s16
from server.cli.live_client import StreamRecord, create_transcript, load_pcm16k, stop_and_settle, ws_url
from tests.http_support import TLS
from tests.process_support import stop_process

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SPEECH = "single/librispeech_2412-153948-0000.wav"  # 11.7 s, 16 kHz mono s16
SCREENSHOT = REPO / "test-artifacts" / "web_client.png"
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns", "--window-size=1280,900", "--remote-debugging-port=0",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    # one live stream at most: the busy test fills it
    srv = start_loopback_server(tmp_path_factory.mktemp("voxlane-web"), VOXLANE_MAX_LIVE_STREAMS="1")
    yield srv
    stop_server(srv)


class Cdp:
    """Just enough of the Chrome DevTools protocol: calls, and the console for failure messages."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.session: str | None = None
        self.console: list[str] = []
        self._next = 0
        self._pending: dict[int, asyncio.Future] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg:
                fut = self._pending.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            elif msg.get("method") == "Runtime.consoleAPICalled":
                p = msg["params"]
                self.console.append(p["type"] + ": " + " ".join(str(a.get("value", a.get("description", "")))
                                                               for a in p["args"]))
            elif msg.get("method") == "Runtime.exceptionThrown":
                self.console.append("exception: " + json.dumps(msg["params"]["exceptionDetails"])[:500])

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        fut = asyncio.get_running_loop().create_future()
        self._pending[self._next] = fut
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        await self.ws.send(json.dumps(msg))
        reply = await asyncio.wait_for(fut, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    async def js(self, expression: str) -> Any:
        res = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression!r}: {res['exceptionDetails']}")
        return res["result"].get("value")

    async def until(self, expression: str, within: float, what: str) -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; page state {await self.js(STATE)}; "
                             f"console: {self.console[-20:]}")

    async def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element (user activation, like a person's)."""
        box = await self.js(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            await self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
        await self.ws.close()


MIC_CLOCK = """(() => {
  // test instrumentation: when the (fake) microphone opened, i.e. when the file started playing
  const md = navigator.mediaDevices, open = md.getUserMedia.bind(md);
  md.getUserMedia = async (c) => { const s = await open(c); window.__micOpenedAt = performance.now(); return s; };
})()"""

CAPTURED = ("voxlane.pc.getStats().then(r => { let s = 0; r.forEach(x => { if (x.type === 'media-source' && "
            "x.kind === 'audio') s = x.totalSamplesDuration || 0; }); return s; })")
"""Seconds of audio the page's microphone track has captured (its WebRTC source statistics)."""

STATE = ("typeof voxlane === 'undefined' ? JSON.stringify({url: location.href, room: window.room && "
         "{state: room.state, role: room.role, id: room.participantId}}) : "
         "JSON.stringify({state: voxlane.state, mode: voxlane.mode, id: voxlane.transcriptId, "
         "status: voxlane.transcript && voxlane.transcript.status, "
         "banner: document.querySelector('[data-testid=error-banner]').hidden ? null : "
         "document.querySelector('[data-testid=error-banner]').textContent.trim()})")
"""The page's state when a wait times out: the transcriber page's, or the meeting room's (which has no
``voxlane``)."""


def launch(wav: Path, profile: Path) -> subprocess.Popen:
    """Chromium with a fresh profile and a fake microphone that plays ``wav`` once."""
    with open(profile / "chromium.log", "wb") as log:
        return subprocess.Popen([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                 f"--use-file-for-fake-audio-capture={wav}%noloop", "about:blank"],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "LANG": "en_US.UTF-8"})


@contextlib.asynccontextmanager
async def chromium(wav: Path) -> AsyncIterator[Cdp]:
    profile = Path(tempfile.mkdtemp(prefix="voxlane-chromium-"))
    proc = launch(wav, profile)
    cdp: Cdp | None = None
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and len(port_file.read_text().split()) >= 2:
                break
            assert proc.poll() is None, (profile / "chromium.log").read_text()
            await asyncio.sleep(0.1)
        port, path = port_file.read_text().split()[:2]
        cdp = Cdp(await websockets.connect(f"ws://127.0.0.1:{port}{path}", max_size=None))
        target = await cdp.call("Target.createTarget", url="about:blank")
        attached = await cdp.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        cdp.session = attached["sessionId"]
        await cdp.call("Runtime.enable")
        await cdp.call("Page.enable")
        await cdp.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1,
                       mobile=False)
        yield cdp
    finally:
        if cdp is not None:
            await cdp.close()
        stop_process(proc)
        shutil.rmtree(profile, ignore_errors=True)


async def test_web_client_records_and_transcribes(server, audio_dir, references):
    wav = audio_dir / SPEECH
    with wave.open(str(wav)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        duration = w.getnframes() / w.getframerate()

    async with chromium(wav) as page:
        await page.call("Page.navigate", url=server.url + "/")
        await page.until("document.readyState === 'complete' && !!window.voxlane", 20, "the page")
        await page.js(MIC_CLOCK)
        await page.click("[data-testid=start]")
        await page.until("voxlane.state === 'live'", 20, "the microphone to go live")
        state = json.loads(await page.js(STATE))
        assert state["mode"] == "webrtc", state  # not the WebSocket fallback
        # the fake microphone plays the file from getUserMedia on, then silence: stop once the page has captured
        # the file's length (on a busy machine the capture runs behind the wall clock: a stop on the clock cut the
        # file's last seconds off before the page had them)
        await page.until(f"{CAPTURED}.then(s => s >= {duration:.3f})", duration + 60, "the page to capture the file")
        await page.click("[data-testid=stop]")
        stopped_at = await page.js("(performance.now() - window.__micOpenedAt) / 1000")
        await page.until("voxlane.state === 'idle' && voxlane.transcript && voxlane.transcript.status === 'completed'",
                         60, "the transcript to complete")
        await asyncio.sleep(0.3)  # the reload after 'completed' merges stored segments
        page_segments = await page.js(
            "[...document.querySelectorAll('[data-testid=transcript] [data-segment-id]')]"
            ".map(e => e.querySelector('.seg-text').textContent)")
        page_text = await page.js("document.querySelector('[data-testid=transcript]').innerText")
        tid = json.loads(await page.js(STATE))["id"]
        banner = json.loads(await page.js(STATE))["banner"]
        shot = await page.call("Page.captureScreenshot", format="png")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
        console = page.console

    assert banner is None, f"the page shows a message: {banner}"
    text = " ".join(page_segments)
    errors, words = wer_counts(references[SPEECH]["text"], text)
    print(f"\nbrowser WER {errors}/{words} = {errors / words:.3f}: {text}")
    assert errors / words <= 0.25, (text, page_text, console[-20:])

    # the same transcript is stored
    async with httpx.AsyncClient(verify=TLS, timeout=10) as http:
        row = (await http.get(f"{server.url}/v1/transcripts/{tid}")).json()
    assert row["status"] == "completed"
    assert [s["text"] for s in row["segments"]] == page_segments

    # all of the file arrived, from its first sample
    audio = load_pcm16k(wav)
    rec = recording(server, tid)
    offset, corr = start_offset(rec, audio)
    got = len(rec) / 16000
    print(f"browser sent {got:.3f} s for a {duration:.3f} s file (stop clicked {stopped_at:.3f} s after the"
          f" microphone opened); the file's first second at {offset * 1000:+.1f} ms (r={corr:.3f})")
    assert offset >= -0.05, "the start of the file was lost"  # Chromium: 3-13 ms of leading capture, measured
    assert corr >= 0.8
    assert abs(got - duration) <= 0.3


async def occupy(base: str, audio: np.ndarray, admitted: asyncio.Event, release: asyncio.Event) -> None:
    """Holds a server's live slot for as long as a test needs it: one stream sending ``audio`` over and over in
    real time until ``release``, then stopped. ``admitted``: the server said the stream started (a refusal is an
    ``error`` and a close instead). A stream of a fixed length raced the browser's start on a busy machine."""
    tid = await create_transcript(base, "occupant")
    async with websockets.connect(ws_url(base, tid), max_size=None) as ws:
        await ws.send(json.dumps({"action": "start",
                                  "params": {"format": "pcm_s16le", "sample_rate": 16000, "channels": 1}}))

        rec, done = StreamRecord(tid), asyncio.Event()

        async def read() -> None:
            async for raw in ws:
                message = json.loads(raw)
                if message["type"] == "status":
                    admitted.set()
                    if message["data"]["status"] == "completed" and rec.stopped is not None:
                        done.set()

        reader = asyncio.create_task(read())
        step = 1600  # 100 ms frames
        i = 0
        while not release.is_set():
            await ws.send(float_to_s16(audio[i:i + step]))
            i = (i + step) % len(audio)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(release.wait(), 0.1)
        await stop_and_settle(ws, rec, done, 30)
        reader.cancel()


async def test_web_client_waits_for_a_busy_server_without_losing_the_start_of_the_speech(server, audio_dir):
    """The server's one live slot is taken: the page's offer is refused with a retry hint, the page says it is
    busy and tries again, and the microphone opens only once the stream is admitted, so the recording starts
    at the file's first sample."""
    wav = audio_dir / SPEECH
    audio = load_pcm16k(wav)
    admitted, release = asyncio.Event(), asyncio.Event()
    occupant = asyncio.create_task(occupy(server.url, audio[: 16000 * 6], admitted, release))
    await asyncio.wait_for(admitted.wait(), 60)
    try:
        async with chromium(wav) as page:
            await page.call("Page.navigate", url=server.url + "/")
            await page.until("document.readyState === 'complete' && !!window.voxlane", 20, "the page")
            await page.js(MIC_CLOCK)
            await page.click("[data-testid=start]")
            banner = await page.until(
                "(b => !b.hidden && b.textContent.includes('busy') && b.textContent.trim())"
                "(document.querySelector('[data-testid=error-banner]'))", 20, "the busy message")
            assert "Trying again" in banner
            assert await page.js("window.__micOpenedAt === undefined"), "the microphone opened before admission"
            release.set()
            await occupant
            await page.until("voxlane.state === 'live'", 30, "admission after the retry")
            state = json.loads(await page.js(STATE))
            assert state["mode"] == "webrtc" and state["banner"] is None, state
            await asyncio.sleep(3.0)
            await page.click("[data-testid=stop]")
            await page.until("voxlane.state === 'idle' && voxlane.transcript"
                             " && voxlane.transcript.status === 'completed'", 60, "the transcript to complete")
            tid = state["id"]
    finally:
        release.set()
        await asyncio.gather(occupant, return_exceptions=True)
    rec = recording(server, tid)
    offset, corr = start_offset(rec, audio)
    assert offset >= -0.05 and corr >= 0.8, (offset, corr)
