from asr.policy import Hypotheses, TimedWord, copies_prompt, join_words, stop_at_stacked_words, trim_repetition


def words(text: str, t0: float = 0.0, step: float = 0.4) -> list[TimedWord]:
    return [TimedWord(w, t0 + i * step, t0 + i * step + 0.3, 0.9) for i, w in enumerate(text.split())]


def test_agreement_commits_common_prefix_only():
    h = Hypotheses()
    assert h.agree(words("the quick brown")) == []
    done = h.agree(words("the quick brown fox jumps"))
    assert [w.text for w in done] == ["the", "quick", "brown"]
    assert [w.text for w in h.tentative] == ["fox", "jumps"]
    done = h.agree(words("the quick brown fox leaps over"))
    assert [w.text for w in done] == ["fox"]


def test_committed_words_never_change():
    h = Hypotheses()
    h.agree(words("hello world again"))
    h.agree(words("hello world again"))
    before = [(w.text, w.start) for w in h.committed]
    h.agree(words("jello word again now"))
    assert [(w.text, w.start) for w in h.committed][:3] == before


def test_overlap_with_committed_tail_is_removed():
    h = Hypotheses()
    h.commit_all(words("one two three"))
    # a trimmed window re-hears "three" slightly earlier than its committed timing
    again = [TimedWord("three", 0.75, 1.1, 0.9), TimedWord("four", 1.2, 1.5, 0.9)]
    assert [w.text for w in h.commit_all(again)] == ["four"]


def test_commit_before_pause():
    h = Hypotheses()
    done = h.commit_before(words("a b c d"), t=0.9)
    assert [w.text for w in done] == ["a", "b", "c"]
    assert [w.text for w in h.tentative] == ["d"]


def test_trim_repetition():
    out = trim_repetition(words("so i said the the the the the the the the the"))
    assert [w.text for w in out] == ["so", "i", "said", "the"]
    out = trim_repetition(words("thank you. " * 8))
    assert [w.text for w in out] == ["thank", "you."]
    ok = words("here are some more word word word word word")
    assert trim_repetition(ok) == ok
    ok = words("that that is is not that that it it is")
    assert trim_repetition(ok) == ok


def test_prompt_copy_is_detected():
    prompt = "I really don't know how to talk like this. This is all very high pitched."
    assert copies_prompt(words("This is all very high pitched."), prompt)
    assert not copies_prompt(words("this is all new"), prompt)
    assert not copies_prompt(words("very high"), prompt)


def test_overlap_found_by_text_when_timestamps_drift():
    h = Hypotheses()
    h.commit_all([TimedWord("speech", 0.0, 0.4, 0.9), TimedWord("errors", 0.4, 0.9, 0.9),
                  TimedWord("but", 0.9, 1.3, 0.9)])
    # the next decode places "but" earlier and "who" starts before the committed end
    again = [TimedWord("errors", 0.4, 0.8, 0.9), TimedWord("but", 0.8, 1.0, 0.9),
             TimedWord("who", 1.05, 1.3, 0.9), TimedWord("cares", 1.3, 1.7, 0.9)]
    assert [w.text for w in h.commit_all(again)] == ["who", "cares"]


def test_repeated_word_is_not_mistaken_for_overlap():
    h = Hypotheses()
    h.commit_all(words("more words"))  # ends at 0.7
    again = [TimedWord("words", 0.45, 0.7, 0.9), TimedWord("words", 0.8, 1.1, 0.9), TimedWord("words", 1.2, 1.5, 0.9)]
    assert [w.text for w in h.commit_all(again)] == ["words", "words"]


def test_agreement_waits_for_right_context():
    h = Hypotheses()
    h.agree(words("one two three four"))
    done = h.agree(words("one two three four five"), horizon=1.0)  # words end at 0.3, 0.7, 1.1, ...
    assert [w.text for w in done] == ["one", "two"]


def test_a_word_the_model_keeps_rewriting_settles():
    h = Hypotheses()
    h.agree(words("we saw the mistletoe"))
    # hypotheses disagree on the last word, but the model has now heard plenty after it
    done = h.agree(words("we saw the missile type and more"), settled=1.6)  # "missile" ends at 1.5
    assert [w.text for w in done] == ["we", "saw", "the", "missile"]
    assert [w.text for w in h.tentative] == ["type", "and", "more"]


def test_an_unsure_word_at_a_pause_settles_once_old_enough():
    unsure = [TimedWord("hello", 0.0, 0.3, 0.9), TimedWord("typograpy", 0.4, 0.7, 0.2)]
    h = Hypotheses()
    assert [w.text for w in h.commit_before(unsure, 1.0, confident=0.5)] == ["hello"]
    assert [w.text for w in h.commit_before(unsure, 1.0, confident=0.5, settled=0.8)] == ["typograpy"]


def test_a_window_starting_at_an_anchor_word_keeps_the_next_word():
    """A window cut at a word's start hears that word with a start that matches and an end that does
    not (the committed end ran late, into the next word): it is still recognised and dropped."""
    h = Hypotheses(anchor=[TimedWord("first", 53.1, 53.8, 0.9)])
    again = [TimedWord("first", 53.1, 53.45, 0.9), TimedWord("Bible", 53.45, 54.0, 0.9),
             TimedWord("actually", 54.0, 54.6, 0.9)]
    assert [w.text for w in h.commit_all(again)] == ["Bible", "actually"]
    assert not any(w.text == "first" for w in h.committed)


def test_unsure_word_needs_more_audio_after_it():
    h = Hypotheses()
    first = words("shall be seaged by brow")
    first[2].probability = 0.3  # "seaged": the model hardly knows it
    h.agree(first)
    again = words("shall be seaged by brow and")
    again[2].probability = 0.4
    # "seaged" ends at 1.1: enough audio after it for a sure word, not for an unsure one
    done = h.agree(again, horizon=1.5, unsure=0.5, unsure_wait=1.0)
    assert [w.text for w in done] == ["shall", "be"]
    done = h.agree(words("shall be besiege thy brow and dig"), horizon=3.0, unsure=0.5, unsure_wait=1.0)
    assert [w.text for w in done] == []  # a different reading: agreement starts over from here
    done = h.agree(words("shall be besiege thy brow and dig"), horizon=2.0, unsure=0.5, unsure_wait=1.0)
    assert [w.text for w in done] == ["besiege", "thy", "brow"]


def test_text_joins_words_the_model_continued():
    """The model writes "ill-disposed" as " ill" and "-disposed", "i.e." as " i" and ".e.": the text reads
    as it was spelled, while each part keeps its own timing in ``words``."""
    assert join_words(["and", "ill", "-disposed", "i", ".e.", "1", ",000", "self", "-love."]) == \
        "and ill-disposed i.e. 1,000 self-love."
    assert join_words(["Hello,", "world."]) == "Hello, world."
    assert join_words([]) == ""


def test_a_reading_stops_where_its_timestamps_stop_advancing():
    loop = words("Montreal forced", 49.6, 0.2) + [TimedWord(w, 49.97, 49.97, 0.6) for w in
                                                    "a liner. I hardly know her.".split()]
    loop += words("Montreal forced", 50.13, 0.2)
    assert [w.text for w in stop_at_stacked_words(loop)] == ["Montreal", "forced", "a"]
    pair = words("forced", 55.0) + [TimedWord("the", 55.72, 55.72, 0.9), TimedWord("liner.", 55.72, 55.9, 0.9)]
    assert stop_at_stacked_words(pair) == pair  # two or three words on one instant happen at a window's end
