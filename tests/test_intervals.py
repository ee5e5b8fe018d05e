"""bench/common.py's `by_document`: the paired bootstrap that draws whole documents (gold pages)
with all their questions, checked on cases small enough to compute by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from archivist.retrieval.evaluation import paired_difference

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.append(str(BENCH))  # appended: never shadows an installed module

from common import by_document  # noqa: E402


def test_documents_with_the_same_mean_difference_give_a_point_interval():
    # document a.html: differences 0 and 2 (mean 1); b.html: 1. Any draw of whole documents has
    # (sum of its differences) / (its questions) = 1, so the interval is [1, 1]. Drawn one by one,
    # three zeros come up with probability 1/27 = 3.7% > 2.5% and three twos too: [0, 2].
    a, b = [0.0, 2.0, 1.0], [0.0, 0.0, 0.0]
    pages = [["a.html"], ["a.html"], ["b.html"]]
    d = by_document(a, b, pages)
    assert (d["diff"], d["low"], d["high"], d["groups"], d["questions"]) == (1.0, 1.0, 1.0, 2, 3)
    q = paired_difference(a, b)
    assert (q["low"], q["high"]) == (0.0, 2.0)


def test_questions_of_one_document_moving_together_widen_the_interval():
    # five questions about a.html all gain 1, five about b.html gain nothing. By document the mean is
    # 0 (b twice, 1/4), 0.5 (1/2) or 1 (a twice, 1/4): the 95% interval is [0, 1]. By question it is
    # Binomial(10, 1/2) / 10, whose 2.5% and 97.5% points are 0.2 and 0.8 (P(X <= 1) = 11/1024 = 1.1%,
    # P(X <= 2) = 56/1024 = 5.5%): narrower, as if ten independent questions had been asked.
    a, b = [1.0] * 5 + [0.0] * 5, [0.0] * 10
    pages = ["a.html"] * 5 + ["b.html"] * 5
    d, q = by_document(a, b, pages), paired_difference(a, b)
    assert (d["diff"], d["low"], d["high"], d["groups"]) == (0.5, 0.0, 1.0, 2)
    assert (q["diff"], q["low"], q["high"]) == (0.5, 0.2, 0.8)
    assert (d["better"], d["worse"]) == (q["better"], q["worse"]) == (5, 0)


def test_a_document_is_its_set_of_gold_pages_and_an_unanswerable_question_stands_alone():
    # the same two pages in either order are one document; the two questions without a gold page are
    # not one document "[]" but two. So three documents: {x, y} (+1, +1), the first unanswerable (0),
    # the second (0). Drawn three at a time, the mean is 1 only when {x, y} is drawn every time and
    # no unanswerable one is ((1/3)^3 = 3.7%): the 97.5% point is 1 and the 2.5% point 0.
    a, b = [1.0, 1.0, 0.0, 0.0], [0.0] * 4
    d = by_document(a, b, [["x.html", "y.html"], ["y.html", "x.html", "x.html"], [], []])
    assert (d["diff"], d["groups"], d["low"], d["high"]) == (0.5, 3, 0.0, 1.0)


def test_gold_pages_must_match_the_questions():
    with pytest.raises(ValueError, match="3 questions' gold pages for 2 paired values"):
        by_document([1.0, 0.0], [0.0, 0.0], [["a"], ["b"], ["c"]])
