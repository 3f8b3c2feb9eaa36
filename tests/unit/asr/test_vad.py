"""Where the speech tracker puts speech, from sequences of VAD probabilities (32 ms chunks)."""

import numpy as np

from asr.vad import CHUNK_SECONDS, SpeechTracker, VadConfig


def run(probs: list[float]) -> tuple[SpeechTracker, list[tuple[str, float]]]:
    tracker = SpeechTracker(VadConfig())
    return tracker, tracker.update(np.array(probs, np.float32))


def test_a_click_is_not_speech():
    tracker, events = run([0.0] * 10 + [0.9] * 3 + [0.02] * 20)
    assert events == [] and tracker.speech_end is None


def test_a_whisper_dipping_between_its_peaks_is_speech():
    # peaks above the threshold for under the minimum length, the rest between the two thresholds
    whisper = [0.57, 0.63, 0.76, 0.55, 0.33, 0.36, 0.31, 0.26, 0.37, 0.23, 0.18, 0.15, 0.2]
    tracker, events = run([0.0] * 10 + whisper + [0.0] * 5)
    assert [kind for kind, _ in events] == ["speech_start"]
    assert abs(events[0][1] - 10 * CHUNK_SECONDS) < 1e-6
    assert abs(tracker.speech_end - 23 * CHUNK_SECONDS) < 1e-6


def test_speech_after_a_short_pause_resumes_at_once():
    # a 0.3 s pause inside an utterance, then one chunk of speech: it counts, where a new onset would not
    tracker, _ = run([0.9] * 10 + [0.0] * 10 + [0.8] + [0.0] * 3)
    assert abs(tracker.speech_end - 21 * CHUNK_SECONDS) < 1e-6
    # after a long pause a single chunk is a click again
    tracker, _ = run([0.9] * 10 + [0.0] * 40 + [0.8] + [0.0] * 3)
    assert abs(tracker.speech_end - 10 * CHUNK_SECONDS) < 1e-6


class CountingModel:
    """The real Silero model, counting the chunks it is asked about."""

    def __init__(self) -> None:
        from asr.vad import SileroModel

        self.model, self.calls = SileroModel(), 0

    def run(self, frames: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        return self.model.run(frames, state)


def test_silence_after_silence_is_not_asked_of_the_model():
    """A connected stream that says nothing costs almost nothing: digital silence and a -90 dBFS noise floor after a
    chunk the model called silence are silence without a model run; speech after it is heard as before."""
    from asr.vad import CHUNK, QUIET_RUN, VadStream
    from server.cli.live_client import load_pcm16k
    from tests.conftest import AUDIO

    counting = CountingModel()
    vad = VadStream(counting)  # type: ignore[arg-type]
    quiet = np.concatenate([np.zeros(16000 * 5, np.float32), (np.random.default_rng(1).standard_normal(16000 * 5)
                                                               * 3e-5).astype(np.float32)])
    assert (vad.process(quiet) < 0.05).all()
    assert counting.calls <= QUIET_RUN + 1  # the first second is read: a pause, or the start of a silence
    speech = load_pcm16k(AUDIO / "single/jfk_inaugural_1961_excerpt.wav")
    gated, plain = vad.process(speech), VadStream(counting.model).process(speech)  # type: ignore[arg-type]
    onset = lambda probs: int(np.argmax(probs >= VadConfig().threshold))  # noqa: E731
    assert abs(onset(gated) - onset(plain)) <= 1
    # inside speech the model is asked even about a chunk of digital zeros: its memory still hears speech there
    loud = int(np.argmax(plain > 0.5))
    fresh = VadStream(counting)  # type: ignore[arg-type]
    assert fresh.process(speech[:(loud + 1) * CHUNK])[-1] > 0.5
    calls = counting.calls
    fresh.process(np.zeros(CHUNK, np.float32))
    assert counting.calls == calls + 1


def test_streams_scored_together_read_as_each_alone_in_fewer_model_calls():
    """Four streams (speech, silence, speech started late, a stream whose frames end mid-chunk) in 100 ms frames:
    their chunks scored together give each the probabilities it gets alone, in a fraction of the model calls."""
    from asr.vad import VadStream, score_together
    from server.cli.live_client import load_pcm16k
    from tests.conftest import AUDIO

    speech = load_pcm16k(AUDIO / "single/jfk_inaugural_1961_excerpt.wav")[:16000 * 4]
    audio = [speech, np.zeros_like(speech), np.concatenate([np.zeros(8000, np.float32), speech[:-8000]]),
             speech[:-700]]
    counting = CountingModel()
    alone = [VadStream(counting.model).process(a) for a in audio]  # type: ignore[arg-type]
    streams = [VadStream(counting) for _ in audio]  # type: ignore[arg-type]
    together: list[list[np.ndarray]] = [[] for _ in audio]
    for k in range(0, len(speech), 1600):
        for out, probs in zip(together, score_together(counting, [s.steps(a[k:k + 1600])  # type: ignore[arg-type]
                                                                   for s, a in zip(streams, audio, strict=True)]),
                              strict=True):
            out.append(probs)
    for one, parts in zip(alone, together, strict=True):
        np.testing.assert_allclose(np.concatenate(parts), one, atol=1e-5)
    chunks = sum(len(p) for p in alone)
    assert counting.calls < chunks / 2
