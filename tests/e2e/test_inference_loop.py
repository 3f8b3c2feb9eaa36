"""The dedicated inference loop's schedule, driven with the real bundled model."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from asr.backends import DecodedWord, DecodeRequest, DecodeResult
from asr.backends.faster_whisper import FasterWhisperBackend
from asr.inference import InferenceLoop, Priority
from asr.policy import TimedWord
from asr.segment_book import _WORD_START_SLACK_S
from asr.session import StreamConfig, StreamSession
from asr.stream_state import Segment
from asr.vad import SileroModel
from asr.window_planner import Plan
from bench.replay import DecodeCost, replay_level, simulated_loop
from server.cli.live_client import load_pcm16k
from server.pipeline.convert import wire_emit
from tests.read_once import ReadOnce


@pytest.fixture(scope="module")
def engine():
    loop = InferenceLoop(FasterWhisperBackend(cpu_threads=2))
    loop.start()
    yield loop
    loop.stop()


@pytest.fixture(scope="module")
def model(engine):
    """The real model for the replays, each window read once in this file: the replays of one recording share
    their first windows (a replay on another clock, a config that differs later on, a backend that fails after
    four reads). One request at a time, as the replays were written against."""
    return ReadOnce(engine.backend, max_batch=1)


async def test_priorities_coalescing_and_fairness(engine, audio_dir):
    speech = load_pcm16k(audio_dir / "single/librispeech_61-70968-0000.wav")
    order: list[str] = []

    def build(name: str, audio: np.ndarray = speech[:16000]):
        def _build():
            order.append(name)
            return DecodeRequest(audio=audio), name
        return _build

    # occupy the loop, then queue work of every priority while it is busy
    blocker = engine.schedule("blocker", Priority.PARTIAL, build("blocker", speech))
    await asyncio.sleep(0.05)
    bulk = engine.schedule("upload", Priority.BULK, build("upload"))
    partial = engine.schedule("live-a", Priority.PARTIAL, build("live-a-stale"))
    again = engine.schedule("live-a", Priority.PARTIAL, build("live-a-fresh"))  # coalesces
    final = engine.schedule("live-b", Priority.FINAL, build("live-b"))
    assert again is partial
    results = await asyncio.gather(blocker, bulk, partial, final)
    assert order == ["blocker", "live-b", "live-a-fresh", "upload"]
    assert results[2][1] == "live-a-fresh"  # the context of the build that actually ran comes back
    text = " ".join(w.text for w in results[0][0].words).lower()
    assert "paris" in text or "robin" in text or len(text.split()) > 3

    # within one priority the session served least recently goes first
    order.clear()
    blocker = engine.schedule("live-a", Priority.PARTIAL, build("live-a"))
    await asyncio.sleep(0.05)
    futures = [engine.schedule(k, Priority.PARTIAL, build(k)) for k in ("live-a2", "blocker", "live-c")]
    await asyncio.gather(blocker, *futures)
    # "live-c" and "live-a2" were never served; "blocker" was served in the first round
    assert order[0] == "live-a" and order[-1] == "blocker"


async def test_build_returning_nothing_and_errors(engine):
    assert await engine.schedule("idle", Priority.PARTIAL, lambda: None) is None

    def broken():
        raise ValueError("session bug")

    with pytest.raises(ValueError):
        await engine.schedule("broken", Priority.PARTIAL, broken)
    # the loop survives a failing build and keeps serving
    out = await engine.schedule("after", Priority.FINAL, lambda: (DecodeRequest(np.zeros(8000, np.float32)), 1))
    assert out is not None and out[1] == 1


async def test_a_long_segment_splits_after_its_committed_words(engine):
    """Words shown final in a segment stay in it: the split is after the last committed word, even when
    an earlier word ends a sentence, and the uncommitted tail carries over to the next segment. The next
    window starts at the last final words (a word's end timestamp may be late; here the last 0.5 s of them),
    which the prompt leaves out."""
    session = StreamSession(engine=engine, vad_model=SileroModel(), emit=_ignore,
                            config=StreamConfig(split_context_s=0.5))
    session.state.history = "It ends. And goes"
    seg = Segment(id="a", start=0.0, window_start=0.0)
    seg.hyp.committed = [TimedWord("It", 0.0, 0.2, 0.9), TimedWord("ends.", 0.3, 0.6, 0.9),
                         TimedWord("And", 0.9, 1.1, 0.9), TimedWord("goes", 1.2, 1.5, 0.9)]
    seg.hyp.tentative = [TimedWord("on", 1.6, 1.8, 0.5)]
    session.state.open = seg
    session.book.split(seg)
    closed, nxt = session.state.closing[0], session.state.open
    assert [w.text for w in closed.hyp.committed] == ["It", "ends.", "And", "goes"]
    assert closed.end == 1.5
    assert nxt is not None and nxt.start == 1.5 and not nxt.hyp.committed
    assert [w.text for w in nxt.hyp.tentative] == ["on"]
    assert nxt.window_start == 1.2 and [w.text for w in nxt.hyp.anchor] == ["goes"]
    assert session.planner.prompt(nxt) == "It ends. And"
    # the new window hears "goes" again: it lines up with the anchor and is not committed twice
    done = nxt.hyp.agree([TimedWord("goes", 1.2, 1.45, 0.9), TimedWord("on", 1.45, 1.8, 0.9)])
    assert [w.text for w in done] == ["on"]


async def test_a_pause_read_late_is_read_up_to_the_pause(engine):
    """A pause whose decode found no lane free before the speaker went on is still read up to the pause and its
    pad, not through the words after it: read on into the next clause, "by a similar process." lost its full
    stop, and its segment waited 6 s for the next sentence end (LJ Speech at four streams on 2 cores)."""
    session = StreamSession(engine=engine, vad_model=SileroModel(), emit=_ignore)
    session.state.buffer.append(np.zeros(5 * 16000, np.float32))  # 5 s heard
    tr = session.state.tracker
    tr.t, tr.in_speech, tr.speech_end = 5.0, True, 5.0  # speaking again since 2.45 s
    seg = Segment(id="a", start=0.0, window_start=0.0, pauses={2.0: 0.45}, pending_pause=2.0)
    seg.hyp.committed = [TimedWord("Woodcutters", 0.0, 0.8, 0.9)]
    seg.hyp.tentative = [TimedWord("by", 1.2, 1.4, 0.9), TimedWord("process", 1.5, 1.95, 0.9),
                         TimedWord("produced", 2.5, 3.0, 0.9)]
    session.state.open = seg
    with session.state.lock:
        plan = session.planner.plan()
        assert plan is not None and plan.kind == Priority.ENDPOINT
        # the pause's speech end, with the slack a late-stamped last word is given (see _WORD_START_SLACK_S)
        assert plan.speech_end == 2.0 and plan.commit_before == pytest.approx(2.0 + _WORD_START_SLACK_S)
        assert plan.end == pytest.approx(2.0 + session.config.vad.speech_pad_s)
        assert session.planner.window_end(plan) == plan.end


async def test_a_sentence_end_committed_with_the_next_words_still_closes_its_segment(engine):
    """A reading may commit a sentence's end and the next sentence's first words at once ("design. Okay, I"):
    the segment closes at the sentence end, and the words after it, not yet told final, open the next segment
    already committed. A word told final never leaves its segment: a sentence end before one is no cut."""
    config = StreamConfig(sentence_split_s=2.0, split_context_s=1.5)
    session = StreamSession(engine=engine, vad_model=SileroModel(), emit=_ignore, config=config)
    words = [TimedWord("Well,", 0.0, 0.3, 0.9), TimedWord("I", 0.4, 0.5, 0.9), TimedWord("need", 0.6, 0.9, 0.9),
             TimedWord("the", 1.0, 1.2, 0.9), TimedWord("design.", 1.3, 2.2, 0.9), TimedWord("Okay,", 2.3, 2.6, 0.9),
             TimedWord("I", 2.6, 2.7, 0.9)]
    seg = Segment(id="a", start=0.0, window_start=0.0)
    seg.hyp.committed = list(words)
    seg.hyp.tentative = [TimedWord("thought", 2.8, 3.0, 0.5)]
    seg.final_told = 3  # "the design. Okay, I" were committed by the reading being applied
    assert session.book.sentence_end(seg) is None  # closed already (its final re-reading its tail): it has its final
    session.state.open = seg
    seg.final_told = 7  # every committed word was shown final here: they stay
    assert session.book.sentence_end(seg) is None
    seg.final_told = 3
    assert session.book.sentence_end(seg) == 5
    session.book.split(seg, 5)
    closed, nxt = session.state.closing[0], session.state.open
    assert [w.text for w in closed.hyp.committed] == ["Well,", "I", "need", "the", "design."] and closed.end == 2.2
    assert nxt is not None and nxt.start == 2.2
    assert [w.text for w in nxt.hyp.committed] == ["Okay,", "I"] and [w.text for w in nxt.hyp.tentative] == ["thought"]
    # the next window opens on the last 1.5 s of the closed segment's words: a reading that starts at the
    # sentence's last word loses the next one ("if the reader will", "it is of the" read without their first word)
    assert [w.text for w in nxt.hyp.anchor] == ["the", "design."] and nxt.window_start == 1.0
    # a segment shorter than sentence_split_s does not close at its sentence end
    short = Segment(id="b", start=1.0, window_start=1.0)
    short.hyp.committed = words[3:6]
    session.state.open = short
    assert session.book.sentence_end(short) is None


async def _ignore(_message) -> None:
    return None


def test_speech_after_an_early_text_end_is_read(engine, audio_dir):
    """The model may close its text with a final timestamp well before the window ends ("... and
    thou" with "feel'st it cold" still to come): that unread tail is decoded in a second pass."""
    speech = load_pcm16k(audio_dir / "single/librivox_shakespeare_sonnet_002.wav")
    request = DecodeRequest(audio=speech[int(45.22 * 16000):int(52.93 * 16000)])
    result = engine.backend.transcribe([request])[0]
    text = " ".join(w.text for w in result.words).lower()
    assert "blood" in text and "cold" in text
    assert result.passes == 2
    assert len(request.audio) / 16000 - result.words[-1].end < 1.0


def test_speech_after_a_stretched_last_word_is_read(engine, audio_dir):
    """The model may also close its text with a timestamp at the window's end while skipping the speech before
    it: the aligner then stretches the last word it wrote over that speech ("posterity." over 1.5 s, with "Thou
    art thy mother's glass" unread; a final that lost "thine image dies with thee" behind "and" stamped
    48.31-51.14 s). That word is read again with what follows it."""
    speech = load_pcm16k(audio_dir / "single/librivox_shakespeare_sonnet_003.wav")
    result = engine.backend.transcribe([DecodeRequest(audio=speech[25 * 16000:33 * 16000])])[0]
    text = "".join(w.text for w in result.words).lower()
    assert "posterity" in text and "mother's glass" in text, text
    assert result.passes == 2
    assert all(w.end - w.start < 1.2 for w in result.words[-3:])


def _replay(name: str, audio: dict[str, np.ndarray], backend, config: StreamConfig | None = None,
            cost: DecodeCost | None = None, vad: SileroModel | None = None):
    """One stream through the live pipeline on the replay bench's simulated clock: (files, records, busy)."""
    loop = simulated_loop()
    try:
        return loop.run_until_complete(replay_level(1, [name], audio, backend, vad or SileroModel(),
                                                    config or StreamConfig(), cost or DecodeCost()))
    finally:
        loop.close()


def test_the_replay_bench_is_reproducible(engine, audio_dir, references):
    """``voxlane bench --replay`` runs the live pipeline on a simulated clock: the same run twice gives the
    same messages at the same times, and a slower modelled decode shows in the latencies, not in noise."""
    from bench.command import level_figures

    name = "single/librispeech_61-70968-0000.wav"
    audio = {name: load_pcm16k(audio_dir / name)}
    vad = SileroModel()

    def run(cost: DecodeCost):
        files, records, busy = _replay(name, audio, engine.backend, cost=cost, vad=vad)
        # everything but the wall-clock timestamp and the random segment ids
        received = [(round(r.t, 6), r.type, {k: v for k, v in r.data.items() if k not in ("timestamp", "segment_id")})
                    for r in records[0].received]
        return level_figures(1, files, records, references), received, busy

    fast, fast_msgs, busy = run(DecodeCost(0.3, 0.015))
    again, again_msgs, _ = run(DecodeCost(0.3, 0.015))
    slow, _, _ = run(DecodeCost(1.2, 0.05))
    assert fast_msgs == again_msgs and fast["commit_latency_p50"] == again["commit_latency_p50"]
    assert any(kind == "transcription" and data["is_final"] for _, kind, data in fast_msgs)
    assert fast["wer"] is not None and fast["wer"] < 0.15
    assert 0 < busy < 1
    assert slow["commit_latency_p50"] > fast["commit_latency_p50"]


def test_agreement_waits_for_a_window_long_enough_to_read(model, audio_dir):
    """At the start of a stream the model reads its first words from a second or two of audio with no
    prompt, and two such readings agree on a wrong word ("That" read "Let"): no word is committed by
    agreement until the window holds ``min_commit_window_s`` of audio; the words then come final at once."""
    name = "single/librispeech_1089-134686_1utt.wav"
    audio = {name: load_pcm16k(audio_dir / name)}
    config = StreamConfig()
    _, records, _ = _replay(name, audio, model, config=config)
    partials = [r for r in records[0].received if r.type == "transcription" and not r.data["is_final"]]
    first_word = partials[0].data["words"][0]["start"]
    with_final = [r for r in partials if any(w["final"] for w in r.data["words"])]
    assert with_final, "words must become final while the speaker is still talking"
    first_commit = min(r.t for r in with_final) - records[0].started
    assert first_commit >= first_word - config.lead_in_s + config.min_commit_window_s
    assert first_commit < audio[name].size / 16000


def test_a_segment_after_a_pause_reads_on_from_the_last_words(model, audio_dir):
    """Slow speech with pauses long enough to close a segment ("This one Montreal." / "is going to be
    forced." / "Very bad aligner."): each later segment's window starts at the closing words of the one
    before, so it is not a cold reading and its words come final while it is still open, and the lent
    words are not repeated in it."""
    name = "single/mfa_hard_cases_whisper_falsetto_fillers.wav"
    speech = load_pcm16k(audio_dir / name)[int(14.9 * 16000):int(25.0 * 16000)]
    audio = {name: np.concatenate([speech, np.zeros(16000, np.float32)])}
    _, records, _ = _replay(name, audio, model)
    messages = [r.data for r in records[0].received if r.type == "transcription"]
    finals = [m for m in messages if m["is_final"]]
    assert len(finals) >= 3, [m["text"] for m in finals]
    for before, seg in zip(finals, finals[1:], strict=False):
        partials = [m for m in messages if m["segment_id"] == seg["segment_id"] and not m["is_final"]]
        assert any(w["final"] for m in partials for w in m["words"]), seg["text"]
        assert seg["words"][0]["start"] >= before["words"][-1]["end"] - 0.05, (before["text"], seg["text"])
    assert "forced" in finals[1]["text"].lower() and "aligner" in finals[2]["text"].lower()


async def test_a_pause_is_not_read_twice(engine):
    """In a pause the window ends at the speech, so a second decode of it reads the same audio the same
    way: it would only count as a second opinion that agrees. Nothing is decoded until speech resumes
    or the segment closes."""
    session = StreamSession(engine=engine, vad_model=SileroModel(), emit=_ignore)
    session.state.buffer.append(np.zeros(int(1.6 * 16000), np.float32))
    seg = Segment(id="a", start=0.0, window_start=0.0)
    seg.hyp.tentative = [TimedWord("word", 0.5, 1.0, 0.3)]
    session.state.open = seg
    tracker = session.state.tracker
    tracker.in_speech, tracker.speech_end, tracker.t = False, 1.0, 1.6
    seg.decoded_to = 0.9
    plan = session.planner.plan()
    assert plan is not None and plan.kind == Priority.PARTIAL
    seg.decoded_to = 1.0 + session.config.vad.speech_pad_s  # that decode ran, up to the pad after the speech
    assert session.planner.plan() is None


async def test_a_refresh_that_holds_the_pause_weighs_unsure_words_as_a_pause_commit(engine):
    """A refresh decoded after the pause began commits the words before the pause, as the pause's own
    decode does: a word the model is unsure of and the previous hypothesis did not have waits for the next
    reading or the final, rather than being taken on the agreement of this reading with itself."""
    session = StreamSession(engine=engine, vad_model=SileroModel(), emit=_ignore)
    session.state.buffer.append(np.zeros(6 * 16000, np.float32))
    seg = Segment(id="a", start=0.0, window_start=0.0)
    seg.hyp.tentative = [TimedWord("going", 3.0, 3.4, 0.9)]  # the previous reading, before the last word
    session.state.open = seg
    plan = Plan(seg, Priority.PARTIAL, end=5.4, commit_before=5.0)
    reading = DecodeResult(words=[DecodedWord(" going", 3.0, 3.4, 0.9), DecodedWord(" home", 3.5, 4.9, 0.3)])
    await session.reader.apply(plan, 0.0, reading, "")
    assert [w.text for w in seg.hyp.committed] == ["going"]
    assert [w.text for w in seg.hyp.tentative] == ["home"]


def test_a_closing_segment_is_not_read_again(model, audio_dir):
    """A short utterance's pause is read (its window too short to commit from, the words stay tentative:
    here no pause settles them before the segment closes) and the segment then closes on that same audio:
    its final is that reading, with no second decode of the same window and prompt queued behind other
    streams."""
    name = "single/mfa_hard_cases_whisper_falsetto_fillers.wav"
    speech = load_pcm16k(audio_dir / name)[: int(2.6 * 16000)]  # "This is all very high pitched."
    audio = {name: np.concatenate([speech, np.zeros(2 * 16000, np.float32)])}
    backend = _Recording(model)
    config = StreamConfig()
    config.pause_settle_s = config.min_silence_s + 1.0
    _, records, _ = _replay(name, audio, backend, config=config)
    messages = [r.data for r in records[0].received if r.type == "transcription"]
    final = [m for m in messages if m["is_final"]]
    assert len(final) == 1 and "pitched" in final[0]["text"].lower()
    last_partial = [m for m in messages if not m["is_final"]][-1]
    assert not any(w["final"] for w in last_partial["words"])  # the young segment committed nothing early
    assert [w["text"] for w in final[0]["words"]] == [w["text"] for w in last_partial["words"]]
    assert len(backend.seen) == len(set(backend.seen)), "a window was decoded twice with the same prompt"


def test_a_pause_read_while_the_segment_closes_is_its_final(model, audio_dir):
    """On a slow machine the decode of a pause can finish after the pause has closed the segment. That
    decode read the window the final reads (both end at the speech and its pad), so it is taken as the
    final's reading: the segment's final comes as the decode ends, not after a second decode of the same
    window and prompt."""
    name = "single/mfa_hard_cases_whisper_falsetto_fillers.wav"
    speech = load_pcm16k(audio_dir / name)[int(14.9 * 16000):int(25.0 * 16000)]  # three slow lines, long pauses
    audio = {name: np.concatenate([speech, np.zeros(2 * 16000, np.float32)])}
    backend = _Recording(model)
    config = StreamConfig()
    slow = DecodeCost(fixed=0.9, per_second=0.0)  # a pause's decode ends 0.25 + 0.9 s after the speech
    assert config.pause_commit_s + slow.fixed > config.min_silence_s
    _, records, _ = _replay(name, audio, backend, config=config, cost=slow)
    finals = [r.data for r in records[0].received if r.type == "transcription" and r.data["is_final"]]
    assert len(finals) >= 3 and "aligner" in finals[-1]["text"].lower(), [f["text"] for f in finals]
    assert len(backend.seen) == len(set(backend.seen)), "a window was decoded twice with the same prompt"


def test_a_final_whose_decode_fails_keeps_the_words_read_so_far(model, audio_dir):
    """The backend can fail on a window (a CUDA error, a batch that runs out of memory). A failed partial
    leaves the hypothesis as it was, and a failed final closes the segment on its latest reading: the
    words the subscribers were shown are stored, not dropped."""
    name = "single/librispeech_61-70968-0000.wav"
    audio = {name: np.concatenate([load_pcm16k(audio_dir / name), np.zeros(2 * 16000, np.float32)])}
    backend = _FailingAfter(model, reads=4)
    _, records, _ = _replay(name, audio, backend)
    messages = [r.data for r in records[0].received if r.type == "transcription"]
    assert backend.failed > 1, "no decode failed: the test reads nothing"
    partials = [m for m in messages if not m["is_final"]]
    finals = [m for m in messages if m["is_final"]]
    assert partials and len(finals) == 1
    assert [w["text"] for w in finals[0]["words"]] == [w["text"] for w in partials[-1]["words"]]
    assert len(finals[0]["words"]) >= 5
    # the subscribers are told once, not once per failed window, and the stream goes on
    errors = [r.data for r in records[0].received if r.type == "error"]
    assert len(errors) == 1 and errors[0]["code"] == "TRANSCRIPTION_FAILED" and errors[0]["recoverable"]
    assert "out of memory" in errors[0]["message"]


def test_a_stream_whose_session_breaks_stores_what_it_showed(model, audio_dir):
    """A bug in the session's own code (here: a reading it cannot handle) stops that stream's
    transcription: its open segment is closed on the words its partials showed, and the subscribers get an
    error that says the stream's transcription stopped, instead of silence and a segment never stored."""
    name = "single/librispeech_61-70968-0000.wav"
    audio = {name: np.concatenate([load_pcm16k(audio_dir / name), np.zeros(2 * 16000, np.float32)])}
    backend = _FailingAfter(model, reads=4, broken=DecodeResult(words=[DecodedWord(None, 0, 1, 1)]))
    _, records, _ = _replay(name, audio, backend)
    received = [r for r in records[0].received if r.type in ("transcription", "error")]
    assert [r.type for r in received][-2:] == ["transcription", "error"]
    partials = [r.data for r in received if r.type == "transcription" and not r.data["is_final"]]
    final, error = received[-2].data, received[-1].data
    assert final["is_final"] and final["words"]
    assert [w["text"] for w in final["words"]] == [w["text"] for w in partials[-1]["words"]]
    assert error["code"] == "TRANSCRIPTION_FAILED" and not error["recoverable"]


class _FailingAfter:
    """The real backend for the first ``reads`` windows, then a backend that fails on every one (or gives
    ``broken`` for each)."""

    name, max_batch = "failing", 1

    def __init__(self, backend, reads: int, broken: DecodeResult | None = None) -> None:
        self.backend, self.reads, self.failed, self.broken = backend, reads, 0, broken

    def transcribe(self, requests):
        if self.reads > 0:
            self.reads -= len(requests)
            return self.backend.transcribe(requests)
        self.failed += len(requests)
        if self.broken is not None:
            return [self.broken for _ in requests]
        return [DecodeResult(error="RuntimeError: CUDA failed with error out of memory") for _ in requests]

    def close(self) -> None:
        pass


class _Recording:
    """The real backend, noting each window and prompt it is asked to read."""

    name, max_batch = "recording", 1

    def __init__(self, backend) -> None:
        self.backend = backend
        self.seen: list[tuple[bytes, str]] = []

    def transcribe(self, requests):
        self.seen += [(r.audio.tobytes(), r.prompt) for r in requests]
        return self.backend.transcribe(requests)

    def close(self) -> None:
        pass


async def test_decodes_others_wait_for_are_hurried(engine, audio_dir):
    """While live work of other streams waits, the loop marks a batch hurried and the backend encodes the
    window with a pad of silence instead of 30 s: the words still read right; alone, a stream's decode
    is never hurried, and uploads waiting behind live work do not hurry it."""
    speech = load_pcm16k(audio_dir / "single/librispeech_61-70968-0000.wav")[: 4 * 16000]
    seen: dict[str, DecodeRequest] = {}

    def build(name: str):
        def _build():
            seen[name] = DecodeRequest(audio=speech)
            return seen[name], name
        return _build

    alone = await engine.schedule("solo", Priority.PARTIAL, build("solo"))
    assert not seen["solo"].hurried
    blocker = engine.schedule("live-a", Priority.PARTIAL, build("blocker"))
    await asyncio.sleep(0.05)
    upload = engine.schedule("upload", Priority.BULK, build("upload"))
    first = engine.schedule("live-b", Priority.PARTIAL, build("first"))
    second = engine.schedule("live-c", Priority.PARTIAL, build("second"))
    results = await asyncio.gather(blocker, first, second, upload)
    assert seen["first"].hurried and not seen["second"].hurried and not seen["upload"].hurried
    backend = engine.backend
    assert backend.encoder_seconds([seen["first"]]) == 4 + backend.hurried_pad_s
    assert backend.encoder_seconds([seen["second"]]) == 30
    assert _words(results[1]) == _words(alone) == _words(results[2])


async def test_a_machine_too_slow_for_the_step_hurries_a_lone_stream(audio_dir):
    """Once full decodes of a lone stream take longer than the live step on this machine, its refreshes are
    hurried with no other stream waiting, and read the same words; a pause's reading and a final, which commit
    what stays, and uploads still get the full input."""
    speech = load_pcm16k(audio_dir / "single/librispeech_61-70968-0000.wav")[: 4 * 16000]
    loop = InferenceLoop(FasterWhisperBackend(cpu_threads=2), step_s=0.001)  # no CPU keeps to a 1 ms step
    loop.start()
    seen: list[DecodeRequest] = []

    def build():
        seen.append(DecodeRequest(audio=speech))
        return seen[-1], None

    try:
        full = [await loop.schedule("solo", Priority.PARTIAL, build) for _ in range(5)]
        assert not any(r.hurried for r in seen) and loop.pace.behind
        hurried = await loop.schedule("solo", Priority.PARTIAL, build)
        assert seen[-1].hurried
        for urgent in (Priority.ENDPOINT, Priority.FINAL):
            await loop.schedule("solo", urgent, build)
            assert not seen[-1].hurried, urgent
        await loop.schedule("upload", Priority.BULK, build)
        assert not seen[-1].hurried
    finally:
        loop.stop()
    assert _words(hurried) == _words(full[0])


class _RejectsOne:
    """The real backend, except that a batch holding the window ``bad`` raises (a GPU out of memory on the
    longest window, a remote server that rejects one stream's audio)."""

    name, lanes, max_batch = "rejects-one", 1, 4

    def __init__(self, backend, bad: np.ndarray) -> None:
        self.backend, self.bad = backend, bad.tobytes()
        self.batches: list[int] = []

    def transcribe(self, requests):
        self.batches.append(len(requests))
        if any(r.audio.tobytes() == self.bad for r in requests):
            raise RuntimeError("CUDA failed with error out of memory")
        return self.backend.transcribe(requests)

    def close(self) -> None:
        pass


async def test_a_window_the_backend_fails_on_fails_alone(engine, audio_dir):
    """A batch the backend raises on is read again a window at a time: the streams batched with the one
    window it cannot read get their readings, and only that one gets the error."""
    speech = load_pcm16k(audio_dir / "single/librispeech_61-70968-0000.wav")
    windows = {k: speech[i * 16000: (i + 2) * 16000] for i, k in enumerate(["blocker", "a", "bad", "b"])}
    backend = _RejectsOne(engine.backend, windows["bad"])
    loop = InferenceLoop(backend)
    loop.start()
    try:
        blocker = loop.schedule("blocker", Priority.PARTIAL, lambda: (DecodeRequest(windows["blocker"]), "blocker"))
        await asyncio.sleep(0.05)  # the three below wait behind it and are taken as one batch
        batched = [loop.schedule(k, Priority.PARTIAL, lambda k=k: (DecodeRequest(windows[k]), k))
                   for k in ("a", "bad", "b")]
        results = await asyncio.gather(blocker, *batched)
    finally:
        loop.stop()
    assert backend.batches == [1, 3, 1, 1, 1]
    a, bad, b = (r[0] for r in results[1:])
    assert "out of memory" in bad.error and not bad.words
    for k, result in (("a", a), ("b", b)):
        alone = await engine.schedule(f"alone-{k}", Priority.PARTIAL, lambda k=k: (DecodeRequest(windows[k]), k))
        assert not result.error and result.words and _words((result,)) == _words(alone)


def _words(result) -> list[str]:
    return [w.text.strip(" .,").lower() for w in result[0].words]


class _Timed:
    """The real backend, noting which thread ran each call and when; ``hold``: the first call waits for it."""

    name, max_batch = "timed", 1

    def __init__(self, backend, hold: threading.Event | None = None) -> None:
        self.backend, self.lanes, self.hold = backend, backend.lanes, hold
        self.calls: list[tuple[str, float, float, bytes]] = []
        self.held = threading.Event()

    def transcribe(self, requests):
        t0 = time.monotonic()
        if self.hold is not None and not self.held.is_set():
            self.held.set()
            assert self.hold.wait(60)
        out = self.backend.transcribe(requests)
        self.calls.append((threading.current_thread().name, t0, time.monotonic(), requests[0].audio.tobytes()))
        return out

    def close(self) -> None:
        pass


async def test_a_two_lane_backend_decodes_two_streams_at_once(engine, audio_dir):
    """Two lanes take two streams' work at once (on a CPU CTranslate2 leaves much of two cores idle in one
    decode); a stream's refreshes never run two at once, so its windows are read in order; a decode with a
    lane free beside it is not hurried; and what each lane reads is what one decode alone reads."""
    speech = load_pcm16k(audio_dir / "single/librispeech_61-70968-0000.wav")
    windows = {k: speech[i * 16000: (i + 4) * 16000] for i, k in enumerate("abcd")}
    backend = _Timed(FasterWhisperBackend(cpu_threads=2, lanes=2))
    loop = InferenceLoop(backend)
    assert loop.lanes == 2
    loop.start()
    seen: dict[str, DecodeRequest] = {}
    built = threading.Event()

    def build(name: str, audio: np.ndarray):
        def _build():
            seen[name] = DecodeRequest(audio=audio)
            built.set()
            return seen[name], name
        return _build

    try:
        pair = await asyncio.gather(*(loop.schedule(k, Priority.PARTIAL, build(k, windows[k])) for k in "ab"))
        assert loop.stats.max_lanes_busy == 2 and not any(r.hurried for r in seen.values())
        (_, a0, a1, _), (_, b0, b1, _) = sorted(backend.calls, key=lambda c: c[1])
        assert b0 < a1, "the second stream's decode started while the first one ran"
        assert len({c[0] for c in backend.calls}) == 2

        # stream "c" asks again while its decode runs: the second one waits for the first, on either lane
        backend.calls.clear()
        built.clear()
        first = loop.schedule("c", Priority.PARTIAL, build("c1", windows["c"]))
        assert await asyncio.to_thread(built.wait, 30)
        other = loop.schedule("d", Priority.PARTIAL, build("d", windows["d"]))
        again = loop.schedule("c", Priority.PARTIAL, build("c2", windows["a"]))
        await asyncio.gather(first, other, again)
        c1, c2 = (next(c for c in backend.calls if c[3] == seen[k].audio.tobytes()) for k in ("c1", "c2"))
        assert c2[1] >= c1[2], "a stream's second decode started only after its first ended"

        # an urgent decode (a final) is taken on the free lane beside the stream's running refresh, and a
        # second urgent one waits for it
        backend.calls.clear()
        built.clear()
        refresh = loop.schedule("c", Priority.PARTIAL, build("c3", windows["c"]))
        assert await asyncio.to_thread(built.wait, 30)
        built.clear()
        final = loop.schedule("c", Priority.FINAL, build("c4", windows["d"]))
        assert await asyncio.to_thread(built.wait, 30)
        closing = loop.schedule("c", Priority.FINAL, build("c5", windows["a"]))
        await asyncio.gather(refresh, final, closing)
        c3, c4, c5 = (next(c for c in backend.calls if c[3] == seen[k].audio.tobytes()) for k in ("c3", "c4", "c5"))
        assert c4[1] < c3[2], "the final started while the refresh ran"
        assert c5[1] >= c4[2], "a second urgent decode waited for the first"
    finally:
        loop.stop()
    for k, result in zip("ab", pair, strict=True):
        alone = await engine.schedule(f"alone-{k}", Priority.PARTIAL, build(f"alone-{k}", windows[k]))
        assert _words(result) == _words(alone)


async def test_a_pause_commit_overtakes_a_running_refresh(audio_dir):
    """With a lane free, the decode of a speaker's pause does not wait behind the refresh the stream's
    first lane is still reading: it starts beside it and commits the words before the pause while that
    refresh runs. The refresh, older than the pause's reading, is dropped when it ends: no message
    takes a final word back, and the segment's final reads the whole sentence."""
    speech = load_pcm16k(audio_dir / "single/librispeech_61-70968-0000.wav")  # speech 0.3-4.78 s, then silence
    hold = threading.Event()
    backend = _Timed(FasterWhisperBackend(cpu_threads=2, lanes=2), hold=hold)
    loop, session, messages = _session_on(backend)
    try:
        session.feed(speech[: int(3.5 * 16000)])  # mid-sentence: a refresh is due
        assert await asyncio.to_thread(backend.held.wait, 30), "no refresh was asked for"
        session.feed(speech[int(3.5 * 16000):])  # the sentence ends, then half a second of silence
        for _ in range(300):
            if any(w["final"] for m in messages for w in m["words"]):
                break
            await asyncio.sleep(0.1)
        assert not hold.is_set()
        committed = [m for m in messages if any(w["final"] for w in m["words"])]
        assert committed, "the pause was not read while the refresh ran"
        assert "left" in committed[0]["words"][-1]["text"].lower() and committed[0]["words"][-1]["final"]
        assert loop.stats.max_lanes_busy == 2
        hold.set()
        await session.finish()
    finally:
        hold.set()
        loop.stop()
    assert len(backend.calls) == 2, "the overtaken refresh and the pause's decode, and no final decode"
    shown: list[str] = []
    for m in messages:
        final_words = [w["text"] for w in m["words"] if w["final"]]
        assert final_words[: len(shown)] == shown, "a final word was taken back"
        shown = final_words
    assert messages[-1]["is_final"] and messages[-1]["text"].lower().endswith("curtain on the left.")



def _feed_until(session: StreamSession, audio: np.ndarray, pos: int, silence: float) -> int:
    """Feed VAD chunks from ``pos`` until the silence after the last speech has run ``silence`` seconds."""
    step = 512
    while session.state.tracker.speech_end is None or session.state.tracker.silence_run < silence:
        session.feed(audio[pos:pos + step])
        pos += step
    return pos


def _session_on(backend) -> tuple[InferenceLoop, StreamSession, list[dict]]:
    """A started session on a loop of its own over ``backend``, and the messages it emits."""
    loop = InferenceLoop(backend)
    loop.start()
    messages: list[dict] = []

    async def emit(message) -> None:
        messages.append(message.model_dump())

    session = StreamSession(engine=loop, vad_model=SileroModel(), emit=wire_emit(emit))
    session.start()
    return loop, session, messages


def _recorded_session(engine) -> tuple[_Recording, InferenceLoop, StreamSession, list[dict]]:
    """A started session whose backend records every window (see ``_session_on``)."""
    backend = _Recording(engine.backend)
    return (backend, *_session_on(backend))


async def _settled(loop: InferenceLoop, decodes: int) -> None:
    """Until ``decodes`` decodes have been read and the session has had a moment to act on them."""
    for _ in range(600):
        if loop.stats.requests >= decodes:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)


async def test_a_pause_is_read_before_it_is_confirmed(engine, audio_dir):
    """The decode of a speaker's pause starts once its window's pad (0.1 s of silence) has arrived, not when
    the pause is confirmed (0.25 s): the commit comes that much sooner. A reading that ends before the
    confirmation (here the audio is fed faster than real time; on a GPU a decode is that fast) waits for it:
    nothing is committed while the speaker may still go on, and once the pause lasts the words before it
    are final without a second decode of the same window."""
    speech = load_pcm16k(audio_dir / "single/librispeech_61-70968-0000.wav")  # speech 0.3-4.78 s, then silence
    backend, loop, session, messages = _recorded_session(engine)
    try:
        pos = _feed_until(session, speech, 0, session.config.vad.speech_pad_s)
        assert session.state.tracker.silence_run < session.config.pause_commit_s
        await _settled(loop, 1)
        assert len(backend.seen) == 1 and messages == [], "the early reading must wait for the pause to last"
        window = len(np.frombuffer(backend.seen[0][0], np.float32)) / 16000
        state = session.state
        assert window < state.tracker.t - state.open.window_start, "the window ends a pad after the speech"
        _feed_until(session, speech, pos, session.config.pause_commit_s)
        await _settled(loop, 1)
        assert messages and messages[-1]["words"][-1]["final"]
        assert messages[-1]["words"][-1]["text"].lower().startswith("left")
        await session.finish()
    finally:
        loop.stop()
    assert len(backend.seen) == 1, "the final takes the pause's reading: one decode in all"
    assert messages[-1]["is_final"] and messages[-1]["text"].lower().endswith("curtain on the left.")


async def test_an_early_pause_reading_is_a_refresh_when_speech_resumes(engine, audio_dir):
    """A decode started for a pause that does not last (the speaker goes on before 0.25 s) read the words up to
    the dip: it is taken as a refresh, so it commits nothing on the pause rule (the word before a dip may be
    cut short)."""
    lj = load_pcm16k(audio_dir / "single/ljspeech_LJ001-0001_0016.wav")  # a sentence, 0.45 s of silence, the next
    backend, loop, session, messages = _recorded_session(engine)
    try:
        pos = _feed_until(session, lj, 0, session.config.vad.speech_pad_s)
        dip = session.state.tracker.speech_end
        await _settled(loop, 1)
        assert len(backend.seen) == 1 and messages == []
        while np.sqrt(np.mean(lj[pos:pos + 512] ** 2)) < 0.02:  # the speaker goes on at once: the rest of the
            pos += 512                                          # silence is left out
        session.feed(lj[pos:pos + 2 * 16000])
        assert dip not in session.state.open.pauses, "the VAD heard a pause: the test reads nothing"
        await _settled(loop, 1)
        assert messages, "the reading was dropped instead of taken as a refresh"
        last = messages[0]["words"][-1]  # the word before the dip ("Exhibition."): 1.5 s older ones settle
        assert last["end"] <= dip + 0.2 and not last["final"], "a dip that did not last committed words as a pause"
        await session.finish()
    finally:
        loop.stop()


async def test_a_pause_that_lasts_settles_what_its_commit_left_open(engine):
    """A pause commit leaves an unsure word that no earlier reading had to a later reading ("called missile."
    then "called mistle type."). A pause that lasts ``pause_settle_s`` has been read whole, as the segment's
    final would read it: the word is committed on that reading, even when the reading arrives after the
    speaker went on. A shorter pause, a hesitation the next words may still explain, leaves it open."""

    async def pause_commit(heard: float) -> Segment:
        session = StreamSession(engine=engine, vad_model=SileroModel(), emit=_ignore)
        session.state.buffer.append(np.zeros(6 * 16000, np.float32))
        seg = Segment(id="a", start=0.0, window_start=0.0)
        seg.hyp.tentative = [TimedWord("called", 3.0, 3.4, 0.9), TimedWord("missile.", 3.4, 3.9, 0.4)]
        seg.pauses[4.4] = heard  # the silence after the speech, before the speaker went on
        session.state.open = seg
        session.state.tracker.in_speech, session.state.tracker.speech_end = True, 5.0
        plan = Plan(seg, Priority.ENDPOINT, end=4.6, commit_before=4.4, speech_end=4.4)
        reading = DecodeResult(words=[DecodedWord(" called", 3.0, 3.4, 0.9), DecodedWord(" mistle", 3.4, 3.9, 0.3),
                                      DecodedWord(" type.", 3.9, 4.4, 0.8)])
        await asyncio.wait_for(session.reader.apply(plan, 0.0, reading, ""), 5)
        return seg

    short = await pause_commit(0.3)
    assert [w.text for w in short.hyp.committed] == ["called"]
    assert [w.text for w in short.hyp.tentative] == ["mistle", "type."]
    long = await pause_commit(0.42)
    assert [w.text for w in long.hyp.committed] == ["called", "mistle", "type."] and not long.hyp.tentative


def test_a_first_line_is_final_once_its_pause_lasts(model, audio_dir):
    """A stream's first line, too short a window to commit from ("This is all very high pitched.", 2 s), is
    final as soon as the pause after it lasts ``pause_settle_s``, in a partial, not when the next line has
    made the window 4 s long (2.8 s after the line) or the segment closes."""
    name = "single/mfa_hard_cases_whisper_falsetto_fillers.wav"  # 0.3-2.32 s, a 0.6 s pause, 2.92-4.78 s
    audio = {name: load_pcm16k(audio_dir / name)[:int(4.9 * 16000)]}
    config = StreamConfig()
    _, records, _ = _replay(name, audio, model, config=config)
    rec = records[0]
    first = next(r for r in rec.transcriptions
                 if any(w["final"] and w["text"].lower().startswith("pitched") for w in r.data["words"]))
    assert not first.data["is_final"], "the line waited for its segment's final"
    assert first.t - rec.sent_at(2.32) < config.pause_settle_s + 0.8


def test_a_segments_first_reading_comes_after_the_first_step(model, audio_dir):
    """With refreshes a second of audio apart (``min_step_s``, which reads a lone stream better with less
    CPU), a segment's first reading still comes after half a second of it (``first_step_s``), so the first
    partial is as early as with a step of 0.5 s, while the stream takes far fewer decodes."""
    name = "single/librispeech_61-70968-0000.wav"  # one utterance, 0.3-4.78 s
    audio = {name: load_pcm16k(audio_dir / name)}

    def run(config: StreamConfig):
        backend = _Recording(model)
        _, records, _ = _replay(name, audio, backend, config=config)
        rec = records[0]
        first = min(r.t for r in rec.transcriptions) - rec.started
        return first, [len(a) / 4 / 16000 for a, _ in backend.seen]

    config = StreamConfig(min_step_s=1.0, first_step_s=0.5)
    first, windows = run(config)
    half_first, half_windows = run(StreamConfig(min_step_s=0.5, first_step_s=0.5))
    assert windows[0] < config.lead_in_s + config.first_step_s + 0.2, windows
    assert abs(first - half_first) < 1e-6, (first, half_first)
    assert len(windows) <= len(half_windows) * 0.7, (windows, half_windows)
    steps = [b - a for a, b in zip(windows, windows[1:], strict=False) if b > a]
    assert min(steps[:2]) >= config.min_step_s - 0.05, windows


def test_a_line_closes_at_its_pause_though_its_last_word_is_stamped_past_it(model, audio_dir):
    """The aligner stamps a line's last word late ("for them." to 7.03 s where the VAD heard the speech end at
    6.85 s): the pause after it is still the line's end, so the segment's final comes as the line is final,
    not when the next pause closes the next sentence too (3.9 s later)."""
    name = "single/librivox_sense_and_sensibility_ch01_5utt.wav"  # 0.3-6.8 s, a 0.5 s pause, 7.3-9.94 s
    audio = {name: load_pcm16k(audio_dir / name)[:int(10.6 * 16000)]}
    _, records, _ = _replay(name, audio, model)
    rec = records[0]
    finals = [r for r in rec.transcriptions if r.data["is_final"]]
    assert len(finals) == 2, [r.data["text"] for r in finals]
    first, second = (r.data["text"].lower() for r in finals)
    assert first.endswith("for them.") and second.startswith("he was"), (first, second)
    assert finals[0].t - rec.sent_at(6.8) < 1.5


def test_a_sentence_the_speaker_goes_on_from_without_a_pause_closes_its_segment(model, audio_dir):
    """A phone call's turns abut with no pause the VAD hears ("... originally from Chicago." and at once "Oh,
    I'm originally from Chicago also."): once a sentence's last word is final the segment closes after it,
    instead of running on to ``max_segment_s`` (one segment held 18 s of the call, its final that late)."""
    name = "multi/pyannote_sample_2spk_phone_conversation.wav"
    audio = {name: load_pcm16k(audio_dir / name)[:int(20.5 * 16000)]}  # the call up to "Chicago also."
    _, records, _ = _replay(name, audio, model)
    finals = [r.data for r in records[0].transcriptions if r.data["is_final"]]
    assert any(f["text"].endswith("Chicago.") for f in finals), [f["text"] for f in finals]
    assert max(f["end"] - f["start"] for f in finals) < 10, [(f["start"], f["end"]) for f in finals]


def test_a_reading_that_stops_at_its_lent_words_is_read_again_without_them(model, audio_dir):
    """A segment lent the closing words of the one before may be read as those words and nothing more: Whisper
    closes its text after them and skips the new voice (the seven-voice dialogue, lent 8 s: LibriSpeech 1221's
    16 s passage after "than he was." was never read, reading after reading and in the final). Such a segment
    is read again from its own start, and nothing of it is lost."""
    name = "multi/constructed_turns_real_voices_7spk.wav"
    audio = {name: load_pcm16k(audio_dir / name)[int(64.8 * 16000):int(102.5 * 16000)]}
    config = StreamConfig(context_s=8.0, split_context_s=8.0)
    _, records, _ = _replay(name, audio, model, config=config)
    finals = [r.data for r in records[0].received if r.type == "transcription" and r.data["is_final"]]
    text = " ".join(f["text"] for f in finals).lower()
    assert "respectable" in text, text
    assert "consequence" in text and "heaven" in text, text
    assert "amiable himself" in text, text
