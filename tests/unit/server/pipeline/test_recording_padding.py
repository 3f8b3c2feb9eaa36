"""A resumed recording padded to its transcript's stored timeline (server.pipeline.publisher): silence for what a
dead node had not checkpointed, nothing for a recording that never existed unless its stream was taken over, and
never more than MAX_PAD_SECONDS whatever the stored timeline says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from media import WavAppender
from server.pipeline import publisher


def recording(path: Path, seconds: float) -> Path:
    wav = WavAppender(path)
    wav.append(np.full(int(seconds * 16000), 0.1, dtype=np.float32))
    wav.close()
    return path


def duration(path: Path) -> float:
    wav = WavAppender(path)
    try:
        return wav.duration
    finally:
        wav.close()


def test_a_short_recording_is_padded_to_the_stored_timeline(tmp_path: Path) -> None:
    path = recording(tmp_path / "recording.wav", 2.0)
    assert publisher._pad_recording(path, 5.5, pad_empty=False) == pytest.approx(3.5)
    assert duration(path) == pytest.approx(5.5)
    assert publisher._pad_recording(path, 4.0, pad_empty=False) == 0.0, "never shortened"


def test_an_empty_recording_is_padded_only_for_a_stream_taken_over(tmp_path: Path) -> None:
    upload = tmp_path / "upload-transcript.wav"
    assert publisher._pad_recording(upload, 30.0, pad_empty=False) == 0.0  # its words came from an upload
    assert duration(upload) == 0.0
    orphan = tmp_path / "orphan.wav"
    assert publisher._pad_recording(orphan, 3.0, pad_empty=True) == pytest.approx(3.0)


def test_padding_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publisher, "MAX_PAD_SECONDS", 2.0)
    path = recording(tmp_path / "recording.wav", 1.0)
    assert publisher._pad_recording(path, 10_000.0, pad_empty=True) == 2.0
    assert duration(path) == pytest.approx(3.0)
