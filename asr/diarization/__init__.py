"""Live speaker diarization of one mixed stream: who spoke when, with no speaker count given in advance.

``diarizer`` windows a stream's speech and clusters the windows' voice embeddings online; ``encoder`` computes
those embeddings (its network, and torch, load only when a :class:`SpeakerEncoder` is made).
"""

from asr.diarization.diarizer import DiarizationConfig, SpeakerDiarizer, Turn, speaker_id, speaker_label
from asr.diarization.encoder import SpeakerEncoder, SpeakerModelMissing

__all__ = [
    "DiarizationConfig",
    "SpeakerDiarizer",
    "SpeakerEncoder",
    "SpeakerModelMissing",
    "Turn",
    "speaker_id",
    "speaker_label",
]
