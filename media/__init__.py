"""Audio in any accepted shape -> 16 kHz mono float32 numpy arrays.

This package knows nothing about ASR or the wire protocol: it decodes, resamples, and records.
"""

from media.audio import (
    SAMPLE_RATE,
    PcmFramer,
    downmix,
    float_to_s16,
    normalize_pcm_format,
    pcm_bytes_to_float,
    s16_to_float,
)
from media.decoders import (
    ContainerDecoder,
    DecodeError,
    PcmDecoder,
    StreamDecoder,
    decode_file,
    iter_decode_file,
    make_decoder,
    probe_file,
)
from media.errors import AudioTooLong
from media.formats import CONTAINER_FORMATS, PCM_FORMATS, normalize_container_format, sniff_container
from media.resample import Resampler
from media.wavfile import WavAppender, read_wav_range

__all__ = [
    "CONTAINER_FORMATS",
    "PCM_FORMATS",
    "SAMPLE_RATE",
    "AudioTooLong",
    "ContainerDecoder",
    "DecodeError",
    "PcmDecoder",
    "PcmFramer",
    "Resampler",
    "StreamDecoder",
    "WavAppender",
    "decode_file",
    "downmix",
    "float_to_s16",
    "iter_decode_file",
    "make_decoder",
    "normalize_container_format",
    "normalize_pcm_format",
    "pcm_bytes_to_float",
    "probe_file",
    "read_wav_range",
    "s16_to_float",
    "sniff_container",
]
