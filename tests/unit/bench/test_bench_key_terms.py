"""The key-term bench's hit count: whole-word occurrences written as the reference writes them."""

from __future__ import annotations

from bench.key_terms import KEY_TERMS, hits


def test_hits_count_whole_words_as_the_reference_writes_them() -> None:
    ref = "Yet these thoughts affected HESTER PRYNNE less; Hester Prynne knew."
    assert hits(ref, "affected Hester Prin less; Hester Prynne knew.", ["Hester Prynne"]) == (1, 2)
    assert hits(ref, "Hester Prynne, Hester Prynne and Hester Prynne", ["Hester Prynne"]) == (2, 2)
    assert hits("in Strasburg", "in Strasburgh", ["Strasburg"]) == (0, 1)


def test_every_file_s_terms_are_in_its_reference() -> None:
    import json

    from bench import SHARED_AUDIO

    refs = json.loads((SHARED_AUDIO / "references.json").read_text())
    for f, terms in KEY_TERMS.items():
        assert all(hits(refs[f]["text"], refs[f]["text"], [t])[1] > 0 for t in terms), f
