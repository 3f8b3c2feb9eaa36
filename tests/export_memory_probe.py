"""Peak memory of a project zip download, read in a process of its own (``python -m tests.export_memory_probe DIR``).

tracemalloc sees a whole process. Inside the test runner that process also holds what earlier tests left
running (their servers' threads, tasks, caches), which allocates at moments no test controls, so a peak read
there measured the machine's load as much as the export. Here the process holds only an API node (no live
audio, no jobs: no model is loaded) on a data directory of its own, its server and the one client reading the
zip. It prints one JSON object on stdout.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import sys
import tracemalloc
import zipfile
from typing import Any

import httpx
import uvicorn

from server.app import create_app
from server.settings import Settings
from tests.http_support import TLS
from tests.rest_support import reference

SMALL, BIG = 40, 160
"""Conversations in the two projects compared: four times the text."""
READS = 3
"""Each project is read this many times and its least peak kept: a peak only ever adds what else ran."""


async def big_project(store: Any, conversations: int, rng: random.Random) -> tuple[str, int]:
    """A project of ``conversations`` stored conversations of 20 segments x 200 real words (shuffled, so deflate
    cannot shrink them much); returns its id and the size of its text."""
    words = " ".join(reference(n) for n in ("single/ljspeech_LJ001-0001_0016.wav",
                                            "single/ljspeech_LJ001-0017_0032.wav")).split()
    project = await store.create_project(title=f"big {conversations}", language=None, portal={}, owner=None)
    text_total = 0
    for i in range(conversations):
        t = await store.create_transcript(name=f"conversation {i}", status="completed")
        await store.create_conversation(transcript_id=t["id"], project_id=project["id"], name=f"P{i}", email=None,
                                        tags=[], source=None)
        for j in range(20):
            text = " ".join(rng.choices(words, k=200))
            text_total += len(text)
            await store.save_segment(t["id"], {"id": f"{t['id']}-{j}", "text": text, "start": j * 20.0,
                                               "end": j * 20.0 + 19.0, "speaker": f"S{j % 3}", "words": []})
    return project["id"], text_total


async def streamed_peak(base: str, project_id: str) -> tuple[int, int]:
    """(peak traced memory while a client reads the project's zip, bytes received)."""
    received = 0
    tracemalloc.start()
    try:
        async with httpx.AsyncClient(verify=TLS, base_url=base, timeout=120) as client:
            async with client.stream("GET", f"/api/projects/{project_id}/transcripts") as r:
                assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.status_code
                async for chunk in r.aiter_bytes():
                    received += len(chunk)  # read and dropped, as a download to disk would
        return tracemalloc.get_traced_memory()[1], received
    finally:
        tracemalloc.stop()


async def probe(data_dir: str) -> dict[str, Any]:
    settings = Settings(data_dir=data_dir, auth_mode="public", live="off", jobs="off", status_interval=0,
                        ping_interval=0)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        rng = random.Random(5)
        store = app.state.services.store
        small, text_small = await big_project(store, SMALL, rng)
        big, text_big = await big_project(store, BIG, rng)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning"))
        serving = asyncio.create_task(server.serve())
        try:
            for _ in range(3000):  # a minute, however loaded the machine
                if server.started:
                    break
                await asyncio.sleep(0.02)
            base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
            await streamed_peak(base, small)  # warm up: imports, the first connection
            (peak_small, received_small), (peak_big, received_big) = [
                min([await streamed_peak(base, project) for _ in range(READS)]) for project in (small, big)]
            async with httpx.AsyncClient(verify=TLS, base_url=base, timeout=120) as client:
                whole = (await client.get(f"/api/projects/{big}/transcripts")).content
        finally:
            server.should_exit = True
            await serving
    with zipfile.ZipFile(io.BytesIO(whole)) as zf:
        archive = {"entries": len(zf.namelist()), "bad_entry": zf.testzip(),
                   "unpacked": sum(i.file_size for i in zf.infolist()),
                   "eighth_entry_head": zf.read(zf.namelist()[7]).decode()[:40]}
    return {"peak_small": peak_small, "received_small": received_small, "text_small": text_small,
            "peak_big": peak_big, "received_big": received_big, "text_big": text_big, "whole_big": len(whole),
            **archive}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(probe(sys.argv[1]))))
