"""The windowed decoding path with the real bundled model: batches (the path a GPU takes for several live
streams at once, kept working on CPU) and the bounds on a window the model loops on."""

from __future__ import annotations

import numpy as np
import pytest
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer

from asr.backends import BackendConfig, DecodeRequest, make_backend
from asr.backends.calibration import CALIBRATION_PROMPT
from asr.backends.faster_whisper import TOKENS_BASE, TOKENS_PER_SECOND, FasterWhisperBackend
from server.cli.live_client import load_pcm16k


@pytest.fixture(scope="module")
def backend():
    b = FasterWhisperBackend(cpu_threads=2, batch_size=3)
    yield b
    b.close()


def _text(result) -> str:
    return " ".join(w.text.strip() for w in result.words)


class _Counting:
    """The real CTranslate2 model, counting what each generate call produced."""

    def __init__(self, model) -> None:
        self._model = model
        self.generated: list[list[int]] = []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def generate(self, *args, **kwargs):
        results = self._model.generate(*args, **kwargs)
        self.generated.append([len(r.sequences_ids[0]) for r in results])
        return results


@pytest.fixture()
def counted(backend):
    """The backend's model and encoder, counted: (generated tokens per call, encoder calls)."""
    model, encode = backend._model.model, backend._model.encode
    counting, encodes = _Counting(model), []

    def counted_encode(features):
        encodes.append(len(features))
        return encode(features)

    backend._model.model, backend._model.encode = counting, counted_encode
    yield counting.generated, encodes
    backend._model.model, backend._model.encode = model, encode


def _looping(audio_dir) -> DecodeRequest:
    """A window that starts in a run of one word, prompted with the run: the model repeats "Word." over
    it (the speech after it is "I have a thousand thoughts about that thing")."""
    speech = load_pcm16k(audio_dir / "single/mfa_hard_cases_whisper_falsetto_fillers.wav")
    prompt = "Montreal forced aligner. Word. Another word. Here's some more word. Word. Word. Word. Word."
    return DecodeRequest(audio=speech[31 * 16000:36 * 16000], prompt=prompt)


def test_a_made_backend_has_decoded_on_every_lane_before_any_stream(monkeypatch):
    """make_backend warms each lane's model, hurried and in full, so that no live stream's first window pays for
    loading the kernels (seconds on a GPU), and leaves the lanes to be handed to the loop's threads as before.
    Built for a node that takes no live audio, it times no live decodes: those warm-up rounds only calibrate
    admission and the pacer (tests/e2e/test_admission.py checks the calibration)."""
    seen = []
    windows = FasterWhisperBackend._windows

    def counted(self, reqs):
        seen.append((id(self._model), reqs[0].hurried))
        return windows(self, reqs)

    monkeypatch.setattr(FasterWhisperBackend, "_windows", counted)
    made = make_backend(BackendConfig(cpu_threads=1, lanes=2, calibrate=False))
    try:
        assert set(seen) == {(id(m), hurried) for m in made._models for hurried in (True, False)}
        assert len(seen) == 4, "two decodes a lane, and no calibration rounds"
        assert made.calibration_seconds is None and made.full_decode_seconds is None
        assert len(made._models) == 2 and not hasattr(made._lane, "model")
    finally:
        made.close()


def test_a_calibration_known_beforehand_replaces_the_rounds(monkeypatch):
    """VOXLANE_CALIBRATION_SECONDS: the live node takes the cost it is given instead of timing rounds of batches
    on every lane, and still times the one full decode the pacer is seeded from (the machine's pace now)."""
    prompts = []
    windows = FasterWhisperBackend._windows

    def counted(self, reqs):
        prompts.extend(r.prompt for r in reqs)
        return windows(self, reqs)

    monkeypatch.setattr(FasterWhisperBackend, "_windows", counted)
    made = make_backend(BackendConfig(cpu_threads=1, lanes=2, calibration_s=0.25))
    try:
        assert prompts and CALIBRATION_PROMPT not in prompts, "warmed up, and no round of calibration speech read"
        assert made.calibration_seconds == 0.25
        assert made.full_decode_seconds is not None and made.full_decode_seconds > 0
    finally:
        made.close()


