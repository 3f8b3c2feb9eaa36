"""Online speaker diarization of one mixed audio stream.

Speech (a VAD of its own, more permissive than the transcriber's: a missed
backchannel costs diarization more than it costs transcription) is cut into
short overlapping windows; each window gets a speaker embedding; all windows
seen so far are re-clustered every couple of seconds of speech with
average-linkage agglomerative clustering under a cosine-distance threshold, so
the number of speakers is never fixed in advance (a maximum is a setting).
Clusters too small to be a voice are folded into their nearest neighbour, the
centroids are refined, and labels are smoothed over neighbouring windows.

Cluster numbers from one clustering to the next are mapped onto stable speaker
ids by maximum overlap (Hungarian assignment), so a label only changes when the
evidence changes it: such changes are what the server reports as corrections.

This module is synchronous and does no I/O: the server feeds audio from the
event loop and runs :meth:`SpeakerDiarizer.add_embeddings` (with the embedding)
on a worker thread, serialised per stream.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from asr.vad import CHUNK, CHUNK_SECONDS, SileroModel, VadStream
from media.audio import SAMPLE_RATE


@dataclass
class DiarizationConfig:
    window_s: float = 1.0  # embedding window; 1.0 s beat 1.5 s on every multi-speaker file of the corpus
    hop_s: float = 0.25
    vad_threshold: float = 0.2
    vad_neg_threshold: float = 0.1
    min_speech_fraction: float = 0.5  # a window mostly of silence says little about a voice
    cluster_threshold: float = 0.3  # cosine distance at which average-linkage stops merging
    min_cluster_windows: int = 8  # 2 s of speech before a cluster counts as a speaker
    max_speakers: int = 8
    smooth_windows: int = 5
    gap_fill_s: float = 2.0  # a speaker's turn bridges pauses up to this long
    # one voice over minutes drifts into clusters whose centroids nearly coincide (cosine distance 0.04-0.06
    # on the corpus's long single-speaker files), while the closest two real voices measured 0.10: merge below
    centroid_merge: float = 0.08
    max_cluster_windows: int = 1500  # beyond this, cluster an even subsample and assign the rest
    recluster_every: int = 8  # new windows between re-clusterings (grows with the history)


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: int  # stable speaker number, 1-based


def speaker_id(n: int) -> str:
    return f"S{n}"


def speaker_label(n: int) -> str:
    return f"Speaker {n}"


class SpeakerDiarizer:
    """Speaker labels for one stream's timeline (seconds from the stream's first sample)."""

    def __init__(self, vad_model: SileroModel, config: DiarizationConfig | None = None) -> None:
        self.config = config or DiarizationConfig()
        self._vad = VadStream(vad_model)
        self._vad_model = vad_model
        self._lock = threading.Lock()
        self._mask_parts: list[np.ndarray] = []  # speech flag per VAD chunk, appended in pieces
        self._mask_len = 0
        self._on = False
        # samples from _audio_t0 on, still needed by windows: the frames as fed, joined when windows are cut (about
        # once a second) instead of the whole tail copied on every frame
        self._audio_parts: list[np.ndarray] = []
        self._audio_t0 = 0  # sample index of _audio[0]
        self._received = 0  # samples received (paused stretches included)
        self._next_window = 0  # index k of the next window to cut: centre = W/2 + k*hop
        self._centers: list[float] = []
        self._emb_blocks: list[np.ndarray] = []
        self._emb: np.ndarray = np.zeros((0, 256), dtype=np.float32)
        self._labels = np.zeros(0, dtype=np.int64)  # stable speaker number per embedded window
        self._centroids: dict[int, np.ndarray] = {}
        self._since_cluster = 0
        self._next_speaker = 1
        self.revision = 0  # bumped whenever labels of already-labelled windows may have changed

    # ------------------------------------------------------------ audio (event loop)

    @property
    def received(self) -> float:
        return self._received / SAMPLE_RATE

    def feed(self, samples: np.ndarray, probs: np.ndarray | None = None) -> None:
        """Audio and, when the caller already ran the VAD over it (a live session has), its probabilities."""
        samples = np.asarray(samples, dtype=np.float32)
        if probs is None:
            probs = self._vad.process(samples)
        with self._lock:
            self._audio_parts.append(samples.copy())  # held until its windows are cut: not the caller's array
            self._received += len(samples)
            self._append_mask(probs)

    def skip(self, seconds: float) -> None:
        """A stretch that is not analysed (paused): silence on the timeline, VAD state restarted."""
        n = int(round(seconds * SAMPLE_RATE))
        with self._lock:
            self._received += n
            self._audio_parts.append(np.zeros(n, dtype=np.float32))
            target = self._received // CHUNK
            self._append_mask(np.zeros(max(0, target - self._mask_len), dtype=np.float32))
            self._on = False
        self._vad = VadStream(self._vad_model)

    def _append_mask(self, probs: np.ndarray) -> None:
        cfg = self.config
        out = np.empty(len(probs), dtype=bool)
        on = self._on
        for i, p in enumerate(probs):
            if p >= cfg.vad_threshold:
                on = True
            elif p < cfg.vad_neg_threshold:
                on = False
            out[i] = on
        self._on = on
        self._mask_parts.append(out)
        self._mask_len += len(out)

    @property
    def _mask(self) -> np.ndarray:
        """The whole speech mask (pieces joined on demand, about once a second, not on every feed)."""
        if len(self._mask_parts) != 1:
            self._mask_parts = [np.concatenate(self._mask_parts) if self._mask_parts else np.zeros(0, dtype=bool)]
        return self._mask_parts[0]

    @property
    def _audio(self) -> np.ndarray:
        """The audio still held, as one array (called under the lock)."""
        if len(self._audio_parts) != 1:
            self._audio_parts = [np.concatenate(self._audio_parts) if self._audio_parts
                                 else np.zeros(0, dtype=np.float32)]
        return self._audio_parts[0]

    def take_windows(self, final: bool = False) -> tuple[list[float], list[np.ndarray]]:
        """Speech windows now complete (all of them, padded, when ``final``), to embed off the loop."""
        cfg = self.config
        w = int(cfg.window_s * SAMPLE_RATE)
        hop = int(cfg.hop_s * SAMPLE_RATE)
        centers: list[float] = []
        windows: list[np.ndarray] = []
        with self._lock:
            mask = self._mask
            mask_end = len(mask) * CHUNK
            audio = self._audio
            while True:
                start = self._next_window * hop
                end = start + w
                if end > min(self._received, mask_end) and not (final and start < self._received):
                    break
                self._next_window += 1
                # speech over the window's whole span: the padded tail of a final window is not speech
                speech = mask[start // CHUNK:-(-min(end, mask_end) // CHUNK)].sum() * CHUNK / w
                if speech < cfg.min_speech_fraction:
                    continue
                a = audio[start - self._audio_t0:end - self._audio_t0]
                centers.append((start + end) / 2 / SAMPLE_RATE)
                windows.append(a.copy())
            keep_from = self._next_window * hop
            if keep_from > self._audio_t0:
                self._audio_parts = [audio[keep_from - self._audio_t0:]]
                self._audio_t0 = keep_from
        return centers, windows

    # ------------------------------------------------------------ clustering (worker thread)

    def add_embeddings(self, centers: list[float], embeddings: np.ndarray, recluster: bool = False) -> bool:
        """Record new windows; returns True when a re-clustering may have changed earlier labels.

        The windows are taken one at a time, as if each had come alone: a window is labelled by the nearest
        centroid unless it is the one at which a re-clustering falls due, and that is counted in windows (the
        first, then every ``recluster_every`` or a twentieth of the history). So the labels are a function of
        the audio, not of how the embedding jobs happened to split it: a job that came late with many windows,
        because the machine was busy, labels them as the jobs of an idle machine would have."""
        if len(centers) == 0 and not recluster:
            return False
        emb = np.asarray(embeddings, dtype=np.float32).reshape(len(centers), self._emb.shape[1])
        changed = False
        with self._lock:
            first = 0  # the job's first window not yet recorded
            for i, center in enumerate(centers):
                self._centers.append(center)
                self._since_cluster += 1
                if not self._centroids or self._since_cluster >= max(self.config.recluster_every,
                                                                     len(self._centers) // 20):
                    self._record(emb[first:i], emb[i:i + 1])
                    self._recluster()
                    first, changed = i + 1, True
            self._record(emb[first:])
            if recluster:
                self._recluster()
                changed = True
        return changed

    def _record(self, nearest: np.ndarray, unlabelled: np.ndarray | None = None) -> None:
        """(under the lock) Windows that take the nearest centroid as things stand (one call for all of those
        between two re-clusterings), and the one a re-clustering about to run will label."""
        if len(nearest):
            self._emb_blocks.append(nearest)
            self._labels = np.concatenate([self._labels, self._nearest(nearest)])
        if unlabelled is not None:
            self._emb_blocks.append(unlabelled)

    def recluster(self) -> None:
        with self._lock:
            self._recluster()

    def _embeddings(self) -> np.ndarray:
        if self._emb_blocks:
            self._emb = np.concatenate([self._emb, *self._emb_blocks]) if len(self._emb) else np.concatenate(
                self._emb_blocks)
            self._emb_blocks = []
        return self._emb

    def _nearest(self, emb: np.ndarray) -> np.ndarray:
        ids = np.array(sorted(self._centroids))
        cents = np.stack([self._centroids[i] for i in ids])
        return ids[np.argmax(emb @ cents.T, axis=1)]

    def _recluster(self) -> None:
        cfg = self.config
        emb = self._embeddings()
        self._since_cluster = 0
        n = len(emb)
        if n == 0:
            return
        if n == 1:
            raw = np.zeros(1, dtype=np.int64)
        else:
            # scipy (0.55 s of import) loads with the first stream that clusters, not with every node that might
            from scipy.cluster.hierarchy import fcluster, linkage

            sample = np.arange(n)
            if n > cfg.max_cluster_windows:
                sample = np.unique(np.linspace(0, n - 1, cfg.max_cluster_windows).astype(int))
            z = linkage(emb[sample], method="average", metric="cosine")
            sub = fcluster(z, t=cfg.cluster_threshold, criterion="distance")
            ids, counts = np.unique(sub, return_counts=True)
            big = ids[counts >= cfg.min_cluster_windows]
            if len(big) > cfg.max_speakers:
                sub = fcluster(z, t=cfg.max_speakers, criterion="maxclust")
                ids, counts = np.unique(sub, return_counts=True)
                big = ids[np.argsort(-counts)[:cfg.max_speakers]]
            if len(big) == 0:
                big = ids[[int(np.argmax(counts))]]
            cents = _unit(np.stack([emb[sample][sub == i].mean(axis=0) for i in big]))
            raw = np.argmax(emb @ cents.T, axis=1)
            for _ in range(2):  # refine: centroids of the full assignment, reassign
                present = np.unique(raw)
                cents = _unit(np.stack([emb[raw == i].mean(axis=0) for i in present]))
                raw = present[np.argmax(emb @ cents.T, axis=1)]
            raw = _merge_close(emb, raw, cfg.centroid_merge)
            raw = _smooth(raw, np.asarray(self._centers), cfg.smooth_windows, cfg.window_s)
        stable = self._stabilise(raw)
        if len(self._labels) and np.any(stable[:len(self._labels)] != self._labels):
            self.revision += 1
        self._labels = stable
        self._centroids = {int(s): _unit(emb[stable == s].mean(axis=0)[None])[0] for s in np.unique(stable)}

    def _stabilise(self, raw: np.ndarray) -> np.ndarray:
        """Map clustering-local cluster numbers onto the stable speaker numbers already in use."""
        clusters = np.unique(raw)
        old = self._labels
        known = np.unique(old) if len(old) else np.zeros(0, dtype=np.int64)
        mapping: dict[int, int] = {}
        if len(known):
            from scipy.optimize import linear_sum_assignment

            overlap = np.array([[np.sum((raw[:len(old)] == c) & (old == s)) for s in known] for c in clusters])
            rows, cols = linear_sum_assignment(-overlap)
            for r, c in zip(rows, cols, strict=True):
                if overlap[r, c] > 0:
                    mapping[int(clusters[r])] = int(known[c])
        for c in clusters:
            if int(c) not in mapping:
                mapping[int(c)] = self._next_speaker
                self._next_speaker += 1
            else:
                self._next_speaker = max(self._next_speaker, mapping[int(c)] + 1)
        return np.array([mapping[int(c)] for c in raw], dtype=np.int64)

    # ------------------------------------------------------------ queries (any thread)

    @property
    def labelled_until(self) -> float:
        """Time up to which every complete window has been embedded and labelled."""
        with self._lock:
            if not self._centers:
                return self._next_window * self.config.hop_s
            n = len(self._labels)
            return self._centers[n - 1] + self.config.window_s / 2 if n else 0.0

    @property
    def pending_until(self) -> float:
        """Time up to which windows have been cut (embedded or about to be)."""
        return self._next_window * self.config.hop_s + self.config.window_s - self.config.hop_s

    def labelled_windows(self) -> tuple[np.ndarray, np.ndarray]:
        """The centre (seconds) and speaker number of every labelled window, in time order: copies."""
        with self._lock:
            n = len(self._labels)
            return np.asarray(self._centers[:n], dtype=np.float64), self._labels.copy()

    def speech(self) -> np.ndarray:
        """The speech mask so far: one flag per VAD chunk (``CHUNK_SECONDS``) from the stream's start."""
        with self._lock:
            return self._mask.copy()

    @property
    def speakers(self) -> list[int]:
        with self._lock:
            return sorted(int(s) for s in np.unique(self._labels))

    def speaker_seconds(self) -> dict[int, float]:
        """Seconds of speech (window hops) attributed to each speaker so far."""
        with self._lock:
            ids, counts = np.unique(self._labels, return_counts=True)
        return {int(i): float(c) * self.config.hop_s for i, c in zip(ids, counts, strict=True)}

    def speaker_at(self, times: np.ndarray | list[float]) -> np.ndarray:
        """Speaker number at each time (0 where nothing is known yet): the nearest labelled window."""
        times = np.asarray(times, dtype=np.float64)
        with self._lock:
            n = len(self._labels)
            if n == 0:
                return np.zeros(len(times), dtype=np.int64)
            centers = np.asarray(self._centers[:n])
            labels = self._labels.copy()
        idx = np.clip(np.searchsorted(centers, times), 1, max(1, n - 1))
        left = np.clip(idx - 1, 0, n - 1)
        right = np.clip(idx, 0, n - 1)
        pick = np.where(np.abs(times - centers[left]) <= np.abs(centers[right] - times), left, right)
        return labels[pick]

    def turns(self, start: float = 0.0, end: float | None = None) -> list[Turn]:
        """Speaker turns over ``[start, end)``: speech chunks labelled, same-speaker pauses bridged."""
        with self._lock:
            mask = self._mask.copy()
        first = max(0, int(start / CHUNK_SECONDS))
        last = len(mask) if end is None else min(len(mask), int(np.ceil(end / CHUNK_SECONDS)))
        idx = np.nonzero(mask[first:last])[0] + first
        if len(idx) == 0:
            return []
        t0 = idx * CHUNK_SECONDS
        labels = self.speaker_at(t0 + CHUNK_SECONDS / 2)
        known = labels > 0
        t0, labels = t0[known], labels[known]
        if len(t0) == 0:
            return []
        breaks = np.ones(len(t0), dtype=bool)
        breaks[1:] = (labels[1:] != labels[:-1]) | (t0[1:] - t0[:-1] - CHUNK_SECONDS > self.config.gap_fill_s + 1e-9)
        starts = np.nonzero(breaks)[0]
        ends = np.append(starts[1:], len(t0)) - 1
        return [Turn(round(float(t0[a]), 3), round(float(t0[b] + CHUNK_SECONDS), 3), int(labels[a]))
                for a, b in zip(starts, ends, strict=True)]


