"""``voxlane bench --decode-costs --shape``: a random-weight Whisper of a named shape loads in faster-whisper and
reads every window with the fixed number of tokens (the real CTranslate2 on a model small enough for a test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from asr.backends import DecodeRequest
from asr.backends.model_files import BUNDLED_MODEL, resolve_model
from bench.decode_costs import PROMPT, time_shape
from bench.model_shapes import SHAPES, FixedLengthBackend, WhisperShape, _shape_of, write_random_whisper

# large-v3's input and vocabulary sizes (128 mel bands, 51,866 tokens) at a size a test can load
SMALL_V3 = WhisperShape(n_mels=128, d_model=64, heads=2, encoder_layers=2, decoder_layers=1, vocabulary=51866)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_random_whisper(SMALL_V3, tmp_path_factory.mktemp("shape") / "small-v3",
                                Path(resolve_model(BUNDLED_MODEL)))


def test_a_written_shape_loads_as_the_model_it_stands_for(model):
    backend = FixedLengthBackend(str(model), device="cpu", compute_type="int8", batch_size=2)
    m = backend._models[0]
    assert m.model.n_mels == 128 and m.feature_extractor.mel_filters.shape[0] == 128
    assert len(m.hf_tokenizer.get_vocab()) <= SMALL_V3.vocabulary


@pytest.mark.parametrize("seconds", [3.0, 7.0])
def test_every_window_of_a_batch_is_read_with_the_fixed_number_of_tokens(model, seconds):
    from faster_whisper.tokenizer import Tokenizer

    backend = FixedLengthBackend(str(model), device="cpu", compute_type="int8", batch_size=2, tokens_per_second=4)
    m = backend._model
    tok = Tokenizer(m.hf_tokenizer, m.model.is_multilingual, task="transcribe", language="en")
    noise = np.random.default_rng(1).standard_normal(int(seconds * 16000)).astype(np.float32) * 0.1
    reqs = [DecodeRequest(noise, prompt=PROMPT, language="en"), DecodeRequest(noise[::-1].copy(), language="en",
                                                                              prompt=PROMPT)]
    m.model = _Counting(m.model)
    backend._generate(reqs, backend._encode(reqs, 3000), tok)
    assert m.model.generated == [int(4 * seconds)] * 2
    results = backend.transcribe(reqs)  # encoder, generate and alignment once, no read again
    assert len(results) == 2 and all(r.passes == 1 and r.error is None and r.compute_seconds > 0 for r in results)


class _Counting:
    """CTranslate2's model, counting the tokens each ``generate`` call wrote for each window."""

    def __init__(self, model) -> None:
        self._model, self.generated = model, []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def generate(self, *args, **kwargs):
        results = self._model.generate(*args, **kwargs)
        self.generated = [len(r.sequences_ids[0]) for r in results]
        return results


def test_each_projection_has_the_shape_the_converter_gives_it():
    """Self-attention fuses q, k and v and projects back to the model's width; cross-attention fuses k and v. A
    rule for the cross-attention's k and v once matched the self-attention's output projection too."""
    d = SHAPES["large-v3-turbo"].d_model
    shape = SHAPES["large-v3-turbo"]
    for side in ("encoder", "decoder"):
        assert _shape_of(f"{side}/layer_0/self_attention/linear_0/weight", shape) == (3 * d, d)
        assert _shape_of(f"{side}/layer_0/self_attention/linear_1/weight", shape) == (d, d)
        assert _shape_of(f"{side}/layer_0/self_attention/linear_1/bias", shape) == (d,)
    assert _shape_of("decoder/layer_0/attention/linear_0/weight", shape) == (d, d)
    assert _shape_of("decoder/layer_0/attention/linear_1/weight", shape) == (2 * d, d)
    assert _shape_of("decoder/layer_0/attention/linear_2/weight", shape) == (d, d)
    assert _shape_of("decoder/layer_0/ffn/linear_1/weight", shape) == (d, 4 * d)


def test_the_shapes_are_the_published_checkpoints():
    turbo, distil = SHAPES["large-v3-turbo"], SHAPES["distil-large-v3"]
    assert (turbo.encoder_layers, turbo.decoder_layers, turbo.d_model, turbo.n_mels) == (32, 4, 1280, 128)
    assert (distil.encoder_layers, distil.decoder_layers) == (32, 2)


def test_time_shape_gives_the_decode_costs_table(monkeypatch):
    monkeypatch.setitem(SHAPES, "small-v3", SMALL_V3)
    result = time_shape("small-v3", [2.0], [1, 2], 1, Path(resolve_model(BUNDLED_MODEL)), device="cpu",
                        compute_type="int8", batch_size=2)
    assert result["shape_sizes"]["n_mels"] == 128 and result["tokens_per_second"] == 5.0
    assert [(r["hurried"], r["batch"]) for r in result["rows"]] == [(True, 1), (True, 2), (False, 1), (False, 2)]
    assert all(r["median_s"] > 0 for r in result["rows"])
