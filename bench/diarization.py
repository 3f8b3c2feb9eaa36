"""``voxlane bench --der``: diarization error rate of live streams against reference RTTMs.

Every mono multi-speaker file with an RTTM is streamed at real-time pace to a
running server. Three hypotheses are scored with ``pyannote.metrics`` (collar
0.25 s, overlapped speech excluded):

- *first*: each turn's label as first sent (no correction applied);
- *live*: the turns with every correction received while the stream was live;
- *offline*: the turns the server stored after the end-of-stream re-clustering;
- *segments*: the stored transcript's segments under their speakers, as a REST reader or an export gets them
  (their labels follow their words, so this one also depends on what the model wrote and where it stamped it).

Beside DER it times how soon a caption names the voice speaking: for each reference turn of a voice already heard
before, the seconds from the turn's first audio being sent to the first transcription message showing the
turn's words under that voice's label (mapped as DER maps it).
"""

from __future__ import annotations

import asyncio
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from server.cli.live_client import StreamRecord, load_pcm16k, stream_audio

GRID = 0.01  # seconds per timeline cell


def rttm_turns(path: Path) -> list[tuple[float, float, str]]:
    """The (start, end, speaker) turns of an RTTM file, in time order."""
    out = []
    for line in path.read_text().splitlines():
        p = line.split()
        if len(p) >= 8 and p[0] == "SPEAKER":
            out.append((float(p[3]), float(p[3]) + float(p[4]), p[7]))
    return sorted(out)


def reference(path: Path):
    """An RTTM file as the annotation DER is scored against."""
    from pyannote.core import Annotation, Segment

    ann = Annotation(uri=path.stem)
    for start, end, who in rttm_turns(path):
        ann[Segment(start, end)] = who
    return ann


def timeline(turns: list[tuple[float, float, str]], duration: float, tail: list[tuple[float, float, str]] = ()):
    """Later turns overwrite earlier ones over their range (that is what a correction means); ``tail`` turns only
    fill time none of ``turns`` covers."""
    from pyannote.core import Annotation, Segment

    cells = np.full(int(duration / GRID) + 2, "", dtype=object)
    for start, end, who in turns:
        cells[int(round(start / GRID)):int(round(end / GRID))] = who
    for start, end, who in tail:
        span = cells[int(round(start / GRID)):int(round(end / GRID))]
        span[span == ""] = who
    ann = Annotation()
    i = 0
    while i < len(cells):
        if cells[i]:
            j = i
            while j + 1 < len(cells) and cells[j + 1] == cells[i]:
                j += 1
            ann[Segment(i * GRID, (j + 1) * GRID)] = cells[i]
            i = j + 1
        else:
            i += 1
    return ann


def message_turns(rec: StreamRecord, corrections: bool, before: float | None = None,
                  after: float | None = None) -> list[tuple]:
    """The turn messages (with corrections or without), those received before ``before`` or after ``after``."""
    out = []
    for r in rec.of_type("diarization"):
        d = r.data
        if d.get("segment_ids"):
            continue  # segment relabels: the turn messages carry the timeline
        if (d.get("correction") and not corrections) or (before is not None and r.t > before) \
                or (after is not None and r.t <= after):
            continue
        out.append((d["start_time"], d["end_time"], d["speaker_id"]))
    return out


def live_timeline(rec: StreamRecord):
    """The turns as told while the stream ran, corrections included, and the end-of-stream pass's turns only
    over time not told by then (the stream's last turn cannot be told before it ends). Whether the pass sends a
    turn as a correction is bookkeeping, not news: a turn first told after the stop is flagged a correction
    when the turn before it was told longer, so keeping the pass's turns by that flag scored the seven voices
    at 8.7 or 11.3 % live from run to run, on the same labels."""
    return timeline(message_turns(rec, corrections=True, before=rec.stopped), rec.audio_seconds,
                    tail=message_turns(rec, corrections=True, after=rec.stopped))


