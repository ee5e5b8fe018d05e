"""Evaluation metrics against hand-computed values, and real runs on a tiny ingested set."""

from __future__ import annotations

import json
import math
import re
import zlib

import numpy as np
import pytest

from archivist.retrieval import evaluate as ev
from archivist.retrieval import evaluation as evm

# -- a deterministic fake embedder: hashed bag of words ------------------------------------------------

_STOP = {"the", "a", "an", "of", "is", "what", "which", "how", "and", "to", "in", "for", "does", "do", "many"}


class FakeEmbedder:
    """Bag of words hashed into 256 dimensions (crc32), normalized: same text, same vector, always."""

    name = "fake-bow"
    dim = 256
    model_id = "fake-bow:256"

    def embed(self, texts, batch_size: int = 32) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                if w not in _STOP:
                    out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
            n = np.linalg.norm(out[i])
            if n:
                out[i] /= n
        return out


DOCS = {
    "volcano.txt": "Volcano eruptions throw magma, ash and basalt rock into the sky above the crater.",
    "bakery.txt": "The bakery sells sourdough bread, croissants and rye loaves baked before dawn.",
    "harbor.txt": "Harbor cranes unload container ships; tugboats guide freighters past the lighthouse.",
    "orchard.txt": "The orchard grows apples, pears and plums; pickers harvest fruit in September.",
}


@pytest.fixture
def tiny_ws(ws, tmp_path):
    """A workspace holding DOCS, embedded with FakeEmbedder (chunking still uses the real tokenizer)."""
    from archivist.ingest.pipeline import ingest_paths

    folder = tmp_path / "tiny"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    results = ingest_paths(ws, [folder], embedder=FakeEmbedder(), progress=False)
    assert [r.status for r in results] == ["added"] * 4
    return ws


# -- pure retrieval metrics ----------------------------------------------------------------------------


def test_ranking_metrics_hand_computed():
    # relevant entries a, b, c; found at ranks 2 and 4 of ten
    credited = [None, "a", None, "b", None, None, None, None, None, None]
    m = evm.ranking_metrics(credited, n_relevant=3)
    assert m["hit@1"] == 0.0 and m["hit@5"] == 1.0 and m["hit@10"] == 1.0
    assert m["mrr@10"] == pytest.approx(0.5)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@10"] == pytest.approx(dcg / idcg)  # 1.0616 / 2.1309
    assert m["ndcg@10"] == pytest.approx(0.49819, abs=1e-4)
    assert m["recall@5"] == pytest.approx(2 / 3) and m["recall@10"] == pytest.approx(2 / 3)


def test_ranking_metrics_miss_and_perfect():
    assert evm.ranking_metrics([None] * 10, 1) == {"hit@1": 0.0, "hit@5": 0.0, "hit@10": 0.0, "mrr@10": 0.0,
                                                  "ndcg@10": 0.0, "recall@5": 0.0, "recall@10": 0.0}
    perfect = evm.ranking_metrics(["x", "y"], 2)
    assert perfect["ndcg@10"] == pytest.approx(1.0) and perfect["mrr@10"] == 1.0 and perfect["recall@10"] == 1.0
    # a find past the largest cutoff counts for nothing
    assert evm.ranking_metrics([None] * 10 + ["x"], 1)["mrr@10"] == 0.0
    with pytest.raises(ValueError):
        evm.ranking_metrics([], 0)


def test_credit_counts_each_relevant_entry_once_and_matches_names():
    passages = [("docs/hr/handbook.pdf", 7), ("docs/hr/handbook.pdf", 8), ("faq.html", 9), ("other.md", 42)]
    # by last path part, then the same document again (no second credit), then by chunk id
    assert evm.credit(passages, ["handbook.pdf", "42"]) == ["handbook.pdf", None, None, "42"]
    assert evm.credit(passages, ["docs/hr/handbook.pdf"]) == ["docs/hr/handbook.pdf", None, None, None]
    assert evm.credit(passages, ["hr/handbook.pdf"]) == [None, None, None, None]  # neither full name nor last part


