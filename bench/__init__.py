"""voxlane bench: live latency, WER, DER, replay, overload, soak and hostile-client runs."""

from pathlib import Path

SHARED_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "audio"
"""The speech corpus beside the checkout (``../shared/audio``): the default for every benchmark's files."""