def _metric():
    """DER as every figure here scores it (collar 0.25 s, overlapped speech excluded)."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    return DiarizationErrorRate(collar=0.25, skip_overlap=True)


def voice_mapping(ref, hyp) -> dict[Any, str]:
    """Each hypothesis label mapped onto the reference voice DER matches it with."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(_metric().optimal_mapping(ref, hyp))


def der(ref, hyp) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(_metric()(ref, hyp))


def timed_turns(ref, min_turn_s: float = 1.0) -> list[tuple[Any, str]]:
    """The reference turns whose voice waits are timed, with their voices: a voice's first turn is left out (the
    diarizer needs a few seconds of a voice before it names it), and so are turns under ``min_turn_s`` (a
    backchannel inside another's turn is shown in that turn's segment)."""
    heard: set[str] = set()
    out = []
    for turn, _, who in sorted(ref.itertracks(yield_label=True), key=lambda t: t[0].start):
        if who in heard and turn.duration >= min_turn_s:
            out.append((turn, who))
        heard.add(who)
    return out


def speaker_shown_waits(rec: StreamRecord, ref, live, min_turn_s: float = 1.0,
                        each: list | None = None) -> tuple[list[float], int]:
    """The waits, and how many of the :func:`timed_turns` never got a message under their label. ``each`` gets
    every timed turn's ``[start, end, voice, wait or None, wait for its first words under any voice]``, to see
    which turns wait and whether for the words or for the voice."""
    to_ref = voice_mapping(ref, live)
    names = {r.data["speaker_id"]: r.data["speaker"] for r in rec.of_type("diarization")}
    label = {who: names.get(hyp) for hyp, who in to_ref.items()}
    waits, missed = [], 0
    for turn, who in timed_turns(ref, min_turn_s):
        of_turn = [r for r in rec.transcriptions
                   if r.data["words"] and turn.start - 0.2 <= r.data["words"][-1]["start"] <= turn.end]
        shown = next((r for r in of_turn if r.data["speaker"] == label.get(who)), None)
        wait = None if shown is None else shown.t - rec.sent_at(turn.start)
        words = None if not of_turn else round(of_turn[0].t - rec.sent_at(turn.start), 2)
        if wait is None:
            missed += 1
        else:
            waits.append(wait)
        if each is not None:
            each.append([round(turn.start, 2), round(turn.end, 2), who, None if wait is None else round(wait, 2),
                         words])
    return waits, missed


def der_files(audio_dir: Path, only: list[str] | None = None) -> list[str]:
    """The mono multi-speaker files that have an RTTM, or those of them in ``only``."""
    refs = json.loads((audio_dir / "references.json").read_text())
    return sorted(f for f, r in refs.items() if f.startswith("multi/") and int(r.get("channels") or 1) == 1
                  and (audio_dir / "rttm" / f"{Path(f).stem}.rttm").exists() and (not only or f in only))