def test_evaluate_rankings_over_plain_dicts():
    rankings = {"q1": ["d3", "d1", "d2"], "q2": ["d2", "d9"], "q3": []}
    relevant = {"q1": ["d1"], "q2": ["d2", "d5"], "q3": ["d4"]}
    m = evm.evaluate_rankings(rankings, relevant)
    assert m["hit@1"] == pytest.approx(round(1 / 3, 4))  # only q2
    assert m["hit@5"] == pytest.approx(round(2 / 3, 4))
    assert m["mrr@10"] == pytest.approx(round((0.5 + 1.0 + 0.0) / 3, 4))
    assert m["recall@10"] == pytest.approx(round((1.0 + 0.5 + 0.0) / 3, 4))


# -- pure answer metrics --------------------------------------------------------------------------------


def test_answer_text_metrics():
    assert evm.normalize("The Answer: 10:00, NOT 11!") == "answer 10 00 not 11"
    assert evm.contains_answer("20 weeks", "Employees get 20 weeks of paid leave [1].")
    assert not evm.contains_answer("20 weeks", "Employees get 120 weeks.")  # whole words only
    assert evm.token_f1("20 weeks", "20 weeks") == 1.0
    # gold {eur, 1, 500}; prediction {budget, is, eur, 1, 500, per, year}: p=3/7, r=1 -> 0.6
    assert evm.token_f1("EUR 1,500", "budget is EUR 1,500 per year") == pytest.approx(0.6)
    assert evm.token_f1("Voltaris", "no idea") == 0.0
    assert evm.supports("EUR 1,500", "The yearly budget is 1,500 EUR per person.")  # all words, other order
    assert not evm.supports("EUR 1,500", "The yearly budget is 1,200 EUR.")


def test_a_gold_answer_that_is_code_is_matched_as_written():
    """Normalizing "-n" to "n" counted "Type n for no." as naming sed's -n; "$0" matched "0 euros";
    "=" and "[...]" normalized to nothing and could never be right."""
    right = [("-n", "Use the `-n` option."), ("-n", "sed -n, --quiet, --silent"), ("=", "The = command prints it."),
             ("$0", "it is ‘$0’,"), ("-E", "sed -E 's/x/y/'"), ("--keep-index", "git stash push --keep-index."),
             ("--pages-as-heap", "run with --pages-as-heap=yes"), ("[...]", "the [...] form"),
             ("./.valgrindrc", "in ./.valgrindrc and"), ("dpkg -S", "run `dpkg -S` on it"),
             ("-m <parent-number>", "git revert -m <parent-number> X"),
             ("-mips32r2 -mplt", 'you must specify CFLAGS="-mips32r2 -mplt", e.g.')]
    wrong = [("-n", "Type n for no."), ("$0", "It costs 0 euros."), ("-E", "use -e here"),
             ("--keep-index", "keep the index"), ("./.valgrindrc", "~/.valgrindrc"), ("dpkg -S", "run dpkg -s foo"),
             ("%j", "j is a letter"), ("=", "no sign here"), ("-mplt", 'CFLAGS="-mips32r2"'),
             ("-mplt", 'CFLAGS="-mpltx"')]
    assert all(evm.literal(g) for g, _ in right + wrong)
    assert [g for g, t in right if not evm.contains_answer(g, t)] == []
    assert [g for g, t in wrong if evm.contains_answer(g, t)] == []
    assert not evm.supports("-n", "Type n for no, y for yes.")  # no loose word overlap for code
    assert not evm.literal("20 weeks") and not evm.literal("blame.ignoreRevsFile")
    assert evm.score_answer("--dry-run", "Use --dry-run [1].").contained


