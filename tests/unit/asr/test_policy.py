from asr.policy import (
    Hypotheses,
    TimedWord,
    copies_prompt,
    ends_sentence,
    in_time_order,
    join_words,
    stop_at_stacked_words,
    trim_repetition,
)


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


def test_a_word_stamped_late_is_not_a_stack():
    """Sonnet 2 as a recorded file: "of 37.74, mine 46.48, shall 46.48, some 38.5": one word stamped 8 s late with
    the reading on in place after it. Taken for a stack, the reading stopped at "mine", which lay past the
    segment's end, and "mine shall sum my count ... succession thine" was lost."""
    reading = words("this fair child of", 36.2, 0.5) + [TimedWord("mine", 46.48, 46.48, 0.9),
                                                         TimedWord("shall", 46.48, 46.48, 0.9)]
    reading += words("some my count, and make", 38.5, 0.4)
    kept = in_time_order(stop_at_stacked_words(reading))
    assert [w.text for w in kept] == [w.text for w in reading]
    assert all(a.end <= b.start for a, b in zip(kept, kept[1:], strict=False))


def test_a_word_stamped_after_the_next_one_is_pulled_back():
    """Sonnet 3 streamed live: "of 37.61-39.91, thy 39.91-39.91, see 38.83-39.39": "thy" no longer matched its
    committed copy, was committed again at 39.91, and the words said before that were dropped as read."""
    reading = [TimedWord("of", 37.61, 39.91, 0.9), TimedWord("thy", 39.91, 39.91, 0.9),
               TimedWord("see", 38.83, 39.39, 0.9), TimedWord("despite", 39.39, 39.85, 0.9)]
    fixed = in_time_order(reading)
    assert [(w.start, w.end) for w in fixed] == [(37.61, 38.83), (38.83, 38.83), (38.83, 39.39), (39.39, 39.85)]
    ordered = words("one two three")
    assert in_time_order([TimedWord(w.text, w.start, w.end, w.probability) for w in ordered]) == ordered

    h = Hypotheses()
    h.commit_all([TimedWord("windows", 37.21, 37.61, 0.9), TimedWord("of", 37.61, 37.87, 0.9),
                  TimedWord("thy", 37.89, 38.07, 0.9)])
    assert [w.text for w in h.agree(fixed)] == []
    assert [w.text for w in h.tentative] == ["see", "despite"]  # "thy" lined up with its committed copy


def test_an_agreed_word_ends_where_the_earlier_reading_ends_it():
    """A reading the model stops short stretches its last word over the audio it skipped; committed with that
    end, the word hid the words said after it from the next reading."""
    h = Hypotheses()
    h.agree([TimedWord("windows", 37.2, 37.6, 0.9), TimedWord("of", 37.6, 37.9, 0.9),
             TimedWord("thy", 37.9, 38.1, 0.9), TimedWord("age", 38.1, 38.4, 0.9)])
    done = h.agree([TimedWord("windows", 37.2, 37.6, 0.9), TimedWord("of", 37.6, 39.8, 0.9)])
    assert [(w.text, w.end) for w in done] == [("windows", 37.6), ("of", 37.9)]
    again = [TimedWord("of", 37.6, 37.9, 0.9), TimedWord("thy", 37.9, 38.1, 0.9), TimedWord("age", 38.1, 38.4, 0.9),
             TimedWord("shall", 38.4, 38.8, 0.9)]
    h.agree(again)
    assert [w.text for w in h.tentative] == ["thy", "age", "shall"]


def test_a_window_opening_at_the_known_word_lines_up_by_it_however_it_is_stamped():
    """Sonnet 3: the window opens at the lent anchor "posterity." (26.47 s) and the model stamps it at 27.91 s;
    without the window's start it read as a new word, and the next segment opened with "posterity." again."""
    h = Hypotheses(anchor=[TimedWord("posterity.", 26.47, 27.33, 0.9)])
    reading = [TimedWord("posterity.", 27.91, 28.61, 0.9), TimedWord("Thou", 29.37, 29.81, 0.9),
               TimedWord("art", 29.81, 30.07, 0.9)]
    assert [w.text for w in h.commit_all(reading, start=26.47)] == ["Thou", "art"]
    h = Hypotheses(anchor=[TimedWord("posterity.", 26.47, 27.33, 0.9)])
    assert [w.text for w in h.commit_all(reading)] == ["posterity.", "Thou", "art"]  # a window opening earlier


def _kept(anchor: list[TimedWord], reading: list[TimedWord], start: float) -> list[str]:
    """The words a new segment commits from ``reading``, its window opening at ``start`` on ``anchor``."""
    return [w.text for w in Hypotheses(anchor=anchor).commit_all(reading, start=start)]


