"""``voxlane bench --der --replay``: speaker labels on the audio clock, with no server and no decoder.

Live labels are a function of the audio (:meth:`SpeakerDiarizer.add_embeddings`), so they can be replayed
exactly: each file is fed to a diarizer in 20 ms frames with the VAD's probabilities, as a live session feeds
it, and every window is embedded and labelled the moment it is complete (the soonest a server can; a live one
embeds a second of audio at a time, sooner when a partial asks). What is left is the floor under the live
figures, set by the encoder and the clustering alone:

- the DER of the labels after the end-of-stream pass (what a live server stores, whatever its load);
- for each timed turn (:func:`timed_turns`), the audio seconds from its start until the labels first give its
  voice at the latest labelled window inside it. A caption is named after the voice at its last word, so no
  caption can name the turn's voice sooner, however fast the decoder.

It runs in seconds and the same on every machine, so it shows which turns wait on the labels and which wait on
the words in ``voxlane bench --der``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asr.diarization import DiarizationConfig, SpeakerDiarizer
from asr.vad import SileroModel, VadStream
from bench.diarization import (
    der,
    der_files,
    reference,
    timed_turns,
    timeline,
    voice_mapping,
    wait_cell,
    wait_percentiles,
)
from media.audio import SAMPLE_RATE
from server.cli.live_client import load_pcm16k

FRAME = SAMPLE_RATE // 50  # 20 ms, a WebRTC frame


@dataclass
class LabelHistory:
    """The labelled windows as they stood after each embedding step, by audio time."""

    times: list[float] = field(default_factory=list)
    centers: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)

    def add(self, t: float, centers: np.ndarray, labels: np.ndarray) -> None:
        self.times.append(t)
        self.centers.append(centers)
        self.labels.append(labels)


def label_wait(history: LabelHistory, start: float, end: float, speaker: int) -> float | None:
    """Audio seconds from ``start`` until the latest labelled window centred in ``[start, end]`` first carries
    ``speaker`` (None: never while the turn lasts, nor in the 3 s after it)."""
    for t, centers, labels in zip(history.times, history.centers, history.labels, strict=True):
        if t > end + 3.0:
            break
        inside = np.nonzero((centers >= start) & (centers <= end))[0]
        if len(inside) and labels[inside[-1]] == speaker:
            return round(t - start, 2)
    return None


def replay_file(path: Path, rttm: Path, vad_model: SileroModel, embed: Callable[[list[np.ndarray]], np.ndarray],
                config: DiarizationConfig) -> dict[str, Any]:
    """One file through a diarizer on the audio clock: its DER and the label wait of each timed turn."""
    audio = load_pcm16k(path)
    vad = VadStream(vad_model)
    diarizer = SpeakerDiarizer(vad_model, config)
    history = LabelHistory()
    for i in range(0, len(audio), FRAME):
        frame = audio[i:i + FRAME]
        diarizer.feed(frame, vad.process(frame))
        centers, windows = diarizer.take_windows()
        if windows:
            diarizer.add_embeddings(centers, embed(windows))
            history.add(diarizer.received, *diarizer.labelled_windows())
    centers, windows = diarizer.take_windows(final=True)
    diarizer.add_embeddings(centers, embed(windows), recluster=True)
    ref = reference(rttm)
    hyp = timeline([(t.start, t.end, t.speaker) for t in diarizer.turns()], len(audio) / SAMPLE_RATE)
    to_hyp = {who: hyp_id for hyp_id, who in voice_mapping(ref, hyp).items()}
    turns = [[round(turn.start, 2), round(turn.end, 2), who,
              label_wait(history, turn.start, turn.end, int(to_hyp[who])) if who in to_hyp else None]
             for turn, who in timed_turns(ref)]
    waits = [w for *_, w in turns if w is not None]
    p50, p95 = wait_percentiles(waits)
    return {"file": f"{path.parent.name}/{path.name}", "ref_speakers": len(ref.labels()),
            "speakers": len(hyp.labels()), "der": round(der(ref, hyp), 4), "label_wait_p50_s": p50,
            "label_wait_p95_s": p95, "turns_never_labelled": len(turns) - len(waits), "turns": turns}


def run_speaker_clock(audio_dir: Path, only: list[str] | None, config: DiarizationConfig) -> dict[str, Any]:
    from asr.diarization.encoder import SpeakerEncoder

    vad_model, encoder = SileroModel(), SpeakerEncoder()
    files = [replay_file(audio_dir / f, audio_dir / "rttm" / f"{Path(f).stem}.rttm", vad_model,
                         encoder.embed_windows, config) for f in der_files(audio_dir, only)]
    return {"mode": "speaker_clock", "files": files}


def speaker_clock_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    cols = ["file", "speakers ref", "found", "DER stored", "voice labelled p50/p95 s (turns, never)"]

    def waits(r: dict[str, Any]) -> str:
        never = r["turns_never_labelled"]
        return wait_cell(r["label_wait_p50_s"], r["label_wait_p95_s"], len(r["turns"]) - never, never)

    return cols, [[Path(r["file"]).stem, str(r["ref_speakers"]), str(r["speakers"]), f"{r['der']:.3f}", waits(r)]
                  for r in result["files"]]
