"""What the live speaker relay tells subscribers about a final's words."""

from __future__ import annotations

import numpy as np

from asr.diarization import DiarizationConfig, Turn
from asr.vad import SileroModel
from protocol import Transcription
from protocol.messages import Diarization, Word
from server.pipeline.speaker_relay import LiveSpeakers


def _w(text: str, start: float, end: float) -> Word:
    return Word(text=text, start=start, end=end, probability=0.9, final=True)


def _relay() -> tuple[LiveSpeakers, list[Diarization]]:
    """A relay whose ``diarization`` messages are kept in the returned list (no worker: nothing is embedded)."""
    published: list[Diarization] = []

    async def publish(body: Diarization) -> None:
        published.append(body)

    async def save(_msg: Transcription) -> None:
        return None

    speakers = LiveSpeakers(worker=None, vad_model=SileroModel(), config=DiarizationConfig(), offset=0.0,  # type: ignore[arg-type]
                            publish=publish, save_segment=save)
    return speakers, published


async def test_words_aligned_to_an_instant_are_told_over_a_range_that_is_not_empty() -> None:
    """The aligner gives some words no extent ("I" at 9.024-9.024 s); a voice heard over two such words is still
    told with ``end_time`` after ``start_time``."""
    speakers, published = _relay()
    d = speakers.diarizer
    # voice 1 over the first second, voice 2 at the two zero-length words at 2.0 s; both long established
    d._centers, d._labels = [0.5, 1.0, 2.0], np.array([1, 1, 2])
    d._next_window = 12
    d.speaker_seconds = lambda: {1: 10.0, 2: 10.0}  # type: ignore[method-assign]
    words = [_w("yes", 0.3, 0.6), _w("I", 0.6, 0.8), _w("agree", 0.8, 1.2), _w("so", 2.0, 2.0), _w("I", 2.0, 2.0)]
    final = Transcription(text="yes I agree so I", confidence=0.9, segment_id="s1", is_final=True,
                          start=0.3, end=2.0, words=words)
    labelled = await speakers.label(final)
    assert labelled.speaker == "Speaker 1"
    assert [(m.speaker_id, m.start_time) for m in published] == [("S2", 2.0)]
    assert published[0].end_time > published[0].start_time


class _Timeline:
    """A diarizer as the relay reads it: turns, how far they are labelled, and the re-clustering count."""

    def __init__(self) -> None:
        self.config = DiarizationConfig()
        self.labelled_until = 0.0
        self.revision = 0
        self.now: list[Turn] = []

    def turns(self, start: float = 0.0, end: float | None = None) -> list[Turn]:
        return [t for t in self.now if t.end > start]


async def test_a_turn_that_began_in_told_time_is_told_when_it_ends() -> None:
    """A re-clustering moved a told turn's end back (a new voice took its last quarter second); the new voice's
    turn, which starts before where the told one ended, is told once it has ended, with no re-clustering then
    (it used to be taken for told, and subscribers never heard of that voice until the stream ended)."""
    speakers, published = _relay()
    d = speakers.diarizer = _Timeline()  # type: ignore[assignment]
    d.labelled_until, d.now = 44.0, [Turn(33.5, 40.64, 2)]
    await speakers._report(final=False)
    d.labelled_until, d.revision, d.now = 46.0, 1, [Turn(33.5, 40.384, 2), Turn(40.384, 45.9, 7)]
    await speakers._report(final=False)
    d.labelled_until, d.now = 50.0, [Turn(33.5, 40.384, 2), Turn(40.384, 47.36, 7), Turn(47.36, 47.49, 1)]
    await speakers._report(final=False)
    told = [(m.speaker_id, m.start_time, m.end_time, m.correction) for m in published]
    assert told == [("S2", 33.5, 40.64, False), ("S2", 33.5, 40.384, True), ("S7", 40.384, 47.36, True),
                    ("S1", 47.36, 47.49, False)]
    await speakers._report(final=False)  # nothing changed: nothing told twice
    assert len(published) == 4


