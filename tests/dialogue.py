"""A three-voice dialogue rendered with Debian's TTS tools: turns with short gaps, as in a lively meeting.

Two flite voices (awb, a Scottish man; slt, an American woman) and one espeak-ng voice (en-us+m3): the
speaker encoder puts their centroids 0.31-0.51 apart in cosine distance (flite's rms sat 0.19 from awb and
merged with it). The gaps between turns are 0.2-0.5 s, shorter than the VAD's end-of-segment silence, so only
a live turn split (or a sentence end) separates one speaker's words from the next one's.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from media.audio import float_to_s16
from media.file_decode import decode_file

VOICES = (("flite", "-voice", "awb", "-t", "{text}", "-o", "{out}"),
          ("flite", "-voice", "slt", "-t", "{text}", "-o", "{out}"),
          ("espeak-ng", "-v", "en-us+m3", "-s", "160", "-w", "{out}", "{text}"))
LINES = [
    (0, "Good morning everyone, let us start with the budget for next year."),
    (1, "Thanks. I looked at the numbers last night and the travel costs are far too high."),
    (2, "I agree with that. We booked most of the flights very late in the quarter."),
    (0, "Then we should book them earlier. Can you send me a list of the trips?"),
    (1, "Yes, I will send it today after lunch."),
    (2, "The second item is the new office in the north of the city."),
    (0, "Do we have a date for the move yet, or is it still open?"),
    (1, "The landlord wants us to sign the contract before the end of the month."),
    (2, "That is too soon. Our lawyers have not read the contract."),
    (0, "Then ask them to read it this week, please."),
    (1, "I will call them this afternoon and tell you what they say."),
    (2, "Good. The last item is the summer party for the whole team."),
    (0, "Let us keep it simple this year, a picnic in the park would be fine."),
    (1, "Everyone liked the picnic two years ago, so I think that is a good idea."),
]
GAPS = (0.3, 0.45, 0.2, 0.5, 0.35, 0.25, 0.4)
RATE = 16000


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: int  # index into VOICES
    text: str


def available() -> bool:
    return shutil.which("flite") is not None and shutil.which("espeak-ng") is not None


def render(path: Path) -> list[Turn]:
    """Write the dialogue to ``path`` (16 kHz mono WAV) and return its turns."""
    parts: list[np.ndarray] = []
    turns: list[Turn] = []
    t = 0.5
    parts.append(np.zeros(int(0.5 * RATE), dtype=np.int16))
    with tempfile.TemporaryDirectory() as tmp:
        for i, (who, text) in enumerate(LINES):
            out = Path(tmp) / f"{i}.wav"
            subprocess.run([a.format(text=text, out=out) for a in VOICES[who]], check=True, capture_output=True)
            audio = decode_file(out)  # resampled to 16 kHz: espeak-ng writes 22.05 kHz
            speech = _trim(np.frombuffer(float_to_s16(audio), dtype=np.int16))
            turns.append(Turn(round(t, 3), round(t + len(speech) / RATE, 3), who, text))
            parts.append(speech)
            t += len(speech) / RATE
            gap = GAPS[i % len(GAPS)] if i < len(LINES) - 1 else 1.0
            parts.append(np.zeros(int(gap * RATE), dtype=np.int16))
            t += gap
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.concatenate(parts).tobytes())
    return turns


def _trim(pcm: np.ndarray, floor: int = 300) -> np.ndarray:
    """flite pads each line with silence: cut it, so the gaps are the ones chosen here."""
    loud = np.nonzero(np.abs(pcm.astype(np.int32)) > floor)[0]
    return pcm[loud[0]:loud[-1] + 1] if len(loud) else pcm


def render_tracks(directory: Path, lines: list[tuple[int, str]], gap: float = 0.4) -> tuple[list[Path], list[Turn]]:
    """One 16 kHz mono WAV per voice on one shared timeline (``directory/voice-<k>.wav``): each holds its own
    voice's turns and silence while the others speak, as each participant's microphone in a meeting would."""
    voices = sorted({who for who, _ in lines})
    speech: list[tuple[int, str, np.ndarray]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (who, text) in enumerate(lines):
            out = Path(tmp) / f"{i}.wav"
            subprocess.run([a.format(text=text, out=out) for a in VOICES[who]], check=True, capture_output=True)
            audio = decode_file(out)
            speech.append((who, text, _trim(np.frombuffer(float_to_s16(audio), dtype=np.int16))))
    total = 0.5 + sum(len(s) / RATE + gap for _, _, s in speech) + 1.0
    tracks = {v: np.zeros(int(total * RATE), dtype=np.int16) for v in voices}
    turns: list[Turn] = []
    t = 0.5
    for who, text, pcm in speech:
        at = int(t * RATE)
        tracks[who][at:at + len(pcm)] = pcm
        turns.append(Turn(round(t, 3), round(t + len(pcm) / RATE, 3), who, text))
        t += len(pcm) / RATE + gap
    paths = []
    for v in voices:
        path = directory / f"voice-{v}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(tracks[v].tobytes())
        paths.append(path)
    return paths, turns
