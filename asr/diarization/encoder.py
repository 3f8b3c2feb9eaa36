"""Speaker embeddings: the pretrained voice encoder shipped in the ``resemblyzer`` wheel.

The weights come from the installed package (no download); the network is a
3-layer LSTM over 40-band mel frames whose last hidden state is projected to a
256-d, non-negative, unit-length vector. Only the weights file is read: the
package's own module imports webrtcvad (which needs ``pkg_resources``) and
librosa, neither of which an embedding needs.

Chosen over the alternatives that install offline from PyPI because it is small
(17 MB, ~2 ms per 1.6 s window on one CPU core) and separates voices well
enough on the project's multi-speaker corpus (DER table in the README).
"""

from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from media.audio import SAMPLE_RATE

N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
WINDOW_FRAMES = 160  # 1.6 s: the length the encoder was trained on
EMBEDDING_SIZE = 256
TARGET_DBFS = -30.0


class SpeakerModelMissing(RuntimeError):
    pass


def weights_path() -> Path:
    spec = importlib.util.find_spec("resemblyzer")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise SpeakerModelMissing("the 'resemblyzer' package (speaker encoder weights) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        raise SpeakerModelMissing(f"speaker encoder weights not found at {path}")
    return path


def _hz_to_mel(f: float | np.ndarray) -> np.ndarray:
    # Slaney scale: linear below 1 kHz, logarithmic above (what the encoder was trained with).
    f = np.asarray(f, dtype=np.float64)
    mel = f / (200.0 / 3)
    log_part = f >= 1000.0
    return np.where(log_part, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))


@lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """(N_MELS, N_FFT//2+1) triangular filters, area-normalised (Slaney)."""
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    mel_pts = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    widths = np.diff(mel_pts)
    ramps = mel_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_pts[2:] - mel_pts[:-2]))[:, None]
    return weights.astype(np.float32)


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def mel_frames(audio: np.ndarray) -> np.ndarray:
    """Power mel spectrogram, (frames, 40), one frame per 10 ms, centred like the training features."""
    audio = np.asarray(audio, dtype=np.float32)
    padded = np.pad(audio, N_FFT // 2)
    n = 1 + max(0, (len(padded) - N_FFT) // HOP)
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
    spectrum = np.abs(np.fft.rfft(padded[idx] * _hann(), axis=1)) ** 2
    return (spectrum.astype(np.float32) @ mel_filterbank().T).astype(np.float32)


def normalize_volume(audio: np.ndarray) -> np.ndarray:
    """Raise quiet audio to -30 dBFS (never lower it), as the encoder's training data was."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
    if rms <= 1e-6:
        return audio
    gain_db = TARGET_DBFS - 20 * np.log10(rms)
    return audio * np.float32(10 ** (gain_db / 20)) if gain_db > 0 else audio


class SpeakerEncoder:
    """Thread-safe embedding of 16 kHz mono audio windows; one instance per process."""

    def __init__(self, threads: int = 1, device: str = "cpu") -> None:
        import torch  # imported here: the server starts without it when diarization is off

        if device.startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"  # a CPU build of torch beside a CUDA transcriber: embeddings stay on the CPU
        self.device = device

        self._torch = torch
        saved = torch.load(weights_path(), map_location="cpu", weights_only=True)
        state = saved.get("model_state", saved)  # a training checkpoint: the weights sit under model_state
        self._lstm = torch.nn.LSTM(N_MELS, 256, 3, batch_first=True)
        self._linear = torch.nn.Linear(256, EMBEDDING_SIZE)
        self._lstm.load_state_dict({k[len("lstm."):]: v for k, v in state.items() if k.startswith("lstm.")})
        self._linear.load_state_dict({k[len("linear."):]: v for k, v in state.items() if k.startswith("linear.")})
        self._lstm.to(device).eval()
        self._linear.to(device).eval()
        self._threads = threads
        self._lock = threading.Lock()

    def embed_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        """One unit vector per audio window (each ideally 1.6 s; shorter ones are zero-padded)."""
        if not windows:
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        mels = []
        for w in windows:
            m = mel_frames(normalize_volume(w))[:WINDOW_FRAMES]
            if len(m) < WINDOW_FRAMES:
                m = np.pad(m, ((0, WINDOW_FRAMES - len(m)), (0, 0)))
            mels.append(m)
        torch = self._torch
        with self._lock, torch.inference_mode():
            previous = torch.get_num_threads()
            torch.set_num_threads(self._threads)
            try:
                _, (hidden, _) = self._lstm(torch.from_numpy(np.stack(mels)).to(self.device))
                raw = torch.relu(self._linear(hidden[-1])).cpu()
            finally:
                torch.set_num_threads(previous)
        out = raw.numpy().astype(np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-8)
