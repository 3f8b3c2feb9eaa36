"""The tables ``voxlane bench`` prints."""

from __future__ import annotations

from bench.command import print_rows, print_table


def test_a_table_without_rows_prints_its_header(capsys):
    """``voxlane bench -n '' --offline`` measures only the offline WER: no level, and the table must not fail
    before the result is written."""
    print_rows(["N", "WER"], [])
    print_table({"levels": [], "offline": {"wer": 0.0838}})
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["N", "WER"]
    assert out[-1] == "offline WER (same model, whole file): 0.0838"
