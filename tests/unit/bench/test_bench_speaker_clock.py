"""``voxlane bench --der --replay``: speaker labels replayed on the audio clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asr.diarization import DiarizationConfig
from asr.diarization.encoder import SpeakerEncoder
from asr.vad import SileroModel
from bench.speaker_clock import LabelHistory, label_wait, replay_file, speaker_clock_rows


def _history(steps: list[tuple[float, list[float], list[int]]]) -> LabelHistory:
    h = LabelHistory()
    for t, centers, labels in steps:
        h.add(t, np.asarray(centers, dtype=np.float64), np.asarray(labels))
    return h


def test_a_turn_waits_for_its_voice_at_its_latest_labelled_window():
    # a turn of voice 2 from 10 s: its first window is still labelled 1, a re-clustering relabels it at 11.5 s
    h = _history([(10.6, [9.5, 10.1], [1, 1]), (11.0, [9.5, 10.1, 10.4], [1, 1, 1]),
                   (11.5, [9.5, 10.1, 10.4, 10.9], [1, 2, 2, 2])])
    assert label_wait(h, 10.0, 14.0, 2) == 1.5
    assert label_wait(h, 10.0, 14.0, 3) is None
    # no window inside the turn yet: nothing is named
    assert label_wait(_history([(10.2, [9.5], [2])]), 10.0, 14.0, 2) is None


def test_the_phone_call_replays_to_the_stored_labels(audio_dir: Path):
    f = audio_dir / "multi" / "pyannote_sample_2spk_phone_conversation.wav"
    enc = SpeakerEncoder()
    row = replay_file(f, audio_dir / "rttm" / f"{f.stem}.rttm", SileroModel(), enc.embed_windows,
                      DiarizationConfig())
    again = replay_file(f, audio_dir / "rttm" / f"{f.stem}.rttm", SileroModel(), enc.embed_windows,
                        DiarizationConfig())
    assert row == again  # a function of the audio
    assert row["speakers"] == 2 and row["der"] <= 0.12  # what `voxlane bench --der` stores for it
    assert len(row["turns"]) == 7 and row["turns_never_labelled"] <= 1
    cols, rows = speaker_clock_rows({"files": [row]})
    assert len(rows[0]) == len(cols)
