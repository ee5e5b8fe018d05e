"""Reviewer rereadD's mends, each checked on a case small enough to work out by hand."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.append(str(BENCH))  # appended: never shadows an installed module

from common import by_document  # noqa: E402


def test_questions_sharing_a_gold_page_are_drawn_together_whatever_their_other_pages():
    # Before: a question's "document" was its exact set of gold pages, so [x], [x, y] and [y] were three
    # documents drawn apart though all three ask about x or y (on git's public set 101 such groups where
    # 68 are joined by a shared page; Valgrind's 33 where 9 are). Now pages one question names together
    # are one document: {x, y} (three questions, each +1) and {z} (one question, 0). Drawing two
    # documents of two: mean 1 (1/4), 3/4 (1/2) or 0 (both z, 1/4), so the 95% interval is [0, 1].
    # Drawn as four documents, all four z comes up 1/256 of the time: the low end was above 0.
    a, b = [1.0, 1.0, 1.0, 0.0], [0.0] * 4
    d = by_document(a, b, [["x.html"], ["x.html", "y.html"], "y.html", ["z.html"]])
    assert (d["diff"], d["groups"], d["low"], d["high"]) == (0.75, 2, 0.0, 1.0)
    # a chain joins too: [p, q] and [q, r] share q, so [p] and [r] are one document with them
    d = by_document([1.0] * 4 + [0.0], [0.0] * 5, [["p"], ["p", "q"], ["q", "r"], ["r"], []])
    assert d["groups"] == 2
