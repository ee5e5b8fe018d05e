"""The frozen public evaluation sets (bench/evalsets/PUBLIC.md) and their validator; no model, no retrieval."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.append(str(BENCH))  # appended: never shadows an installed module
sys.path.append(str(BENCH / "evalsets"))

import check_sets  # noqa: E402

SETS = sorted(check_sets.SETS)
SPLIT_SETS = sorted(set(SETS) - check_sets.HELD_OUT_ONLY)  # the sets tuned on (their tuning splits)


def _load(name: str) -> list[dict]:
    return [json.loads(line) for line in (BENCH / "evalsets" / f"{name}.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", SPLIT_SETS)
def test_set_shape_counts_and_splits(name):
    qs = _load(name)
    splits = check_sets.expected_splits(qs)
    assert [check_sets.shape_errors(q, splits) for q in qs] == [[]] * len(qs)
    assert len({q["id"] for q in qs}) == len(qs) == len({check_sets.normalize(q["question"]) for q in qs})
    kinds = Counter(q["kind"] for q in qs)
    answerable = len(qs) - kinds["unanswerable"]
    assert answerable >= 110 and kinds["unanswerable"] >= 15
    for kind in ("keyword", "paraphrase", "detail"):  # roughly thirds
        assert kinds[kind] >= answerable / 4, (kind, kinds)
    for kind, n in kinds.items():  # a third of every kind held out
        held = sum(1 for q in qs if q["kind"] == kind and q["split"] == "heldout")
        assert held == round(n / 3), (kind, held, n)


def test_the_valgrind_set_is_held_out_whole_with_yes_no_questions():
    qs = _load("valgrind")
    splits = check_sets.expected_splits(qs, held_out_only=True)
    assert [check_sets.shape_errors(q, splits) for q in qs] == [[]] * len(qs)
    assert {q["split"] for q in qs} == {"heldout"}
    kinds = Counter(q["kind"] for q in qs)
    assert all(kinds[k] >= 12 for k in ("keyword", "paraphrase", "detail", "yesno")) and kinds["unanswerable"] >= 6
    assert Counter(q["answer"][0] for q in qs if q["kind"] == "yesno") == {"yes": 6, "no": 6}
    bad = {"id": "v-1", "question": "Does it run on Windows?", "relevant": ["a.html"], "answer": ["maybe"],
           "kind": "yesno", "split": "heldout"}
    assert check_sets.shape_errors(bad, {"v-1": "heldout"}) == ['yesno needs answer ["yes"] or ["no"]']


@pytest.mark.parametrize("name", SETS)
def test_set_answers_are_in_the_built_corpus(name):
    folder = BENCH / "data" / "public" / check_sets.SETS[name]
    if not folder.is_dir():
        pytest.skip(f"build the corpus first: python bench/corpora.py --out bench/data/public --corpus {name} ({folder})")
    errors, counts = check_sets.check(BENCH / "evalsets" / f"{name}.jsonl", folder)
    assert errors == 0 and sum(counts.values()) == len(_load(name))


def test_expected_splits_hold_out_a_third_of_each_kind_by_id_only():
    qs = [{"id": f"x-{i:03d}", "kind": "keyword" if i % 2 else "detail"} for i in range(30)]
    a = check_sets.expected_splits(qs)
    b = check_sets.expected_splits(list(reversed(qs)))
    assert a == b  # order of the file does not matter
    held = Counter(q["kind"] for q in qs if a[q["id"]] == "heldout")
    assert held == {"keyword": 5, "detail": 5}


def test_page_text_joins_inline_markup_and_separates_blocks(tmp_path):
    page = tmp_path / "p.html"
    page.write_text('<html><head><title>T</title><style>x{}</style></head><body><p>See <span class="n">math.</span>'
                    '<span>comb</span>(n,&nbsp;k)</p><p>Next\u2019s</p></body></html>', encoding="utf-8")
    assert check_sets.page_text(page) == "t see math.comb(n, k) next's"


def test_check_reports_each_kind_of_bad_line(tmp_path, capsys):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.html").write_text("<p>Use --keep-index to keep the index.</p>", encoding="utf-8")
    good = {"id": "t-001", "question": "How do I keep the index?", "relevant": ["a.html"],
            "answer": ["--keep-index"], "kind": "keyword", "split": None}
    lines = [
        good,
        {**good, "id": "t-002", "question": "Missing page question here?", "relevant": ["b.html"]},
        {**good, "id": "t-003", "question": "Answer not on the page?", "answer": ["--keep-index", "--nope"]},
        {**good, "id": "t-004", "question": "Unanswerable with a page?", "kind": "unanswerable"},
        {**good, "id": "t-001", "question": "Duplicate id question here?"},
    ]
    splits = check_sets.expected_splits(lines)
    for q in lines:
        q["split"] = splits[q["id"]]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in lines), encoding="utf-8")
    errors, _ = check_sets.check(path, corpus)
    out = capsys.readouterr().out
    assert errors == 4
    assert "(t-002): pages not in the corpus: ['b.html']" in out
    assert "(t-003): key answer ['--nope'] in none of ['a.html']" in out
    assert "(t-004): unanswerable needs relevant [] and answer null" in out
    assert "(t-001): duplicate id" in out

    lines[0]["split"] = "tuning" if lines[0]["split"] == "heldout" else "heldout"
    path.write_text(json.dumps(lines[0]) + "\n", encoding="utf-8")
    errors, _ = check_sets.check(path, corpus)
    assert errors == 1 and "the sha256 rule says" in capsys.readouterr().out


def test_handbook_headings_give_stable_page_numbers():
    from bs4 import BeautifulSoup

    import corpora

    def head(text):
        return corpora._heading(BeautifulSoup(f'<div class="section"><h3>{text}</h3></div>', "html.parser"))

    assert head("6.2.1. Initialization") == ("6.2.1", "Initialization")
    assert head("A.7. Tails") == ("A.7", "Tails")
    assert head("B.1.4. Managing Processes") == ("B.1.4", "Managing Processes")
    assert head("1. Why This Book?") == ("1", "Why This Book?")
