"""ITU-T G.711 (μ-law and A-law) telephone audio, decoded to 16-bit PCM."""

from __future__ import annotations

import numpy as np


def _g711_tables() -> dict[str, np.ndarray]:
    """ITU-T G.711 decoding, byte -> 16-bit sample (equal to the stdlib's audioop, which Python 3.13 removed)."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign, exp, man = u & 0x80, (u >> 4) & 7, u & 0x0F
    mag = (((man << 3) + 0x84) << exp) - 0x84
    ulaw = np.where(sign != 0, -mag, mag).astype("<i2")
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign, exp, man = a & 0x80, (a >> 4) & 7, a & 0x0F
    mag = np.where(exp == 0, (man << 4) + 8, ((man << 4) + 0x108) << np.maximum(exp - 1, 0))
    alaw = np.where(sign != 0, mag, -mag).astype("<i2")
    return {"pcmu": ulaw, "pcma": alaw}


G711 = _g711_tables()


def g711_to_pcm16(data: bytes, fmt: str) -> bytes:
    """μ-law (``pcmu``) or A-law (``pcma``) bytes as 16-bit little-endian PCM at the same (8 kHz) rate."""
    return G711[fmt][np.frombuffer(data, dtype=np.uint8)].tobytes()