async def run_der(url: str, audio_dir: Path, token: str | None, concurrency: int,
                  only: list[str] | None = None) -> dict[str, Any]:
    """Every mono multi-speaker file with an RTTM, or those of them in ``only``."""
    files = der_files(audio_dir, only)
    queue = list(files)
    rows: dict[str, dict[str, Any]] = {}

    async def one(f: str) -> None:
        audio = load_pcm16k(audio_dir / f)
        rec = await stream_audio(url, audio, name=f"der {Path(f).stem}", token=token, settle_s=180,
                                 start_params={"diarization": True})
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            stored = (await client.get(f"/v1/transcripts/{rec.transcript_id}/speakers")).json()
            segments = (await client.get(f"/v1/transcripts/{rec.transcript_id}")).json().get("segments", [])
        ref = reference(audio_dir / "rttm" / f"{Path(f).stem}.rttm")
        dur = rec.audio_seconds
        first = timeline(message_turns(rec, corrections=False), dur)
        live = live_timeline(rec)
        offline = timeline([(t["start"], t["end"], t["speaker_id"]) for t in stored.get("turns", [])], dur)
        shown_turns: list = []
        labelled = timeline([(g["start"], g["end"], g["speaker"]) for g in segments if g.get("speaker")], dur)
        rows[f] = {"file": f, "ref_speakers": len(ref.labels()),
                   "der_first": round(der(ref, first), 4), "der_live": round(der(ref, live), 4),
                   "der_offline": round(der(ref, offline), 4), "der_segments": round(der(ref, labelled), 4),
                   "speakers_live": len(live.labels()), "speakers_offline": len(offline.labels()),
                   "corrections": sum(1 for r in rec.of_type("diarization") if r.data.get("correction")),
                   **_shown_summary(*speaker_shown_waits(rec, ref, live, each=shown_turns)), "shown_turns": shown_turns,
                   "transcript_id": rec.transcript_id,
                   "turns": [[t["start"], t["end"], t["speaker_id"]] for t in stored.get("turns", [])],
                   "segments": [[g["start"], g["end"], g.get("speaker"), g.get("text", ""),
                                 [[w["start"], w["end"]] for w in g.get("words") or []]] for g in segments]}
        print(f"  {Path(f).stem}: DER live {rows[f]['der_live']:.3f} offline {rows[f]['der_offline']:.3f}",
              file=sys.stderr)

    async def slot() -> None:
        while queue:
            await one(queue.pop(0))

    await asyncio.gather(*(slot() for _ in range(max(1, concurrency))))
    ordered = [rows[f] for f in files]
    return {"files": ordered, "ami_average": ami_average(ordered)}


def ami_average(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """The mean DER of the AMI files among ``rows``; None where none was streamed (a NaN is no JSON value, and
    a folder of other recordings has no AMI file)."""
    ami = [r for r in rows if "ami_" in r["file"]]
    return {k: round(float(np.mean([r[k] for r in ami])), 4) if ami else None
            for k in ("der_first", "der_live", "der_offline", "der_segments")}


def wait_percentiles(waits: list[float]) -> tuple[float | None, float | None]:
    """p50 and p95 of per-turn waits, to the hundredth; None where no turn was timed."""
    if not waits:
        return None, None
    p50, p95 = (round(float(v), 2) for v in np.percentile(waits, [50, 95]))
    return p50, p95


def wait_cell(p50: float | None, p95: float | None, timed: int, missed: int) -> str:
    """A table cell for per-turn waits: ``p50/p95 (turns timed, turns never)``."""
    return f"- ({timed}, {missed})" if p50 is None or p95 is None else f"{p50:.2f}/{p95:.2f} ({timed}, {missed})"


def _shown_summary(waits: list[float], missed: int) -> dict[str, Any]:
    p50, p95 = wait_percentiles(waits)
    return {"speaker_shown_p50_s": p50, "speaker_shown_p95_s": p95, "turns_timed": len(waits),
            "turns_not_shown": missed}


def der_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The DER table: one row per file, then the AMI average."""
    cols = ["file", "speakers ref", "live", "offline", "DER first", "DER live", "DER offline", "DER segments",
            "corrections", "voice shown p50/p95 s (turns, not shown)"]

    def shown(r: dict[str, Any]) -> str:
        return wait_cell(r["speaker_shown_p50_s"], r["speaker_shown_p95_s"], r["turns_timed"], r["turns_not_shown"])

    rows = [[Path(r["file"]).stem, str(r["ref_speakers"]), str(r["speakers_live"]), str(r["speakers_offline"]),
             f"{r['der_first']:.3f}", f"{r['der_live']:.3f}", f"{r['der_offline']:.3f}", f"{r['der_segments']:.3f}",
             str(r["corrections"]), shown(r)] for r in result["files"]]
    avg = result["ami_average"]
    if avg["der_live"] is not None:
        rows.append(["AMI average", "", "", "", f"{avg['der_first']:.3f}", f"{avg['der_live']:.3f}",
                     f"{avg['der_offline']:.3f}", f"{avg['der_segments']:.3f}", "", ""])
    return cols, rows