def _merge_close(emb: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Merge the two clusters with the closest centroids while they are closer than ``threshold``."""
    labels = labels.copy()
    while True:
        present = np.unique(labels)
        if len(present) < 2:
            return labels
        cents = _unit(np.stack([emb[labels == i].mean(axis=0) for i in present]))
        dist = 1.0 - cents @ cents.T
        np.fill_diagonal(dist, np.inf)
        i, j = np.unravel_index(int(np.argmin(dist)), dist.shape)
        if dist[i, j] >= threshold:
            return labels
        small, big = sorted((present[i], present[j]), key=lambda c: int(np.sum(labels == c)))
        labels[labels == small] = big


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)


def _smooth(labels: np.ndarray, centers: np.ndarray, width: int, window_s: float) -> np.ndarray:
    """Majority label over ``width`` neighbouring windows within reach in time (a tie: the smaller label), for
    all windows at once: a loop over them took half the speaker thread at eight streams."""
    if width <= 1 or len(labels) < 3:
        return labels
    n, half = len(labels), width // 2
    values, index = np.unique(labels, return_inverse=True)
    onehot = np.zeros((n, len(values)), dtype=np.int32)
    onehot[np.arange(n), index] = 1
    votes = onehot.copy()
    for d in range(1, half + 1):  # the neighbours d windows later and d earlier
        near = (np.abs(centers[d:] - centers[:-d]) <= half * window_s)[:, None]
        votes[:-d] += onehot[d:] * near
        votes[d:] += onehot[:-d] * near
    return values[np.argmax(votes, axis=1)].astype(labels.dtype, copy=False)
