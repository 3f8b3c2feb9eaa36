"""Whisper models of a named shape with random weights, for timing a machine on a model that is not on it.

What a decode costs depends on the model's shape and on how many tokens it generates, not on what its weights
say: CTranslate2's own spec API (``ctranslate2.specs.WhisperSpec``) writes a model of any shape from numpy, so a
GPU can be sized for large-v3-turbo or distil-large-v3 without gigabytes of weights travelling to it. Random
weights read any audio as noise and write text of any length, so :class:`FixedLengthBackend` generates a fixed
number of tokens a second of window (the end of text suppressed) and reads each window once: the figures are
those of a model that writes that much, and every figure made this way says so.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.backends import DecodeRequest, DecodeResult, FasterWhisperBackend
from media.audio import SAMPLE_RATE

TOKENS_PER_SECOND = 5.0
"""What a fixed-length reading generates for each second of its window: read speech runs at about 3 words a second,
4-5 tokens with the timestamps (the corpus's densest speech is 8)."""


@dataclass(frozen=True)
class WhisperShape:
    """The sizes that set a Whisper model's cost (those of the published checkpoints)."""

    n_mels: int
    d_model: int
    heads: int
    encoder_layers: int
    decoder_layers: int
    vocabulary: int


SHAPES = {
    "tiny": WhisperShape(80, 384, 6, 4, 4, 51865),
    "small": WhisperShape(80, 768, 12, 12, 12, 51865),
    "large-v3": WhisperShape(128, 1280, 20, 32, 32, 51866),
    "large-v3-turbo": WhisperShape(128, 1280, 20, 32, 4, 51866),
    "distil-large-v3": WhisperShape(128, 1280, 20, 32, 2, 51866),
}
ENCODER_POSITIONS = 1500  # 30 s of audio after the convolutions' stride of 2
DECODER_POSITIONS = 448


def _shape_of(path: str, shape: WhisperShape) -> tuple[int, ...]:
    """The shape of one of the spec's variables, by its path (as CTranslate2's converter lays Whisper out:
    self-attention with q, k and v fused, cross-attention with k and v fused)."""
    d, ffn, v = shape.d_model, 4 * shape.d_model, shape.vocabulary
    rules = [
        ("conv1/weight", (d, shape.n_mels, 3)), ("conv2/weight", (d, d, 3)),
        ("encoder/position_encodings/encodings", (ENCODER_POSITIONS, d)),
        ("decoder/position_encodings/encodings", (DECODER_POSITIONS, d)),
        ("embeddings/weight", (v, d)), ("projection/weight", (v, d)),
        ("self_attention/linear_0/weight", (3 * d, d)), ("self_attention/linear_0/bias", (3 * d,)),
        ("/attention/linear_1/weight", (2 * d, d)), ("/attention/linear_1/bias", (2 * d,)),
        ("ffn/linear_0/weight", (ffn, d)), ("ffn/linear_0/bias", (ffn,)), ("ffn/linear_1/weight", (d, ffn)),
        ("/weight", (d, d)), ("/bias", (d,)), ("/gamma", (d,)), ("/beta", (d,)),
    ]
    for suffix, dims in rules:
        if path.endswith(suffix):
            return dims
    raise ValueError(f"no shape rule for {path}")


def _whisper_has(spec: object, name: str, path: str) -> bool:
    """An optional variable that Whisper's checkpoints carry: the biases (but for the output projection's) and the
    position encodings, which CTranslate2 would otherwise make sinusoidal."""
    from ctranslate2.specs import common_spec, transformer_spec

    if isinstance(spec, transformer_spec.PositionEncoderSpec):
        return name == "encodings"
    return (name == "bias" and isinstance(spec, common_spec.LinearSpec | common_spec.Conv1DSpec)
            and not path.startswith("decoder/projection"))


def _fill(spec: object, path: str, shape: WhisperShape, rng: np.random.Generator) -> None:
    """Give every weight the spec leaves unset (and every bias Whisper has) random values, in float16."""
    from ctranslate2.specs import model_spec

    for name, value in list(vars(spec).items()):
        here = f"{path}/{name}" if path else name
        if isinstance(value, model_spec.LayerSpec):
            _fill(value, here, shape, rng)
        elif isinstance(value, list) and value and isinstance(value[0], model_spec.LayerSpec):
            for i, item in enumerate(value):
                _fill(item, f"{here}_{i}", shape, rng)
        elif value is None or (value == model_spec.OPTIONAL and _whisper_has(spec, name, here)):
            dims = _shape_of(here, shape)
            if name == "gamma":
                values = np.ones(dims, np.float16)
            elif name in ("beta", "bias"):
                values = np.zeros(dims, np.float16)
            else:
                values = (rng.standard_normal(dims, dtype=np.float32) * 0.02).astype(np.float16)
            setattr(spec, name, values)


def write_random_whisper(shape: WhisperShape, out: Path, tokens_from: Path, seed: int = 0) -> Path:
    """A CTranslate2 Whisper model of ``shape`` with random float16 weights, in ``out``.

    Its tokens are those of the model in ``tokens_from`` (the bundled ``tiny.en``: ``tokenizer.json`` and
    ``vocabulary.txt``), padded with timestamp tokens to the shape's vocabulary. Their layout is the English-only
    one, so CTranslate2 and faster-whisper read the model as English-only: its prompts lack the language token
    of a multilingual model's, one token in some thirty, which the cost does not show."""
    from ctranslate2.specs import whisper_spec

    spec = whisper_spec.WhisperSpec(shape.encoder_layers, shape.heads, shape.decoder_layers, shape.heads)
    _fill(spec, "", shape, np.random.default_rng(seed))
    tokens = (tokens_from / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    last = len(tokens)
    tokens += [f"<|{30 + 0.02 * (i + 1):.2f}|>" for i in range(shape.vocabulary - last)]
    spec.register_vocabulary(tokens[: shape.vocabulary])
    source = json.loads((tokens_from / "config.json").read_text())
    spec.config.suppress_ids = source.get("suppress_ids", [])
    spec.config.suppress_ids_begin = source.get("suppress_ids_begin", [])
    spec.config.lang_ids = source.get("lang_ids", [])
    spec.config.alignment_heads = [list(p) for p in itertools.product(
        range(shape.decoder_layers // 2, shape.decoder_layers), range(shape.heads))]
    spec.validate()
    out.mkdir(parents=True, exist_ok=True)
    spec.save(str(out))
    (out / "tokenizer.json").write_bytes((tokens_from / "tokenizer.json").read_bytes())
    (out / "preprocessor_config.json").write_text(json.dumps({
        "feature_size": shape.n_mels, "sampling_rate": SAMPLE_RATE, "hop_length": 160, "chunk_length": 30,
        "n_fft": 400}))
    return out


class FixedLengthBackend(FasterWhisperBackend):
    """The faster-whisper backend reading every window once, with exactly ``tokens_per_second`` tokens a second
    of its longest window (at least one): its own encoder, generate and word-alignment calls, as a live batch
    makes them, without the reads again that random text would set off (a tail it left unread, a loop)."""

    def __init__(self, *args, tokens_per_second: float = TOKENS_PER_SECOND, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tokens_per_second = tokens_per_second

    def _tokens(self, reqs: list[DecodeRequest]) -> int:
        return max(1, math.ceil(self.tokens_per_second * max(len(r.audio) for r in reqs) / SAMPLE_RATE))

    def _max_length(self, reqs: list[DecodeRequest], prompt_tokens: int) -> int:
        """CTranslate2 generates at most half of ``max_length`` and no more than one token over ``max_length`` less
        the prompt (see the base class): this is the least that lets it generate the fixed number."""
        wanted = self._tokens(reqs)
        return min(self._model.max_length, max(2 * wanted, prompt_tokens + wanted - 1))

    def _suppressed_tokens(self, tok) -> list[int]:
        return [*super()._suppressed_tokens(tok), tok.eot]

    def _windows(self, reqs: list[DecodeRequest]) -> list[DecodeResult]:
        from faster_whisper.tokenizer import Tokenizer

        t0 = time.perf_counter()
        m = self._model
        tok = Tokenizer(m.hf_tokenizer, m.model.is_multilingual, task="transcribe", language="en")
        encoded = self._encode(reqs, int(round(self.encoder_seconds(reqs) * 100)))
        readings = self._generate(reqs, encoded, tok)
        if any(r.word_timestamps for r in reqs):
            self._with_words([r.segments for r in readings], tok, encoded, [r.size for r in readings])
        elapsed = (time.perf_counter() - t0) / len(reqs)
        return [DecodeResult(compute_seconds=elapsed) for _ in reqs]