def test_answer_metrics_hand_computed():
    O = evm.AnswerOutcome
    outcomes = [
        O("q1", "20 weeks", "It is 20 weeks [1].", False, cited=["Leave is 20 weeks.", "Core hours 10 to 15."]),
        O("q2", "Voltaris", "The supplier is Ampere [1].", False, cited=["Voltaris was chosen."]),
        O("q3", "45 days", "The documents do not contain an answer to this question.", True),
        O("q4", None, "The documents do not contain an answer to this question.", True),
        O("q5", None, "The ticker is NWR.", False),
    ]
    m = evm.answer_metrics(outcomes)
    assert (m["questions"], m["answerable"], m["unanswerable"]) == (5, 3, 2)
    assert m["accuracy"] == pytest.approx(round(1 / 3, 4))
    assert m["citations"] == 3
    assert m["citation_precision"] == pytest.approx(round(2 / 3, 4))  # the core-hours passage does not support
    assert m["refusal_rate"] == 0.5
    assert m["false_refusal_rate"] == pytest.approx(round(1 / 3, 4))
    # the citation mark is not a word of the answer: {it, is, 20, weeks}: p=2/4 r=1 -> 2/3
    assert evm.score_answer("20 weeks", "It is 20 weeks [1].") == evm.AnswerScore(True, pytest.approx(2 / 3), frozenset({1}))
    assert evm.token_f1("20 weeks", "It is 20 weeks [1].") == pytest.approx(4 / 7)  # token_f1 itself takes the text as it is
    assert m["token_f1"] == pytest.approx(round((2 / 3 + 0 + 0) / 3, 4))


# -- question sets ----------------------------------------------------------------------------------------


def test_load_set_errors_name_the_line(tmp_path):
    p = tmp_path / "set.jsonl"
    p.write_text('{"question": "ok?", "relevant": ["a.txt"]}\n{not json}\n')
    with pytest.raises(ev.EvalSetError, match=r"set.jsonl:2: not JSON"):
        ev.load_set(p, "retrieval")
    p.write_text('{"question": "ok?"}\n')
    with pytest.raises(ev.EvalSetError, match=r":1: needs \"relevant\""):
        ev.load_set(p, "retrieval")
    with pytest.raises(ev.EvalSetError, match="needs \"answer\""):
        ev.load_set(p, "answers")
    with pytest.raises(ev.EvalSetError, match="no such question set"):
        ev.load_set(tmp_path / "missing.jsonl", "retrieval")


