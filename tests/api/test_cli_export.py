"""``voxlane transcribe`` (offline, the server's pipeline, a progress bar) and ``voxlane export`` (a server's
store), their output read back with srt, webvtt-py and json."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import srt
import webvtt

from bench.metrics import normalize, wer_counts
from tests.rest_support import AUDIO, Api, as_cue_texts, reference

pytest_plugins = ("tests.rest_fixtures",)

REPO_ROOT = Path(__file__).resolve().parents[2]
JFK = "single/jfk_inaugural_1961_excerpt.wav"
WIZARD = "single/librispeech_61-70968-0000.wav"


def wer(ref: str, hyp: str) -> float:
    errors, n = wer_counts(ref, hyp)
    return errors / n


async def voxlane(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXLANE_")}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "server.cli", *args, cwd=REPO_ROOT, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_transcribe_files_offline(tmp_path: Path):
    out_dir = tmp_path / "out"
    rc, _, err = await voxlane("transcribe", str(AUDIO / JFK), str(AUDIO / WIZARD), "--format", "srt",
                               "--output", str(out_dir), "--cpu-threads", "2")
    assert rc == 0, err
    assert "transcribing" in err and "100%" in err, "a progress bar on stderr"
    jfk = list(srt.parse((out_dir / "jfk_inaugural_1961_excerpt.srt").read_text()))
    assert jfk and wer(reference(JFK), " ".join(s.content for s in jfk)) < 0.25
    assert jfk[-1].end.total_seconds() <= 11.1
    wizard = list(srt.parse((out_dir / "librispeech_61-70968-0000.srt").read_text()))
    assert "wizard" in normalize(" ".join(s.content for s in wizard))

    rc, out, err = await voxlane("transcribe", str(AUDIO / WIZARD), "--format", "vtt", "--quiet")
    assert rc == 0, err
    assert "%" not in err
    captions = webvtt.from_string(out).captions
    assert captions and "wizard" in normalize(" ".join(c.text for c in captions))

    rc, _, err = await voxlane("transcribe", str(tmp_path / "missing.wav"))
    assert rc == 2 and "no such file" in err


async def test_export_from_a_server_store(public_api: Api):
    api = public_api
    r = await api.client.post("/v1/transcripts/", json={"name": "for the cli"})
    tid = r.json()["id"]
    await api.client.post(f"/v1/transcripts_audio/{tid}/upload",
                          files={"file": ("a.wav", (AUDIO / JFK).read_bytes(), "audio/wav")})
    row = await api.wait_transcript(tid)
    data_dir = str(api.data_dir)
    rc, out, err = await voxlane("export", tid, "--format", "json", "--data-dir", data_dir)
    assert rc == 0, err
    body = json.loads(out)
    assert body["id"] == tid and normalize(body["text"]) == normalize(" ".join(s["text"] for s in row["segments"]))
    assert body["segments"][0]["words"]
    rc, out, _ = await voxlane("export", tid, "--format", "srt", "--data-dir", data_dir)
    assert [s.content for s in srt.parse(out)] == as_cue_texts(row["segments"])
    target = api.data_dir.parent / "exported.md"
    rc, out, _ = await voxlane("export", tid, "--format", "md", "--data-dir", data_dir, "--output", str(target))
    assert rc == 0 and target.read_text().startswith("# for the cli")
    rc, _, err = await voxlane("export", "nope", "--data-dir", data_dir)
    assert rc == 1 and "no transcript" in err