def test_a_reading_that_skips_the_word_its_window_opens_at_keeps_every_word():
    """Sonnet 3: the window opens at the anchor "husbandry" (21.77-22.79 s); the model leaves it out and
    stamps "or who is he" over its time, and the time cut dropped those four words."""
    anchor = [TimedWord("husbandry.", 21.77, 22.79, 0.9)]
    reading = [TimedWord("or", 21.77, 22.19, 0.9), TimedWord("who", 22.19, 22.33, 0.9),
               TimedWord("is", 22.33, 22.55, 0.9), TimedWord("he", 22.55, 22.83, 0.9),
               TimedWord("so", 22.83, 23.15, 0.9)]
    assert _kept(anchor, reading, 21.77) == ["or", "who", "is", "he", "so"]
    misread = [TimedWord("husband", 21.77, 22.19, 0.9)] + reading[1:]
    assert _kept(anchor, misread, 21.77) == ["who", "is", "he", "so"]


def test_a_first_word_stamped_over_skipped_anchor_words_is_new_speech():
    """MFA hard cases: the window opens at the anchor "It's right here." (39.23-39.93 s); the model leaves it out
    and stamps "This" from the window's opening to 40.37 s, and the time cut dropped the segment's first word."""
    anchor = [TimedWord("It's", 39.23, 39.23, 0.9), TimedWord("right", 39.23, 39.37, 0.9),
              TimedWord("here.", 39.37, 39.93, 0.9)]
    reading = [TimedWord("This", 39.23, 40.37, 0.8), TimedWord("is", 40.37, 40.69, 0.9),
               TimedWord("a", 40.69, 40.8, 0.9)]
    assert _kept(anchor, reading, 39.23) == ["This", "is", "a"]
    # the known word read another way and stretched the same: a misreading, not new speech
    assert _kept(anchor, [TimedWord("here", 39.23, 40.37, 0.8)] + reading[1:], 39.23) == ["is", "a"]


def test_a_first_word_inside_the_late_end_of_a_skipped_sentence_is_new_speech():
    """Phone call: the next segment's window opens at the anchor "New Jersey now though." (20.44-21.86 s, the
    last word said to 21.48 and stamped into the pause); the model leaves the anchor out and reads "Well,"
    at 21.32-21.96 s, and the time cut dropped it."""
    anchor = [TimedWord("New", 20.44, 20.6, 0.9), TimedWord("Jersey", 20.6, 20.92, 0.9),
              TimedWord("now", 20.92, 21.24, 0.9), TimedWord("though.", 21.24, 21.86, 0.9)]
    reading = [TimedWord("Well,", 21.32, 21.96, 0.8), TimedWord("there", 22.54, 22.68, 0.9),
               TimedWord("isn't", 22.68, 22.88, 0.9)]
    assert _kept(anchor, reading, 20.44) == ["Well,", "there", "isn't"]
    # the known word read another way: a misreading, not new speech
    assert _kept(anchor, [TimedWord("tho", 21.32, 21.96, 0.8)] + reading[1:], 20.44) == ["there", "isn't"]
    # a sentence going on (no full stop on the known word): the word inside its time is its re-reading
    going_on = anchor[:-1] + [TimedWord("though", 21.24, 21.86, 0.9)]
    assert _kept(going_on, [TimedWord("then", 21.32, 21.96, 0.8)] + reading[1:], 20.44) == ["there", "isn't"]


def test_a_misreading_of_the_word_a_window_opens_at_is_not_taken_for_new_speech():
    """LibriSpeech 2412: a window opening at "antecedents." read it as "sentence."; kept as new, the segment
    said "antecedents. sentence." One or two words within the known word's time are its misreading."""
    h = Hypotheses(anchor=[TimedWord("antecedents.", 5.1, 5.9, 0.9)])
    reading = [TimedWord("sentence.", 5.1, 5.8, 0.6), TimedWord("Nor", 6.3, 6.5, 0.9), TimedWord("of", 6.5, 6.6, 0.9)]
    assert [w.text for w in h.commit_all(reading, start=5.1)] == ["Nor", "of"]


def test_a_word_misread_as_several_is_not_taken_for_new_speech():
    """Sonnet 2 as a recorded file: a final stopped at "thriftless" (28.32-29.0 s) and its tail, read again from
    that word on, said "a bit less praise."; kept as new, the segment said "thriftless a bit less praise"."""
    h = Hypotheses()
    h.commit_all([TimedWord("and", 27.88, 28.32, 0.9), TimedWord("thriftless", 28.32, 29.0, 0.9)])
    tail = [TimedWord("a", 28.32, 28.44, 0.5), TimedWord("bit", 28.44, 28.66, 0.6),
            TimedWord("less", 28.66, 29.0, 0.7), TimedWord("praise.", 29.0, 29.5, 0.9)]
    assert [w.text for w in h.commit_all(tail, start=28.32)] == ["praise."]
    # words that do not read as the known word stay new speech (see the skipped-anchor case above)
    h = Hypotheses()
    h.commit_all([TimedWord("and", 27.88, 28.32, 0.9), TimedWord("thriftless", 28.32, 29.0, 0.9)])
    other = [TimedWord("or", 28.32, 28.44, 0.9), TimedWord("who", 28.44, 28.66, 0.9),
             TimedWord("is", 28.66, 28.9, 0.9), TimedWord("he", 29.0, 29.5, 0.9)]
    assert [w.text for w in h.commit_all(other, start=28.32)] == ["or", "who", "is", "he"]


