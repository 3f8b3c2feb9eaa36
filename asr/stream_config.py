"""A live or recorded stream's segmentation and commit settings, every one measured (the comments say on what).

The server turns its ``VOXLANE_*`` settings into one (``server.pipeline.configs.stream_config``); the replay bench
overrides fields of it (``--set``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asr.inference import Priority
from asr.vad import VadConfig


@dataclass
class StreamConfig:
    vad: VadConfig = field(default_factory=VadConfig)
    min_silence_s: float = 0.8  # a pause this long ends the segment (turn gaps are 0.2-0.4 s)
    pause_commit_s: float = 0.25  # a pause this long commits the words before it
    pause_commit_confidence: float = 0.5  # ...unless a word is this unsure and no earlier hypothesis had it
    # a pause this long commits every word its reading holds before it, an unsure one or a young segment's too:
    # the segment's final would take that very reading had the pause gone on to min_silence_s (see _settle_pause).
    # Replay at N=1, errors of 1372: 133 without, 134 with 0.35 s; commit p95 1.94 -> 1.21 s
    pause_settle_s: float = 0.35
    # least new audio before the hypothesis is refreshed. 1.0 s (VOXLANE_MIN_STEP_MS=1000) reads a lone stream
    # better and with 40 % less CPU (replay at N=1, errors of 1372: 136 -> 123; real time, WER 9.62/9.40 ->
    # 9.18/9.18 %, offline 8.45 %) but four streams worse (real time 131/131 -> 140/132/147 errors)
    min_step_s: float = 0.5
    first_step_s: float = 0.5  # the step before a segment's first reading: its first partial comes this early
    agree_right_context_s: float = 1.0  # agreement commits only words with this much audio after them
    settle_s: float = 1.5  # a word with this much audio after it is committed even if hypotheses disagree
    # ...and a word below this probability needs this much more audio after it, for both (one wrong reading
    # repeated by two hypotheses half a second apart is the commonest streamed error)
    unsure_probability: float = 0.5
    unsure_wait_s: float = 1.0
    lead_in_s: float = 0.2  # audio kept before speech onset (0.6 helped some files and hurt others)
    max_segment_s: float = 20.0  # segments are split at a committed word boundary beyond this
    # a segment closes where a listener would: at a pause of pause_commit_s once every word before it is final,
    # when the last of them ends a sentence or the segment already holds this much speech (0: sentence ends
    # only). Its final then goes out at once, with no decode; the next segment is lent its closing words
    # (_lend_context). Read speech and conversation rarely pause min_silence_s, so without this a segment ran
    # to max_segment_s and a subscriber acting on finals waited 7-17 s for them
    close_after_s: float = 6.0
    # ...and only when its last final word reaches the pause: speech between the last final word and the pause
    # (a reading that skipped a stretch, "windows of wrinkles" for "windows of thine age shalt see, despite of
    # wrinkles this thy golden time") has no word yet, and closing there without a decode dropped it
    line_gap_s: float = 0.6
    # a segment this long whose last final word ends a sentence closes after it though no pause follows (a phone
    # call's abutting turns ran one segment 18 s and its final came that late; negative: only at a pause). Replay,
    # 14 files at N=1: segment final p95 1.18 -> 0.91 s, WER unchanged (132 errors of 1372). 2 s with the split's
    # context below (replay, both dialogues at N=1): segment final p95 6.14 -> 4.45 s, errors 47 -> 45 of 384;
    # 14 files 130 -> 128 errors of 1372. 1 s: 52 errors of 384. 0 (every sentence end; negative: only at a pause),
    # once a reading that skips the anchor keeps its first word and a split's pause settles the next segment's
    # words, and a title's full stop ends no sentence: dialogues 44 -> 47 errors, segment final p95 4.45 -> 2.97 s
    # (short turns, "Neither did I.", close at once); 14 files 128 -> 125 errors, segment final p95 1.18 s as before
    sentence_split_s: float = 0.0
    # the segment after a split opens its window on this much of the closed segment's last words (an anchor,
    # as _lend_context lends one): read from the sentence's last word alone, its first word was lost ("if the
    # reader will", "it is of the"; dialogues at 2 s splits: 47 -> 52 errors of 384 without, 45 with). 4 s:
    # 14 files 131 errors against 128
    split_context_s: float = 2.0
    # the decode window is trimmed at committed words beyond this. A long sentence read in a longer window has
    # more of its own audio before the words being decided: replay at N=1, 12 -> 20 s: 14 files 126 -> 120
    # errors of 1372 (six-file subset 36 -> 33 of 526), latencies unchanged, dialogues word for word the same
    trim_s: float = 20.0
    # recent final text given to the model as its prompt: tiny.en reads a line better with the lines before
    # it. Replay, errors of 1372: at N=1 151 with none, 140 with 200 characters, 135 with 600, 139 with 1000;
    # at N=4 134 with 200, 132 with 600. 600 characters add 0.02 s to a decode on 2 cores
    prompt_chars: int = 600
    # a young segment's window shorter than this commits nothing before its final (see _reads_cold); replay
    # at N=1: 142 -> 136 errors of 1372 with 4 s, no change at 3 s
    min_commit_window_s: float = 4.0
    # a segment that opens this soon after the last final word starts its window up to this much earlier,
    # at the words that ended the last segment (see _lend_context); 0 turns it off. Replay, errors of
    # 1372: at N=1 138 with none, 130 with 2 s, 123 with 4 s, 124 with 6 s (a 6 s gap instead of 3 s: no
    # change); at N=4 137 with none, 134 with 4 s. Commit p95 at N=1 2.19 -> 1.91 s, at N=4 2.60 -> 2.43 s.
    # 4 -> 8 s with the 20 s window (a line is read on from the whole sentence before it; a reading that
    # stops at the lent words drops them, see _stopped_at_anchor): replay at N=1, 14 files 123 -> 120 errors
    # of 1372 (commit p95 1.13 -> 1.06 s), six-file subset 33 -> 31 of 526, dialogues 46 -> 43 of 384
    # (segment final p95 2.97 s either way). 8 s lent to a split segment as well (split_context_s) made the
    # dialogues' segment finals later
    context_gap_s: float = 3.0
    context_s: float = 8.0
    # a segment whose readings give nothing after the lent words though this much of its own audio, with speech
    # in it, was read, stopped at them: it is read again from its own start (see _stopped_at_anchor). At a turn
    # after a pause that wait is the next voice's caption. Replay at N=1 (0.3,0.015), 1.0 s against 2.0 s:
    # dialogues words shown p95 1.96 -> 1.64 s and 45 -> 42 errors of 384, but the phone call's opening,
    # read cold, commit p95 2.25 -> 3.01 s; 14 files words shown p95 1.19 -> 1.29 s, 121 errors either way
    anchor_stop_s: float = 2.0
    initial_prompt: str = ""  # context for the first segment (vocabulary, spelling), as Whisper's prompt
    # names and jargon the model is to favour on every window (faster-whisper: hotwords before the prompt;
    # Riva: boosted phrases); the server's correction pass maps near-misses of them after the model
    key_terms: tuple[str, ...] = ()
    language: str | None = None
    priority: Priority = Priority.PARTIAL  # live sessions; uploads use BULK
    live: bool = True  # False: file mode, one decode per closed segment and no partials
