"""The online clustering's labels depend on the windows heard, not on how the embedding jobs split them."""

from __future__ import annotations

import numpy as np
import pytest

from asr.diarization import DiarizationConfig, SpeakerDiarizer
from asr.vad import SileroModel


@pytest.fixture(scope="module")
def vad() -> SileroModel:
    return SileroModel()


def voices(windows: int, seed: int = 3) -> tuple[list[float], np.ndarray]:
    """Window centres every 0.25 s and embeddings of three voices taking turns every 6 s, with noise."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((3, 256))
    centers = [0.5 + 0.25 * k for k in range(windows)]
    who = [(int(c // 6)) % 3 for c in centers]
    emb = means[who] + rng.standard_normal((windows, 256)) * 0.5
    return centers, (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)


def labels_after(vad: SileroModel, centers: list[float], emb: np.ndarray, cuts: list[int]) -> dict[int, list[int]]:
    """The labels after each job, keyed by the windows heard so far; the jobs end at ``cuts``."""
    d = SpeakerDiarizer(vad, DiarizationConfig())
    seen: dict[int, list[int]] = {}
    start = 0
    for end in [*cuts, len(centers)]:
        d.add_embeddings(centers[start:end], emb[start:end])
        seen[end] = [int(x) for x in d.speaker_at(centers[:end])]
        start = end
    d.add_embeddings([], np.zeros((0, 256), np.float32), recluster=True)
    seen[-1] = [int(x) for x in d.speaker_at(centers)]
    return seen


def test_labels_do_not_depend_on_how_the_jobs_split_the_windows(vad):
    centers, emb = voices(300)
    steady = labels_after(vad, centers, emb, list(range(4, 300, 4)))  # an idle machine: a job a second
    rng = np.random.default_rng(7)
    busy = sorted({int(x) for x in rng.integers(1, 300, 25)})  # a loaded one: late jobs with many windows
    late = labels_after(vad, centers, emb, busy)
    for n, labels in late.items():
        if n in steady:
            assert labels == steady[n], n
    assert late[-1] == steady[-1]
    assert len(set(steady[-1])) == 3