def test_a_stretch_two_readings_disagree_on_is_committed_as_the_surer_one_read_it():
    """Sense and Sensibility: a refresh read "to be ill-disposed." (0.98), the pause's reading of the same
    window "to be old-sposed." (0.71), and the pause committed the second."""
    h = Hypotheses()
    before = [TimedWord("to", 14.21, 14.37, 0.99), TimedWord("be", 14.37, 14.51, 0.99),
              TimedWord("ill", 14.51, 14.69, 0.98), TimedWord("-disposed.", 14.69, 15.07, 0.91)]
    h.agree(before, horizon=14.0)  # nothing has right context yet: all tentative
    assert h.committed == []
    at_pause = [TimedWord("to", 14.21, 14.37, 0.99), TimedWord("be", 14.37, 14.55, 0.99),
                TimedWord("old", 14.55, 14.71, 0.71), TimedWord("-sposed.", 14.71, 15.29, 0.9)]
    assert [w.text for w in h.commit_before(at_pause, 15.3)] == ["to", "be", "ill", "-disposed."]


def test_the_latest_reading_stands_where_neither_is_clearly_surer_or_the_times_differ():
    """JFK: "asked" (0.38) then "ask" (0.32) is a toss-up, and the later reading heard more."""
    h = Hypotheses()
    h.agree([TimedWord("asked", 2.31, 2.6, 0.38)], horizon=0.0)
    assert [w.text for w in h.commit_before([TimedWord("ask", 2.37, 2.6, 0.32)], 3.0)] == ["ask"]
    h = Hypotheses()  # a surer earlier word over other audio is a different stretch, not another reading
    h.agree([TimedWord("ill", 5.0, 5.3, 0.98)], horizon=0.0)
    assert [w.text for w in h.commit_before([TimedWord("old", 5.8, 6.1, 0.4)], 7.0)] == ["old"]


def test_settling_a_pause_weighs_the_reading_before_the_pause_reading():
    """The pause's reading leaves an unsure word tentative; when the pause lasts, it is settled, and the
    refresh before it (surer of that stretch) decides."""
    h = Hypotheses()
    h.agree([TimedWord("ill", 8.49, 8.75, 0.9), TimedWord("-disposed", 8.75, 9.23, 0.9)], horizon=0.0)
    h.commit_before([TimedWord("old", 8.49, 8.83, 0.41), TimedWord("-sposed", 8.83, 9.25, 0.72)], 9.3,
                    confident=0.5)
    assert h.committed == []  # the unsure word waits
    assert [w.text for w in h.settle_before(9.3)] == ["ill", "-disposed"]


def test_a_title_is_no_sentence_end():
    """ "And Mr." closed a segment before "John Dashwood had then leisure...": a title's full stop ends nothing."""
    assert ends_sentence("them.") and ends_sentence("Hello?") and ends_sentence("word!")
    assert not ends_sentence("Mr.") and not ends_sentence("Mrs.") and not ends_sentence("Dr.")
    assert not ends_sentence("design,")


def test_a_full_stop_a_later_reading_writes_after_a_committed_word_marks_a_sentence_end():
    """ "difference." read alone, then "difference at least" (committed so), then "difference. At least": the
    committed word's text stays as it was told, and it is known to close its sentence."""
    h = Hypotheses()
    h.agree(words("Well there isn't that much difference."))
    h.agree(words("Well there isn't that much difference at least"))
    assert [w.text for w in h.committed][-1] == "difference" and not h.committed[-1].closes_sentence
    h.agree(words("Well there isn't that much difference. At least you know"))
    last = h.committed[5]
    assert last.text == "difference" and last.closes_sentence
    assert [w.text for w in h.committed][6:] == ["At", "least"]
    assert h.sentence_boundary(not_after=10.0) == last.end


def test_a_full_stop_with_no_capital_after_it_or_no_word_after_it_marks_nothing():
    for later in ("one two three. four five", "one two three."):
        h = Hypotheses()
        h.agree(words("one two three"))
        h.agree(words("one two three four"))
        assert [w.text for w in h.committed] == ["one", "two", "three"]
        h.agree(words(later))
        assert not any(w.closes_sentence for w in h.committed)
