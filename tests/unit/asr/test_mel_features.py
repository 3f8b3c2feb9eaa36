"""The speaker encoder's mel features against librosa's, the library its training features came from.

librosa is not imported here: its first call compiles through numba (about 20 s on two cores), so its output for
one second of real speech is kept in ``mel_reference.npz``. ``python -m tests.unit.asr.test_mel_features``
writes that file again (librosa installed), for example after a librosa upgrade.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asr.diarization.encoder import mel_filterbank, mel_frames

REFERENCE = Path(__file__).with_name("mel_reference.npz")
SPEECH = "single/ljspeech_LJ001-0001_0016.wav"  # one second of it, from 2 s in


def test_mel_features_match_the_encoders_training_features():
    ref = np.load(REFERENCE)
    audio = ref["audio"].astype(np.float32) / 32768.0
    expected = ref["mel"]
    assert np.allclose(mel_frames(audio), expected, rtol=1e-3, atol=1e-6 * float(expected.max()))
    assert np.allclose(mel_filterbank(), ref["filterbank"], atol=1e-7)


def _write_reference() -> None:
    import librosa

    from server.cli.live_client import load_pcm16k
    from tests.conftest import AUDIO

    pcm = np.round(load_pcm16k(AUDIO / SPEECH)[2 * 16000:3 * 16000] * 32767).astype(np.int16)
    audio = pcm.astype(np.float32) / 32768.0
    mel = librosa.feature.melspectrogram(y=audio, sr=16000, n_fft=400, hop_length=160, n_mels=40).T
    bank = librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)
    np.savez_compressed(REFERENCE, audio=pcm, mel=mel.astype(np.float32), filterbank=bank.astype(np.float32))
    print(f"wrote {REFERENCE} (librosa {librosa.__version__})")


if __name__ == "__main__":
    _write_reference()
