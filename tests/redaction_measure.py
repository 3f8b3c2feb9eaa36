"""Precision and recall of PII redaction on spoken PII: ``python3 -m tests.redaction_measure``.

Each sentence of ``tests/data/spoken_pii.json`` is read by one of the dialogue's TTS voices (flite awb, flite slt,
espeak-ng en-us+m3, in turn), transcribed through the offline transcription path (``voxlane transcribe``'s: the
bundled tiny.en, VAD, a session) with redaction off, and the transcript's words are then redacted. An entity counts
as found when a placeholder of its type appears in its sentence (types are counted per sentence: two expected, one
found is one miss); a placeholder no entity of its type explains is a false positive. The same is scored on the
sentences' own text, the upper bound the recognizers reach without recognition errors.

Prints a table and the figures as JSON (also written to ``--output``), with the redactor's cost per final.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from media.audio import float_to_s16
from media.file_decode import decode_file
from server.features.correction.entities import ENTITY_TYPES
from server.features.correction.redaction import Redactor
from server.settings import Settings
from tests.dialogue import VOICES

DATA = Path(__file__).parent / "data" / "spoken_pii.json"


def render(text: str, voice: int, out: Path) -> None:
    """One sentence as 16 kHz mono WAV, voiced by ``VOICES[voice]``."""
    import wave

    import numpy as np

    raw = out.with_suffix(".tts.wav")
    subprocess.run([a.format(text=text, out=raw) for a in VOICES[voice]], check=True, capture_output=True)
    pcm = np.frombuffer(float_to_s16(decode_file(raw)), dtype=np.int16)
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.concatenate([np.zeros(8000, np.int16), pcm, np.zeros(8000, np.int16)]).tobytes())


async def transcribe(paths: list[Path]) -> list[list[list[dict[str, Any]]]]:
    """Each file's final segments' words, through the offline path (redaction off: the raw words are measured)."""
    from server import services as composition
    from server.jobs.file_jobs import transcribe_file

    settings = Settings.from_sources({}, {})
    settings.disable_redaction, settings.diarization = "on", "off"
    with tempfile.TemporaryDirectory(prefix="voxlane-pii-") as tmp:
        settings.data_dir, settings.database_url = tmp, None
        services = await composition.build(settings)
        try:
            out = []
            for path in paths:
                row = await services.store.create_transcript(name=path.name, status="processing")
                result = await transcribe_file(services, row["id"], path, publish_status=False, diarize=False)
                if result.error:
                    raise RuntimeError(f"{path}: {result.error}")
                out.append([s["words"] for s in await services.store.get_segments(row["id"])])
            return out
        finally:
            await composition.close(services)


def score(expected: list[list[str]], found: list[list[str]]) -> dict[str, dict[str, float]]:
    """Per type (and ``all``): tp, fp, fn, precision, recall."""
    table: dict[str, Counter] = {t: Counter() for t in (*ENTITY_TYPES, "all")}
    for want, got in zip(expected, found, strict=True):
        w, g = Counter(want), Counter(got)
        for t in ENTITY_TYPES:
            tp = min(w[t], g[t])
            for row in (table[t], table["all"]):
                row["tp"] += tp
                row["fp"] += g[t] - tp
                row["fn"] += w[t] - tp
    out = {}
    for t, c in table.items():
        p = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else None
        r = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else None
        out[t] = {"tp": c["tp"], "fp": c["fp"], "fn": c["fn"], "precision": p, "recall": r}
    return out


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="bench-results/redaction.json")
    args = ap.parse_args(argv)
    sentences = json.loads(DATA.read_text())["sentences"]
    redactor = Redactor()
    t0 = time.perf_counter()
    redactor.load()
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, s in enumerate(sentences):
            paths.append(Path(tmp) / f"{i:02d}.wav")
            render(s["text"], i % len(VOICES), paths[-1])
        heard = asyncio.run(transcribe(paths))
    expected = [s["expect"] for s in sentences]
    on_text = [[sp.kind for sp in redactor.find(s["text"].split())] for s in sentences]
    costs, on_asr, rows = [], [], []
    for s, segments in zip(sentences, heard, strict=True):
        kinds, redacted = [], []
        for words in segments:
            t = time.perf_counter()
            spans = redactor.find([w["text"] for w in words])
            costs.append((time.perf_counter() - t) * 1000)
            kinds += [sp.kind for sp in spans]
            redacted.append(" ".join(w["text"] for w in redactor.redact_words(words)))
        on_asr.append(kinds)
        rows.append({"text": s["text"], "expect": s["expect"], "heard": " ".join(w["text"] for seg in segments
                                                                                for w in seg),
                     "redacted": " ".join(redacted), "found": kinds})
    result = {"sentences": len(sentences), "engine_load_s": round(load_s, 2), "finds_names": redactor.finds_names,
              "asr": score(expected, on_asr), "text": score(expected, on_text),
              "ms_per_final": {"n": len(costs), "mean": round(statistics.mean(costs), 2),
                               "p50": round(statistics.median(costs), 2),
                               "max": round(max(costs), 2)}, "rows": rows}
    print(f"{'type':<12} {'asr P':>6} {'asr R':>6} {'tp/fp/fn':>10}   {'text P':>6} {'text R':>6} {'tp/fp/fn':>10}")
    for t in (*ENTITY_TYPES, "all"):
        a, x = result["asr"][t], result["text"][t]
        print(f"{t:<12} {_fmt(a['precision']):>6} {_fmt(a['recall']):>6} {a['tp']:>4}/{a['fp']}/{a['fn']:<3}"
              f"   {_fmt(x['precision']):>6} {_fmt(x['recall']):>6} {x['tp']:>4}/{x['fp']}/{x['fn']:<3}")
    print(f"redaction per final: mean {result['ms_per_final']['mean']} ms, p50 {result['ms_per_final']['p50']} ms,"
          f" max {result['ms_per_final']['max']} ms over {len(costs)} finals; engine load {load_s:.1f} s")
    for r in rows:
        if Counter(r["expect"]) != Counter(r["found"]):
            print(f"  miss/extra: heard {r['heard']!r} -> {r['redacted']!r} (expected {r['expect']})")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