def test_a_batch_reads_each_window_as_it_reads_alone(backend, audio_dir):
    """Three streams' windows, one of them without a prompt, in one call: each gets its own words and word
    timings in its own window's time, as when decoded alone. (The two prompts are as long in tokens: a
    batch cuts its prompts to the shortest, so longer ones would read with less of theirs.)"""
    lj = load_pcm16k(audio_dir / "single/ljspeech_LJ001-0001_0016.wav")
    sonnet = load_pcm16k(audio_dir / "single/librivox_shakespeare_sonnet_001.wav")
    libri = load_pcm16k(audio_dir / "single/librispeech_1089-134686_1utt.wav")
    requests = [
        DecodeRequest(audio=lj[:5 * 16000], prompt=""),
        DecodeRequest(audio=sonnet[int(0.3 * 16000):int(6.5 * 16000)], prompt="Sonnet one."),
        DecodeRequest(audio=libri[: 4 * 16000], prompt="The first chapter."),
    ]
    together = backend.transcribe(requests)
    alone = [backend.transcribe([r])[0] for r in requests]
    assert len(together) == 3
    for request, batched, single in zip(requests, together, alone, strict=True):
        assert not batched.error
        assert _text(batched) == _text(single)
        # in its own window's time: starting within its audio, not shifted by the windows batched before it
        # (seconds). A word cut by the window's end may be stamped past it, and so may the piece after it:
        # the sonnet's window ends in "b-" at 6.2-6.38 s and "-" at 6.38-6.62 s on an Ice Lake Xeon (the
        # session clamps both to the window)
        assert batched.words and all(0.0 <= w.start <= len(request.audio) / 16000 + 0.5 and w.start <= w.end
                                     for w in batched.words)
        assert all(abs(b.start - a.start) < 0.1 and abs(b.end - a.end) < 0.1
                   for b, a in zip(batched.words, single.words, strict=True))
    # the other two open on speech (the sonnet's reader says "One." first, which its prompt already holds: the
    # word after it is stamped somewhere in that second, where depends on the CPU's int8 kernels)
    assert together[0].words[0].start < 0.5 and together[2].words[0].start < 0.5
    assert "printing" in _text(together[0]).lower()
    assert "creatures" in _text(together[1]).lower()


def test_a_window_that_read_no_text_leaves_its_batch_the_word_timings(backend, audio_dir):
    """faster-whisper's aligner reads every window's first segment; a window of the batch that read no text
    made it raise, and the whole batch went to the one-by-one fallback. It now gets no words, and the
    others their timings from the same pass."""
    model = backend._model
    tok = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en")
    speech = load_pcm16k(audio_dir / "single/ljspeech_LJ001-0001_0016.wav")
    windows = [speech[:3 * 16000], np.zeros(3 * 16000, dtype=np.float32)]
    encoded = model.encode(np.stack([pad_or_trim(model.feature_extractor(w)[..., :-1], 3000) for w in windows]))
    read = [[{"tokens": tok.encode(" Printing, in the only sense"), "start": 0.0, "end": 3.0, "seek": 0}], []]
    segments = backend._with_words(read, tok, encoded, [300, 300])
    words = [[w["word"].strip() for s in segs for w in s.get("words") or []] for segs in segments]
    assert words == [["Printing,", "in", "the", "only", "sense"], []]
    assert all(0.0 <= w["start"] <= w["end"] <= 3.0 for w in segments[0][0]["words"])


def test_a_prompt_that_loops_the_model_is_dropped(backend, audio_dir):
    """A window that starts inside a run of one word, prompted with that run, made the model repeat the
    word over the whole window: the speech after it was lost from the segment's final."""
    result = backend.transcribe([_looping(audio_dir)])[0]
    text = " ".join(w.text for w in result.words).lower()
    assert "thousand" in text and "thoughts" in text
    assert result.compression_ratio < 2.4


def test_a_loop_stops_at_its_windows_token_budget_and_is_read_again_from_the_same_encoding(backend, audio_dir,
                                                                                          counted):
    """A looping reading ran to the model's limit (224 tokens, 2.5 s on 2 cores for a 5 s window), and the
    reading without prompt encoded the same audio again: 3.9 s in all. It now stops at the window's budget,
    and the second reading reuses the encoder's output."""
    generated, encodes = counted
    result = backend.transcribe([_looping(audio_dir)])[0]
    text = _text(result).lower()
    assert "thousand" in text and "thoughts" in text and text.count("word") <= 2
    assert result.passes == 2
    budget = TOKENS_BASE + TOKENS_PER_SECOND * 5
    assert generated[0] == [budget]  # the loop, stopped
    assert len(generated) == 2 and generated[1][0] < budget  # read again without the prompt, to its end
    assert encodes == [1]


def test_speech_is_never_cut_by_the_budget(backend, audio_dir, counted):
    """The corpus's densest speech (LibriSpeech, 6.8 tokens a second over its whole file) reads to its end
    under the budget."""
    generated, _ = counted
    speech = load_pcm16k(audio_dir / "single/librispeech_61-70968-0000.wav")
    for seconds in (2, 3, 5):
        result = backend.transcribe([DecodeRequest(audio=speech[:seconds * 16000])])[0]
        assert result.words and generated[-1][0] < TOKENS_BASE + TOKENS_PER_SECOND * seconds
    assert "curtain on the left" in _text(result).lower()


def test_a_batch_reads_again_only_its_looping_window(backend, audio_dir, counted):
    """In a batch where one window loops, only that one is read again (encoded again alone: the batch's
    encoder output holds every window)."""
    generated, encodes = counted
    libri = load_pcm16k(audio_dir / "single/librispeech_1089-134686_1utt.wav")
    steady = DecodeRequest(audio=libri[:4 * 16000], prompt="The first chapter of the book, and the night.")
    alone = backend.transcribe([steady])[0]
    generated.clear()
    encodes.clear()
    looping, other = backend.transcribe([_looping(audio_dir), steady])
    assert "thousand" in _text(looping).lower() and looping.passes == 2
    assert _text(other) == _text(alone) and other.passes == 1
    assert encodes == [2, 1] and len(generated) == 2 and len(generated[1]) == 1
