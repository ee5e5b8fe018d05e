"""The benchmark helpers and the public evaluation set: cheap checks, no model, no timing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.append(str(BENCH))  # appended: never shadows an installed module
sys.path.append(str(BENCH / "evalsets"))


def test_percentile_median_and_table():
    import common

    assert common.percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert common.percentile([10.0], 95) == 10.0
    assert common.percentile(list(range(101)), 95) == pytest.approx(95.0)
    assert common.md_table(["a", "b"], [["x", 1.23456]]) == "| a | b |\n|---|---|\n| x | 1.23 |"
    order = []
    vals = common.alternate({"a": lambda r: order.append(("a", r)) or r, "b": lambda r: order.append(("b", r)) or -r}, 2)
    assert order == [("a", 0), ("b", 0), ("a", 1), ("b", 1)] and vals == {"a": [0, 1], "b": [0, -1]}


def test_foldoc_entry_parsing_and_html():
    import corpus

    raw = ("Industry Standard Architecture\nISA bus\n\n   <architecture, standard> (ISA) A {bus} {standard} for {IBM\n"
           "   compatibles} that extends the {XT bus architecture} to 16\n   bits.  See {ISA (http://example.org/isa)}.\n\n"
           "   (1996-06-25)\n\n")
    e = corpus._parse_entry(raw)
    assert e.headword == "Industry Standard Architecture" and e.aliases == ["ISA bus"]
    assert e.categories == ["architecture", "standard"] and e.date == "1996-06-25"
    assert e.paragraphs[0].startswith("(ISA) A {bus} {standard} for {IBM compatibles}")
    e.slug = corpus.slugify(e.headword)
    page = corpus.entry_html(e)
    assert '<a href="ibm-compatibles.html">IBM compatibles</a>' in page
    assert '<a href="http://example.org/isa">ISA</a>' in page and "<h1>Industry Standard Architecture</h1>" in page
    assert corpus.plain(e.paragraphs[0]).endswith("to 16 bits. See ISA.")


def test_foldoc_question_masks_the_headword():
    import build_foldoc

    s = build_foldoc.first_sentence("(ISA) A {bus} {standard} for IBM compatibles, called ISA bus by some. More text.")
    assert s == "A bus standard for IBM compatibles, called ISA bus by some"
    assert build_foldoc.mask(s, ["Industry Standard Architecture", "ISA bus"]) == \
        "A bus standard for IBM compatibles, called this by some"


@pytest.mark.parametrize("name", ["debian_reference.jsonl", "debian_reference_heldout.jsonl"])
def test_debian_reference_set_is_well_formed(name):
    lines = [json.loads(line) for line in (BENCH / "evalsets" / name).read_text().splitlines()]
    assert len(lines) >= 60
    assert len({q["question"] for q in lines}) == len(lines)  # no duplicates
    for q in lines:
        assert q["question"].endswith("?") and q["relevant"], q
        assert all(r.endswith(".html") and r.split("-", 1)[0] == r.split("-", 1)[0].strip() for r in q["relevant"])
        assert q["relevant"][0].startswith(q["section"] + "-")
        assert q["source"].startswith("/usr/share/debian-reference/ch")


def test_held_out_questions_ask_about_other_sections():
    def sections(name):
        return [json.loads(line)["section"] for line in (BENCH / "evalsets" / name).read_text().splitlines()]

    held_out = sections("debian_reference_heldout.jsonl")
    assert len(held_out) == 100 == len(set(held_out))
    assert not set(held_out) & set(sections("debian_reference.jsonl"))
