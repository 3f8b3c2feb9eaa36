"""``voxlane bench --key-terms``: what key terms do to a transcript, with the server's own file pipeline.

Every file is transcribed three times in this process (no server; the upload path: decode, VAD, the inference
loop, a file-mode session, the correction pass): without key terms, with the terms of its own reference text
(names the corpus holds, :data:`KEY_TERMS`), and with every file's terms at once, so that files whose text holds
none of them show what a list of unrelated terms does to them. Reported per run: WER pooled over the files with
terms and over those without, and the key-term hit rate (the reference's occurrences of a term, as whole words,
that the transcript writes the same way).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.metrics import fmt, normalize, wer_counts

KEY_TERMS: dict[str, list[str]] = {
    "single/librispeech_1221-135766_2utt.wav": ["Hester Prynne"],
    "single/librivox_sense_and_sensibility_ch01_5utt.wav": ["John Dashwood"],
    "single/ljspeech_LJ001-0001_0016.wav": ["Gutenberg", "Netherlands", "letterpress", "calligraphy"],
    "single/ljspeech_LJ001-0017_0032.wav": ["Gutenberg", "Schoeffer", "Maintz", "Strasburg", "Basle", "Lubeck",
                                            "Sweynheim", "Pannartz", "Subiaco", "ecclesiastical", "psalters"],
    "single/mfa_hard_cases_whisper_falsetto_fillers.wav": ["Montreal Forced Aligner"],
}
"""Each file's key terms, taken from its reference text: its names and rarer words."""

RUNS = ("none", "own", "all")


def hits(reference: str, hypothesis: str, terms: list[str]) -> tuple[int, int]:
    """(occurrences written as in the reference, occurrences in the reference) of the terms, as whole words."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    found = total = 0
    for term in terms:
        key = normalize(term)
        n = len(key)
        in_ref = sum(ref[i:i + n] == key for i in range(len(ref) - n + 1))
        in_hyp = sum(hyp[i:i + n] == key for i in range(len(hyp) - n + 1))
        found, total = found + min(in_ref, in_hyp), total + in_ref
    return found, total


async def _transcribe_all(settings: Any, audio_dir: Path, files: list[str],
                          terms_of: dict[str, list[str]]) -> dict[str, str]:
    from server import services as composition
    from server.jobs.file_jobs import transcribe_file

    texts: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="voxlane-keyterms-") as tmp:
        settings.data_dir = tmp
        settings.database_url = None
        services = await composition.build(settings)
        try:
            for f in files:
                row = await services.store.create_transcript(name=f, status="processing")
                result = await transcribe_file(services, row["id"], audio_dir / f, publish_status=False,
                                               key_terms=terms_of.get(f, []))
                if result.error:
                    raise SystemExit(f"{f}: {result.error}")
                texts[f] = " ".join(s["text"] for s in await services.store.get_segments(row["id"]))
        finally:
            await composition.close(services)
    return texts


def run_key_terms(audio_dir: Path, refs: dict[str, Any], files: list[str]) -> dict[str, Any]:
    from server.settings import Settings

    every = list(dict.fromkeys(t for f in files for t in KEY_TERMS.get(f, [])))
    result: dict[str, Any] = {"key_terms": {f: KEY_TERMS[f] for f in files if f in KEY_TERMS}, "runs": {}}
    for run in RUNS:
        terms_of = {f: ([] if run == "none" else KEY_TERMS.get(f, []) if run == "own" else every) for f in files}
        settings = Settings.from_sources({"status_interval": 0, "ping_interval": 0, "database_url": ""})
        t0 = time.perf_counter()
        texts = asyncio.run(_transcribe_all(settings, audio_dir, files, terms_of))
        per: dict[str, Any] = {}
        pooled = {"with": [0, 0], "without": [0, 0], "hits": [0, 0]}
        for f in files:
            ref = refs[f]["text"]
            e, w = wer_counts(ref, texts[f])
            h, n = hits(ref, texts[f], KEY_TERMS.get(f, []))
            group = pooled["with" if f in KEY_TERMS else "without"]
            group[0], group[1] = group[0] + e, group[1] + w
            pooled["hits"][0], pooled["hits"][1] = pooled["hits"][0] + h, pooled["hits"][1] + n
            per[f] = {"errors": e, "words": w, "wer": round(e / w, 4) if w else None, "term_hits": h,
                      "term_occurrences": n, "text": texts[f]}
        result["runs"][run] = {
            "wer_with_terms": _ratio(*pooled["with"]), "wer_without_terms": _ratio(*pooled["without"]),
            "errors_with_terms": pooled["with"], "errors_without_terms": pooled["without"],
            "hit_rate": _ratio(*pooled["hits"]), "hits": pooled["hits"],
            "seconds": round(time.perf_counter() - t0, 1), "per_file": per}
    return result


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def key_term_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    cols = ["key terms", "WER, files with terms", "WER, files without", "term hits"]
    names = {"none": "none", "own": "each file's own", "all": "all, every file"}
    rows = []
    for run, r in result["runs"].items():
        (e1, w1), (e2, w2), (h, n) = r["errors_with_terms"], r["errors_without_terms"], r["hits"]
        rows.append([names[run], f"{fmt(r['wer_with_terms'], 4)} ({e1}/{w1})",
                     f"{fmt(r['wer_without_terms'], 4)} ({e2}/{w2})", f"{h}/{n} ({fmt(r['hit_rate'], 3)})"])
    return cols, rows