def test_load_set_accepts_document_field_and_skips_unanswerable_for_retrieval(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text("# comment\n"
                 '{"question": "Price of NW-4410?", "answer": "18950.00", "document": "price-list.csv"}\n\n'
                 '{"question": "Stock ticker?", "answer": null, "document": null}\n')
    r = ev.load_set(p, "retrieval")
    assert [(q.question, q.relevant) for q in r] == [("Price of NW-4410?", ["price-list.csv"])]
    a = ev.load_set(p, "answers")
    assert [(q.answer, q.answerable) for q in a] == [("18950.00", True), (None, False)]


# -- real runs on a tiny ingested set -------------------------------------------------------------------------


def test_evaluate_retrieval_on_tiny_set_with_fake_embedder(tiny_ws):
    from archivist.retrieval.rerank import CoverageReranker

    qs = [ev.Question("When do pickers harvest apples and pears?", ["orchard.txt"]),
          ev.Question("Which rock comes out of a volcano crater?", ["volcano.txt"]),
          ev.Question("sourdough croissants", ["bakery.txt"]),
          ev.Question("Who guides the freighters past the lighthouse?", ["harbor.txt", "bakery.txt"])]
    fake = FakeEmbedder()
    res = ev.evaluate_retrieval(tiny_ws, qs, reranker=CoverageReranker(tiny_ws, fake), embedder=fake)
    assert res["questions"] == 4 and set(res["modes"]) == set(ev.MODES)
    for mode, m in res["modes"].items():
        # every question's own document shares rare words with it and no other does: it ranks first
        assert m["hit@1"] == 1.0 and m["mrr@10"] == 1.0, mode
    # the last question has a second "relevant" document it shares no word with:
    # lexical finds only documents sharing a term: bakery.txt never comes up for the harbor question
    assert res["modes"]["lexical"]["recall@10"] == pytest.approx(round(3.5 / 4, 4))
    # dense returns all four documents, so the second relevant one is found, at rank >= 2
    assert res["modes"]["dense"]["recall@10"] == 1.0
    assert res["per_query"][0]["dense"]["top"][0] == "tiny/orchard.txt"
    # every mode found every question's document first: hybrid is level with each, on every question
    for other in ("dense", "lexical"):
        c = res["comparisons"][f"hybrid vs {other}"]
        assert c["hit@5"]["diff"] == 0.0 and c["hit@5"]["better"] == c["hit@5"]["worse"] == 0
    assert c["mrr@10"]["questions"] == 4


def test_paired_difference_counts_wins_and_bounds_the_mean():
    same = evm.paired_difference([1, 0, 1, 0.5], [1, 0, 1, 0.5])
    assert same == {"diff": 0.0, "low": 0.0, "high": 0.0, "better": 0, "worse": 0, "questions": 4}
    every = evm.paired_difference([1.0] * 20, [0.0] * 20)
    assert (every["diff"], every["low"], every["high"], every["better"]) == (1.0, 1.0, 1.0, 20)
    # 5 better and 1 worse out of 500: a lead of 0.008 whose interval reaches down to 0
    a, b = [1.0] * 500, [1.0] * 500
    for i in range(5):
        b[i] = 0.0
    a[10] = 0.0
    small = evm.paired_difference(a, b)
    assert small["diff"] == 0.008 and (small["better"], small["worse"]) == (5, 1)
    assert small["low"] <= 0.0 < small["diff"] < small["high"] < 0.03
    # 40 better and 0 worse out of 100: the interval stays clear of 0
    clear = evm.paired_difference([1.0] * 100, [0.0] * 40 + [1.0] * 60)
    assert clear["diff"] == 0.4 and 0.25 < clear["low"] < 0.4 < clear["high"] < 0.55
    assert evm.paired_difference(a, b, seed=0) == small and evm.paired_difference(a, b, seed=1)["diff"] == 0.008
    with pytest.raises(ValueError, match="length"):
        evm.paired_difference([1, 0], [1])
    with pytest.raises(ValueError, match="no questions"):
        evm.paired_difference([], [])


def test_compare_modes_reads_per_query_rows():
    rows = [{"hybrid": {"hit@5": 1.0, "mrr@10": 1.0}, "dense": {"hit@5": 1.0, "mrr@10": 0.5}},
            {"hybrid": {"hit@5": 1.0, "mrr@10": 0.5}, "dense": {"hit@5": 0.0, "mrr@10": 0.0}}]
    c = evm.compare_modes(rows, "hybrid", "dense")
    assert c["hit@5"]["diff"] == 0.5 and c["hit@5"]["better"] == 1 and c["hit@5"]["worse"] == 0
    assert c["mrr@10"]["diff"] == 0.5 and c["mrr@10"]["better"] == 2
    line = evm.format_comparison("hybrid vs dense", c)
    assert line.startswith("hybrid vs dense: hit@5 +0.5000 (95% CI ") and "better on 2, worse on 0" in line


def test_store_and_list_evaluations(ws):
    first = evm.store_evaluation(ws, "retrieval", "set-a.jsonl", {"modes": {"dense": {"hit@5": 0.5}}}, user=None)
    second = evm.store_evaluation(ws, "answers", "set-b.jsonl", {"metrics": {"accuracy": 0.25}}, user=None)
    rows = evm.list_evaluations(ws, user=None)
    assert [r.id for r in rows] == [second, first]
    assert rows[1].results["modes"]["dense"]["hit@5"] == 0.5 and rows[1].user == "admin" and rows[1].error is None
    assert [r.set_name for r in evm.list_evaluations(ws, user=None, kind="answers")] == ["set-b.jsonl"]
    with pytest.raises(ValueError, match="kind must be one of retrieval, answers"):
        evm.store_evaluation(ws, "speed", "x", {}, user=None)


def test_cli_eval_retrieval_json_on_real_model(ws, tmp_path, embedder, capsys):
    """The real command on a tiny set ingested with the real embedder; results stored in the workspace."""
    from archivist.cli import main
    from archivist.ingest.pipeline import ingest_paths

    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    ingest_paths(ws, [folder], embedder=embedder, progress=False)
    qset = tmp_path / "qs.jsonl"
    qset.write_text("\n".join(json.dumps(q) for q in [
        {"question": "Which fruit trees grow in the orchard?", "relevant": ["orchard.txt"]},
        {"question": "What does the bakery bake before dawn?", "relevant": ["bakery.txt"]},
        {"question": "What unloads container ships in the port?", "relevant": ["harbor.txt"]},
    ]))
    assert main(["eval", "retrieval", "--set", str(qset), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["modes"]) == {"dense", "lexical", "hybrid", "hybrid+rerank"}
    assert out["unsearchable"] == []
    assert out["modes"]["dense"]["hit@1"] == 1.0  # MiniLM gets these three right
    assert out["modes"]["hybrid"]["hit@5"] == 1.0
    assert set(out["comparisons"]) == {"hybrid vs dense", "hybrid vs lexical"}
    assert out["comparisons"]["hybrid vs dense"]["hit@5"]["questions"] == 3
    assert main(["eval", "retrieval", "--set", str(qset), "--mode", "dense", "--mode", "hybrid", "--no-store"]) == 0
    text = capsys.readouterr().out
    assert "hybrid vs dense: hit@5 +0.0000 (95% CI +0.0000..+0.0000; better on 0, worse on 0)" in text
    assert "hybrid vs lexical" not in text
    stored = evm.list_evaluations(ws, user=None, kind="retrieval")
    assert [(e.id, e.set_name, e.user) for e in stored] == [(out["id"], "qs.jsonl", "admin")]
    # a question naming a document no search can find is said, not silently scored as a miss
    typo = tmp_path / "typo.jsonl"
    chunk = ws.db.execute("SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
                          "WHERE d.path LIKE '%harbor.txt'").fetchone()[0]
    typo.write_text("\n".join(json.dumps(q) for q in [
        {"question": "Which fruit trees grow in the orchard?", "relevant": ["orchrad.txt"]},
        {"question": "What does the bakery bake before dawn?", "relevant": ["docs/bakery.txt"]},
        {"question": "What unloads container ships in the port?", "relevant": [str(chunk)]},
        {"question": "Who runs the lighthouse?", "relevant": ["999999"]}]))
    assert main(["eval", "retrieval", "--set", str(typo), "--mode", "lexical", "--no-store", "--json"]) == 0
    captured = capsys.readouterr()
    unknown = json.loads(captured.out)["unsearchable"]
    assert [(u["line"], u["relevant"]) for u in unknown] == [(1, ["orchrad.txt"]), (4, ["999999"])]
    assert "2 question(s) of" in captured.err and "line 1: orchrad.txt" in captured.err
    # a bad set is a clear error, exit 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": ""}\n')
    assert main(["eval", "retrieval", "--set", str(bad)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err


def test_status_metrics_hand_computed():
    """key accuracy, confident misses, uncertain and not-found rates, by the status the user saw."""
    from archivist.retrieval.evaluation import AnswerOutcome, answer_metrics

    o = [
        AnswerOutcome("q1", "--keep-index", "Run git stash push --keep-index [1].", False, status="answered"),  # right
        AnswerOutcome("q2", "4417", "Call extension 4418 [1].", False, status="answered"),  # confident miss
        AnswerOutcome("q3", "20 weeks", "No answer could be verified; closest: 20 weeks [1]", False, status="uncertain"),
        AnswerOutcome("q4", "EUR 250", "The documents do not contain an answer.", True, status="not_found"),
        AnswerOutcome("q5", "rebase", "Use git pull --rebase [2].", False, status="answered",
                      alternatives=["--rebase"]),  # right by an alternative spelling
        AnswerOutcome("u1", None, "The documents do not contain an answer.", True, status="not_found"),
        AnswerOutcome("u2", None, "Closest passages ...", False, status="uncertain"),
        AnswerOutcome("u3", None, "An answer [1].", False, status="answered"),
    ]
    m = answer_metrics(o)
    assert (m["answerable"], m["unanswerable"]) == (5, 3)
    assert m["key_accuracy"] == 0.4  # q1, q5 of 5
    assert m["confident_miss_rate"] == 0.2  # q2
    assert m["uncertain_rate"] == 0.2 and m["not_found_rate"] == 0.2
    assert m["accuracy"] == 0.6  # contains the gold whatever the status: q1, q3, q5
    assert m["unanswerable_not_found"] == round(1 / 3, 4)


def test_key_accuracy_reads_the_key_span_shown_first():
    """A quote shown as the answer is right only when the key span it starts with names the gold: the
    sentence after a wrong span holding the gold does not make it right (a confident miss). Without a
    span, the text is read; the stored rows give key_accuracy the same way (answer_scores)."""
    from archivist.retrieval.evaluation import AnswerOutcome, answer_metrics, answer_scores, key_right

    o = [
        AnswerOutcome("q1", "apt-mark auto", "aptitude — Mark it with apt-mark auto [1]", False, status="answered",
                      key="aptitude"),  # wrong span, the sentence holds the gold: a miss
        AnswerOutcome("q2", "getfacl", "getfacl — getfacl(1) retrieves the ACLs [1]", False, status="answered",
                      key="getfacl"),  # right span
        AnswerOutcome("q3", "9418", "The daemon listens on port 9418 [1]", False, status="answered"),  # no span: the text
        AnswerOutcome("q4", "-v", "--verbose — Be verbose [1]", False, status="answered", key="--verbose",
                      alternatives=["--verbose"]),  # right by an alternative spelling
        AnswerOutcome("q5", "atq", "at — Use atq [1]", False, status="uncertain", key=""),
    ]
    assert [key_right(x) for x in o] == [False, True, True, True, True]
    m = answer_metrics(o)
    assert m["key_accuracy"] == 0.6 and m["confident_miss_rate"] == 0.2  # q2, q3, q4 right; q1 a miss
    assert m["accuracy"] == 1.0  # every text holds the gold
    rows = [{"gold": x.gold, "status": x.status, "contains_gold": True, "key_right": key_right(x)} for x in o]
    assert answer_scores(rows)["key_accuracy"] == [0.0, 1.0, 1.0, 1.0, 0.0]
    old = [{k: v for k, v in r.items() if k != "key_right"} for r in rows]  # stored before key_right: by the text
    assert answer_scores(old)["key_accuracy"] == [1.0, 1.0, 1.0, 1.0, 0.0]


def test_answer_sets_accept_several_spellings(tmp_path):
    from archivist.retrieval.evaluate import EvalSetError, load_set

    f = tmp_path / "s.jsonl"
    f.write_text('{"question": "Which flag keeps the index?", "answer": ["--keep-index", "keep-index"], "split": "heldout"}\n'
                 '{"question": "Who won the 1998 World Cup?", "answer": null}\n')
    q1, q2 = load_set(f, "answers")
    assert (q1.answer, q1.answers, q1.extra["split"]) == ("--keep-index", ["--keep-index", "keep-index"], "heldout")
    assert (q2.answer, q2.answerable) == (None, False)
    f.write_text('{"question": "x?", "answer": []}\n')
    with pytest.raises(EvalSetError, match=r"s.jsonl:1: .*non-empty list"):
        load_set(f, "answers")


def test_an_uncertain_answer_is_scored_on_its_quote_not_its_notice():
    """Before: `outcome_of` scored the whole shown text, notice included, so a gold such as
    "question" was "contained" in every uncertain answer, and an uncertain quote's token F1 was
    diluted by the notice's 14 words."""
    from archivist.records import Answer
    from archivist.retrieval.answer import UNCERTAIN

    quote = "Compression level 6 is the default [1]"
    shown = Answer(question="What level does gzip use by default?", answer=f"{UNCERTAIN}\n{quote}", citations=[],
                   passages=[], status="uncertain", mode="extractive", notice=UNCERTAIN)
    o = ev.outcome_of(ev.Question(question=shown.question, answer="6"), shown)
    assert o.answer == quote
    # the quote's 5 scored tokens hold the gold's one: precision 1/5, recall 1, F1 1/3 (with the notice: 2/15)
    assert evm.score_answer("6", o.answer).f1 == pytest.approx(1 / 3)
    assert evm.score_answer("6", shown.answer).f1 < 0.15
    word = ev.outcome_of(ev.Question(question=shown.question, answer="question"), shown)
    assert not evm.score_answer("question", word.answer).contained