async def test_a_stored_final_is_relabelled_by_the_rule_that_labelled_it_live() -> None:
    """A reading that stretched its first word over the voice before ("Oh" at 7.68-8.48 s, in the other voice's
    turn) and whose last word the turns give to the next voice: by the words' runs the final is the voice of
    most of it. Tallied by raw word length, the two stray words outweighed it in one run of the phone call and
    its stored speaker flipped, where a run whose reading wrote no "Oh" kept it."""
    speakers, _ = _relay()
    d = speakers.diarizer
    d._centers = [7.5 + 0.25 * k for k in range(12)]  # 7.5 .. 10.25 s
    d._labels = np.array([2, 2, 2, 2, 1, 1, 1, 1, 1, 2, 2, 2])  # voice 2 to 8.5 s and from 9.75 s
    d._next_window = 60
    d.speaker_seconds = lambda: {1: 10.0, 2: 10.0}  # type: ignore[method-assign]
    words = [_w("Oh", 7.68, 8.48), _w("hello,", 8.48, 8.84), _w("I", 8.96, 8.96), _w("didn't", 8.98, 9.24),
             _w("know", 9.24, 9.38), _w("you", 9.38, 9.48), _w("were", 9.50, 9.64), _w("there.", 9.64, 10.0)]
    final = Transcription(text="Oh hello, I didn't know you were there.", confidence=0.9, segment_id="s1",
                          is_final=True, start=7.68, end=10.0, words=words, speaker="Speaker 2")
    speakers._remember(final, 2)
    await speakers._relabel_segments()
    assert speakers._segments["s1"].row.speaker == "Speaker 1"


async def test_a_partial_is_told_again_when_the_labels_name_another_voice() -> None:
    """The first partial of a turn goes out under the voice before it (the new voice's audio is not labelled
    yet); once the labels name the new voice at its last word, that partial is sent again under it, and a
    partial whose segment has had its final is never sent again."""
    speakers, _ = _relay()
    sent: list[Transcription] = []

    async def deliver(msg: Transcription) -> None:
        sent.append(msg)

    emit = speakers.relay(deliver)
    d = speakers.diarizer
    d._centers, d._labels, d._next_window = [0.5, 1.0, 1.5], np.array([1, 1, 1]), 12
    partial = Transcription(text="well then", confidence=0.9, segment_id="s2", is_final=False, start=1.4, end=2.1,
                            words=[_w("well", 1.4, 1.7), _w("then", 1.8, 2.1)])
    await emit(partial)
    assert [m.speaker for m in sent] == ["Speaker 1"]
    await speakers._retell_partial()  # nothing new known: nothing sent
    assert len(sent) == 1
    d._centers, d._labels = [0.5, 1.0, 1.5, 1.75, 2.0], np.array([1, 1, 2, 2, 2])
    await speakers._retell_partial()
    assert [(m.speaker, m.text) for m in sent] == [("Speaker 1", "well then"), ("Speaker 2", "well then")]
    await speakers._retell_partial()  # told under the new voice already
    assert len(sent) == 2
    d.speaker_seconds = lambda: {1: 10.0, 2: 10.0}  # type: ignore[method-assign]
    await emit(partial.model_copy(update={"is_final": True}))
    d._labels = np.array([1, 1, 1, 1, 1])
    await speakers._retell_partial()
    assert [m.is_final for m in sent] == [False, False, True]


class _Worker:
    """The speaker worker's two calls, inline, counting the windows embedded."""

    def __init__(self) -> None:
        self.windows = 0
        self.window_stride = 1

    async def embed_batched(self, windows: list[np.ndarray]) -> np.ndarray:
        self.windows += len(windows)
        return np.ones((len(windows), 256), dtype=np.float32)

    async def run(self, fn, *args):
        return fn(*args)


async def test_a_partial_past_the_labelled_audio_starts_the_next_embedding_job_at_once() -> None:
    """Half-way between two jobs of the one-a-second cadence, a partial whose last word was said after the
    labelled audio embeds the windows heard so far now; one whose last word is labelled starts nothing."""
    speakers, _ = _relay()
    worker = speakers._worker = _Worker()  # type: ignore[assignment]
    emit = speakers.relay(_ignore)
    speakers.heard(np.zeros(16000 * 3, dtype=np.float32), np.ones(3 * 16000 // 512, dtype=np.float32))
    await speakers._job  # the cadence's job at 3 s of audio
    labelled, embedded = speakers.diarizer.labelled_until, worker.windows
    assert labelled > 2.5 and speakers._next_job_at > 3.9
    await emit(_partial(labelled - 0.5))
    assert speakers._job.done()
    speakers.heard(np.zeros(8000, dtype=np.float32), np.ones(8000 // 512, dtype=np.float32))  # 3.5 s heard
    await emit(_partial(labelled + 0.2))
    await speakers._job
    assert speakers.diarizer.labelled_until > labelled and worker.windows > embedded


async def _ignore(_msg: Transcription) -> None:
    return None


def _partial(last: float) -> Transcription:
    return Transcription(text="so then", confidence=0.9, segment_id="s1", is_final=False, start=last - 0.4,
                         end=last + 0.2, words=[_w("so", last - 0.4, last - 0.1), _w("then", last, last + 0.2)])
