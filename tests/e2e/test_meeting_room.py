"""The built-in meeting room in real browsers: three headless Chromium participants, each with a fake microphone
playing a different voice of a rendered dialogue (tests/dialogue.py), join one room, speak and leave; the host
ends the meeting. Each participant's captions carry their name live, and the meeting transcript and its
downloads attribute every word to the right participant (each speaker has their own stream: no diarization).

The real bundled model transcribes; the dialogue is six short lines to keep the suite's budget.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from pathlib import Path

import httpx
import pytest
from conftest import stop_server
from test_web_client_e2e import chromium
from webrtc_support import start_loopback_server

from tests import dialogue
from tests.http_support import TLS

LINES = [(0, "Good morning, let us start with the budget."), (1, "The travel costs are far too high."),
         (2, "Our lawyers have not read the contract."), (0, "Please book the flights earlier."),
         (1, "I will send the list today."), (2, "The summer picnic sounds lovely.")]
NAMES = ("Alice", "Bob", "Carol")  # voice k is NAMES[k]; Alice hosts
CAPTIONS = ("[...document.querySelectorAll('#captions li')].map(li => ({who: li.querySelector('.who').textContent,"
            " final: li.dataset.final === 'true', text: li.querySelector('.text').textContent}))")

def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def misattributed(attributed: list[tuple[str, str]]) -> tuple[int, int, dict[str, int]]:
    """(misattributed, unknown, recognized per name) over (name, word) pairs: a word is misattributed when its
    speaker's lines lack it and another speaker's lines have it; unknown when no line has it (a misreading)."""
    vocab = {NAMES[k]: set() for k in range(3)}
    for who, text in LINES:
        vocab[NAMES[who]].update(words(text))
    wrong = unknown = 0
    hits = dict.fromkeys(NAMES, 0)
    for name, word in attributed:
        if word in vocab[name]:
            hits[name] += 1
        elif any(word in v for n, v in vocab.items() if n != name):
            wrong += 1
        else:
            unknown += 1
    return wrong, unknown, hits


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = start_loopback_server(tmp_path_factory.mktemp("voxlane-room"), VOXLANE_STATUS_INTERVAL="0")
    yield srv
    stop_server(srv)


async def test_three_browsers_meet_and_every_word_keeps_its_speaker(server, tmp_path: Path) -> None:
    tracks, turns = dialogue.render_tracks(tmp_path, LINES)
    length = max(t.end for t in turns) + 1.0
    async with httpx.AsyncClient(verify=TLS, base_url=server.url, timeout=30) as http:
        room = (await http.post("/v1/rooms/", json={"name": "Budget review"})).json()
        r = await http.post("/v1/meetings/", json={"room_id": room["id"]})
        assert r.status_code == 201, r.text
        meeting = r.json()
        urls = (meeting["host_room_url"], meeting["room_url"], meeting["room_url"])

        async with contextlib.AsyncExitStack() as stack:
            pages = await asyncio.gather(*(stack.enter_async_context(chromium(wav)) for wav in tracks))
            for page, url in zip(pages, urls, strict=True):
                await page.call("Page.navigate", url=url)
            for page, name in zip(pages, NAMES, strict=True):
                await page.until("document.readyState === 'complete' && !!window.room", 20, "the room page")
                await page.js(f"document.getElementById('name').value = {json.dumps(name)};"
                              " document.querySelector('[data-testid=join]').click()")
            await asyncio.gather(*(p.until("room.state === 'live' && room.micOpenedAt !== undefined", 30,
                                           "the microphone to publish") for p in pages))
            ids = {await p.js("room.participantId"): name for p, name in zip(pages, NAMES, strict=True)}
            assert await pages[0].js("room.role") == "host" and await pages[1].js("room.role") == "participant"
            # live: every page shows every speaker's final captions under their name, while the meeting goes on
            everyone = " && ".join(f"c.some(x => x.final && x.who === {json.dumps(n)})" for n in NAMES)
            await asyncio.sleep(length)
            for page in pages:
                await page.until(f"(c => {everyone})({CAPTIONS})", 30, "everyone's captions")
            live = [await p.js(CAPTIONS) for p in pages]
            shot = await pages[0].call("Page.captureScreenshot", format="png")
            screenshot = tmp_path / "meeting_room.png"
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            print(f"\nscreenshot of the meeting room: {screenshot}")
            for page in pages[1:]:  # the participants leave, then the host ends the meeting
                await page.js("document.querySelector('[data-testid=leave]').click()")
                await page.until("room.state === 'left'", 30, "leaving")
            await pages[0].js("document.querySelector('[data-testid=end]').click()")
            await pages[0].until("room.state === 'ended'", 30, "the end of the meeting")

        for caps in live:
            wrong, _, hits = misattributed([(c["who"], w) for c in caps if c["final"] for w in words(c["text"])])
            assert wrong == 0 and all(hits.values()), caps
        assert (await http.get(f"/v1/meetings/{meeting['id']}")).json()["status"] == "ended"
        transcript = (await http.get(f"/v1/transcripts/{meeting['id']}")).json()
        assert transcript["status"] == "completed"
        segments = transcript["segments"]
        assert {s["participant_id"] for s in segments} == set(ids)
        stored = [(ids[s["participant_id"]], w) for s in segments for w in words(s["text"])]
        assert all(s["speaker"] == ids[s["participant_id"]] for s in segments), segments
        download = (await http.get(f"/v1/transcripts/{meeting['id']}/download/transcript")).json()
        downloaded = [(turn["participant"]["name"], w) for turn in download for x in turn["words"]
                      for w in words(x["text"])]
        people = (await http.get(f"/v1/transcripts/{meeting['id']}/download/participants")).json()
        timeline = (await http.get(f"/v1/transcripts/{meeting['id']}/download/speaker_timeline")).json()
    assert sorted(p["name"] for p in people) == sorted(NAMES)
    assert {t["participant"]["name"] for t in timeline} == set(NAMES)
    script = sum(len(words(text)) for _, text in LINES)
    for what, attributed in (("transcript", stored), ("transcript download", downloaded)):
        wrong, unknown, hits = misattributed(attributed)
        print(f"{what}: {wrong} misattributed words, {unknown} misread, recognized {hits} of {script} script words")
        assert wrong == 0, attributed
        for k, name in enumerate(NAMES):  # each speaker was heard: most of their words came through
            theirs = sum(len(words(text)) for who, text in LINES if who == k)
            assert hits[name] >= theirs * 0.6, (name, hits, attributed)
