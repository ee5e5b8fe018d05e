"""A data scientist recomputes the numbers `archivist eval` and the fine-tune's evaluation report.

Every expected value below was computed by hand from the per-question output (the formulas are in
docs/evaluation.md and docs/finetune.md, section 4); each test failed on the code before its fix.
"""

from __future__ import annotations

import json

import pytest

from archivist.retrieval import evaluate as ev
from archivist.retrieval import evaluation as evm
from conftest import ingest_texts

# Four short manual pages, one fact each, under man/ (so a document's full name and last part differ).
PAGES = {
    "gzip.txt": "gzip reduces the size of files with Lempel-Ziv coding. The default compression level of gzip is 6; "
                "level 9 gives the best compression and level 1 the fastest.",
    "bzip2.txt": "bzip2 compresses files with the Burrows-Wheeler block sorting algorithm. Files compressed with the "
                 "default 900 k block size need about 3700 kbytes to decompress.",
    "cmp.txt": "cmp compares two files byte by byte. The exit status of cmp is 0 if the inputs are the same, 1 if they "
               "differ and 2 if there was trouble.",
    "bc.txt": "bc is an arbitrary precision calculator language. The scale variable of bc sets the digits after the "
              "decimal point; the legal values of ibase are 2 through 36.",
}


@pytest.fixture
def man_ws(ws, embedder, tmp_path):
    from archivist.ingest.pipeline import ingest_paths

    folder = tmp_path / "man"
    folder.mkdir()
    for name, text in PAGES.items():
        (folder / name).write_text(text)
    ingest_paths(ws, [folder], embedder=embedder, progress=False)  # a folder: documents named man/<page>
    assert sorted(r["path"] for r in ws.db.execute("SELECT path FROM documents")) == sorted(f"man/{n}" for n in PAGES)
    return ws


# -- retrieval: one document named twice is one relevant item --------------------------------------------


def test_a_document_named_by_its_full_name_and_its_last_part_is_one_relevant_item():
    # "man/gzip.txt" and "gzip.txt" name the same document. Ranked first, it is found whole:
    # recall@5 = 1/1 and nDCG@10 = (1/log2 2) / (1/log2 2) = 1. Counted as two items, the code gave
    # recall@5 = 1/2 and nDCG@10 = 1 / (1 + 1/log2 3) = 0.6131 for this perfect ranking.
    ranked = {"q": ["man/gzip.txt", "man/bzip2.txt", "man/cmp.txt"]}
    m = evm.evaluate_rankings(ranked, {"q": ["man/gzip.txt", "gzip.txt"]})
    assert (m["hit@1"], m["mrr@10"], m["recall@5"], m["ndcg@10"]) == (1.0, 1.0, 1.0, 1.0)
    # two passages of the document: still one find (before: nDCG (1 + 1/log2 4) / (1 + 1/log2 3) = 0.9197)
    m = evm.evaluate_rankings({"q": ["man/gzip.txt", "man/bzip2.txt", "man/gzip.txt"]}, {"q": ["gzip.txt", "man/gzip.txt"]})
    assert (m["recall@5"], m["ndcg@10"]) == (1.0, 1.0)
    # two different documents stay two items: the second found at rank 3
    m = evm.evaluate_rankings(ranked, {"q": ["gzip.txt", "cmp.txt"]})
    assert m["recall@5"] == 1.0 and m["ndcg@10"] == round((1 + 1 / 2) / (1 + 1 / 1.5849625007211562), 4)
    assert evm.distinct(["gzip.txt", "man/gzip.txt", "gzip.txt", "12", "cmp.txt"]) == ["man/gzip.txt", "12", "cmp.txt"]


def test_eval_retrieval_scores_duplicate_and_unknown_gold_as_computed_by_hand(man_ws, embedder, tmp_path, cli):
    path = tmp_path / "set.jsonl"
    rows = [{"question": "What is the default compression level of gzip?", "relevant": ["man/gzip.txt", "gzip.txt"]},
            {"question": "What is the default compression level of gzip?", "relevant": ["gzip.txt", "orchard.txt"]},
            {"question": "What are the legal values of ibase?", "relevant": ["nowhere.txt"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    qs = ev.load_set(path, "retrieval")
    r = ev.evaluate_retrieval(man_ws, qs, modes=("dense",), embedder=embedder)
    per = [q["dense"] for q in r["per_query"]]
    assert all(p["top"][0] == "man/gzip.txt" for p in per[:2])  # one chunk per page: gzip ranks first for both
    assert (per[0]["recall@5"], per[0]["ndcg@10"]) == (1.0, 1.0)  # before: 0.5 and 0.6131
    # gzip.txt at rank 1, orchard.txt never: recall 1/2, nDCG 1 / (1 + 1/log2 3) = 0.6131
    assert (per[1]["hit@1"], per[1]["mrr@10"], per[1]["recall@5"], per[1]["ndcg@10"]) == (1.0, 1.0, 0.5, 0.6131)
    assert per[2]["hit@10"] == per[2]["mrr@10"] == 0.0
    assert r["modes"]["dense"]["ndcg@10"] == round((1.0 + 0.6131 + 0.0) / 3, 4)
    assert r["modes"]["dense"]["recall@5"] == 0.5
    # the unknown entry of question 2 is named (before: only questions with no known entry were)
    assert r["unsearchable"] == [{"line": 3, "question": rows[2]["question"], "relevant": ["nowhere.txt"]}]
    assert r["unknown_entries"] == [{"line": 2, "question": rows[1]["question"], "entries": ["orchard.txt"]}]
    man_ws.close()
    out = cli("eval", "retrieval", "--set", str(path), "--mode", "dense", "--no-store")
    assert out.returncode == 0, out.stderr
    assert "1 question(s) of" in out.stderr and "(line 2: orchard.txt)" in out.stderr
    # lines 1 and 2 ask the same question: it weighs twice in every mean, and the run says so
    assert "1 question(s) of " + str(path) + " repeat an earlier one (line 2 repeats line 1)" in out.stderr


def test_a_copy_of_the_gold_page_is_collapsed_the_same_way_in_every_mode(man_ws, embedder, tmp_path):
    # The same page ingested again under another name: its chunks get the same vectors (and
    # texts), the search keeps one of each pair of copies, and which one decided whether the
    # question found its gold. Dense search kept the copy (MRR 0) and lexical search the page
    # (MRR 1): a "lead" of lexical over dense that was only the order of tied scores.
    from archivist.ingest.pipeline import ingest_paths

    copy = tmp_path / "mirror"
    copy.mkdir()
    (copy / "gzip-copy.txt").write_text(PAGES["gzip.txt"])
    ingest_paths(man_ws, [copy], embedder=embedder, progress=False)
    qs = [ev.Question("What is the default compression level of gzip?", relevant=["man/gzip.txt"], line=1)]
    r = ev.evaluate_retrieval(man_ws, qs, modes=("dense", "lexical", "hybrid"), embedder=embedder)
    tops = {m: r["per_query"][0][m]["top"] for m in ("dense", "lexical", "hybrid")}
    assert all("mirror/gzip-copy.txt" not in t and t[0] == "man/gzip.txt" for t in tops.values()), tops
    assert {m: r["modes"][m]["mrr@10"] for m in tops} == {"dense": 1.0, "lexical": 1.0, "hybrid": 1.0}


def test_stored_runs_on_part_of_a_set_are_not_the_same_set(man_ws, tmp_path, cli):
    # The evaluation page shows the latest run's "change since" the previous run of the same set
    # name. A run on the first question only (--limit 1: recall@5 1.0) followed by the whole set
    # (0.5) was shown as a drop of 0.5 on "set.jsonl", and the stored run did not say it was partial.
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps({"question": "What is the default compression level of gzip?", "relevant": ["gzip.txt"],
                                "split": "tuning"}) + "\n"
                    + json.dumps({"question": "What are the legal values of ibase?", "relevant": ["nowhere.txt"],
                                  "split": "heldout"}) + "\n")
    man_ws.close()
    for extra in (["--limit", "1"], ["--split", "heldout"], []):
        assert cli("eval", "retrieval", "--set", str(path), "--mode", "dense", *extra).returncode == 0
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    with open_checked(Settings.from_env()) as w:
        runs = evm.list_evaluations(w, user=None, kind="retrieval")
    assert [(r.set_name, r.results["questions"], r.results["split"], r.results["limit"]) for r in runs] == [
        ("set.jsonl", 2, None, None), ("set.jsonl (split heldout)", 1, "heldout", None), ("set.jsonl (first 1)", 1, None, 1)]
    assert [r.results["modes"]["dense"]["recall@5"] for r in runs] == [0.5, 0.0, 1.0]


def test_the_text_table_keeps_each_value_under_its_column():
    # `eval answers` prints columns such as false_refusal_rate (18 characters) and citation_precision:
    # values were padded to 10 whatever the name, so every value after a long name slid left, and
    # the count of citations (2) stood under "false_refusal_rate"
    text = evm.format_table({"answers": {"accuracy": 0.5, "false_refusal_rate": 0.25, "citations": 2,
                                         "citation_precision": 1.0}}, first="set")
    head, _, row = text.splitlines()
    for name, value in (("accuracy", "0.5000"), ("false_refusal_rate", "0.2500"), ("citations", "2"),
                        ("citation_precision", "1.0000")):
        assert row.index(value, head.index(name)) + len(value) == head.index(name) + len(name), (name, text)


# -- question files: byte order mark, encoding, line separators ------------------------------------------


def test_question_and_training_files_saved_by_windows_editors_are_read(tmp_path):
    from archivist.finetune.dataset_store import DatasetError
    from archivist.finetune.datasets import examples_from_file

    bom = tmp_path / "bom.jsonl"  # Notepad's "UTF-8": a byte order mark, CRLF line ends
    bom.write_bytes(b'\xef\xbb\xbf{"question": "What is gzip?", "answer": "a compressor"}\r\n'
                    b'{"question": "What is bc?", "answer": null}\r\n')
    qs = ev.load_set(bom, "answers")
    assert [(q.question, q.answer, q.line) for q in qs] == [("What is gzip?", "a compressor", 1), ("What is bc?", None, 2)]
    chats = tmp_path / "chats.jsonl"
    chats.write_bytes(b'\xef\xbb\xbf{"prompt": "What is gzip?", "completion": "A compressor."}\r\n')
    assert [e.answer for e in examples_from_file(chats)] == ["A compressor."]
    # a question may hold U+2028 or U+0085 as they are (json.dumps(ensure_ascii=False) writes them so):
    # they are no line ends of JSONL
    odd = tmp_path / "odd.jsonl"
    odd.write_text(json.dumps({"question": "gzip\u2028or\x85bzip2?", "relevant": ["gzip.txt"]}, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    assert [q.question for q in ev.load_set(odd, "retrieval")] == ["gzip\u2028or\x85bzip2?"]
    # Latin-1: an error naming the file and the line, not a bare UnicodeDecodeError
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"question": "What is gzip?", "relevant": ["gzip.txt"]}\n{"question": "caf\xe9?", "relevant": ["bc.txt"]}\n')
    with pytest.raises(ev.EvalSetError, match=r"latin\.jsonl:2: not UTF-8 text \(byte 0xe9\)"):
        ev.load_set(latin, "retrieval")
    latin.write_bytes(b'{"prompt": "caf\xe9?", "completion": "A drink."}\n')
    with pytest.raises(DatasetError, match=r"latin\.jsonl:1: not UTF-8 text \(byte 0xe9\)"):
        examples_from_file(latin)


# -- answers: the stored run names the model that answered --------------------------------------------


def test_eval_answers_names_the_adapter_that_answered_not_active(man_ws, embedder, llm, tmp_path, cli):
    from archivist import adapters

    src = tmp_path / "adapter"
    src.mkdir()
    (src / "adapter_config.json").write_text("{}")
    adapters.register(man_ws, "man-v1", src, man_ws.settings.llm, {"better": True, "reason": "test"}, {"dataset": {"name": "d"}})
    assert adapters.active(man_ws, None) == "man-v1"
    qs = [ev.Question("What is the default compression level of gzip?", answer="6", answers=["6"])]
    r = ev.evaluate_answers(man_ws, qs, mode="extractive", llm=llm, embedder=embedder)
    # before: "active", the same words for runs of two different adapters (or of the base model)
    assert r["adapter"] == "man-v1"
    assert ev.evaluate_answers(man_ws, qs, adapter=None, mode="extractive", llm=llm, embedder=embedder)["adapter"] is None
    with pytest.raises(LookupError):
        ev.evaluate_answers(man_ws, qs, adapter="nope", mode="extractive", llm=llm, embedder=embedder)


# -- fine-tune: the bootstrap draws documents, the held-out sample spans them -----------------------------


def _scores(per_example: list[float]) -> dict:
    n = len(per_example)
    return {"accuracy": sum(per_example) / n, "f1": sum(per_example) / n, "citations": None, "perplexity": 2.0,
            "per_example": per_example}


def test_the_bootstrap_of_held_out_examples_draws_whole_documents():
    from archivist.finetune import evaluate

    # document A: 3 examples the adapter gets right (+1 each), document B: 1 it gets wrong (-1).
    # Two documents drawn with replacement: AA mean +1 (p 1/4), AB or BA (3 - 1) / 4 = +0.5 (p 1/2),
    # BB -1 (p 1/4); the 2.5% and 97.5% points are -1 and +1.
    d = evm.paired_difference([1, 1, 1, 0], [0, 0, 0, 1], groups=["A", "A", "A", "B"])
    assert (d["diff"], d["low"], d["high"], d["better"], d["worse"], d["groups"]) == (0.5, -1.0, 1.0, 3, 1, 2)
    # drawn one by one (no groups) the low end is -0.5: P(every draw is B's) = 1/256 < 2.5%
    assert evm.paired_difference([1, 1, 1, 0], [0, 0, 0, 1])["low"] == -0.5
    # one group: the examples are drawn one by one (one document cannot show how documents vary)
    assert evm.paired_difference([1, 1, 1, 0], [0, 0, 0, 1], groups=["A"] * 4) == {
        **evm.paired_difference([1, 1, 1, 0], [0, 0, 0, 1]), "groups": 1}
    # The held-out split seen on man pages: 15 examples of file(1), 1 of gzip(1). The adapter gains
    # on every file(1) example and on none of gzip's: drawn by example the interval is far above 0
    # (it was activated); drawn by document, BB (p 1/4) gives 0, so the split cannot tell.
    base, adapter = _scores([0.0] * 16), _scores([1.0] * 15 + [0.0])
    assert evaluate.decide(base, adapter)[0]
    better, reason, diff = evaluate.decide(base, adapter, ["doc:8"] * 15 + ["doc:9"])
    assert not better and (diff["diff"], diff["low"], diff["high"], diff["groups"]) == (0.9375, 0.0, 1.0, 2)
    assert reason.startswith("the held-out split cannot tell it from the base")
    assert "16 held-out examples, score +0.938 (95% CI +0.000..+1.000; better on 15, worse on 0; 2 held-out documents" in reason


def test_the_verdict_weighs_each_held_out_example_once():
    from archivist.finetune import evaluate

    # 10 held-out examples, one with a gold passage (generated from a document), nine without
    # (people's corrections). Base: right on the one with the passage, citing it: (1 + 1 + 1) / 3 = 1;
    # wrong on the nine: 0. Adapter: right on it without the citation: (1 + 1 + 0) / 3 = 0.6667, and
    # right on one of the nine: (1 + 1) / 2 = 1. Per example: base 1/10 = 0.1, adapter 1.6667/10 =
    # 0.1667. Means of the means: base (0.1 + 0.1 + 1) / 3 = 0.4, adapter (0.2 + 0.2 + 0) / 3 = 0.1333,
    # "worse" though it answered twice as many questions and the bootstrap compares +0.0667.
    base = {"accuracy": 0.1, "f1": 0.1, "citations": 1.0, "perplexity": 2.0, "per_example": [1.0] + [0.0] * 9}
    adapter = {"accuracy": 0.2, "f1": 0.2, "citations": 0.0, "perplexity": 2.0,
               "per_example": [0.6667, 1.0] + [0.0] * 8}
    better, reason = evaluate.verdict(base, adapter)
    assert better and reason.startswith("better than the base")  # before: "worse than the base"
    assert evaluate.summary_score(base) == 0.1 and round(evaluate.summary_score(adapter), 4) == 0.1667
    # without per-example scores (a report stored before they were kept), the means as before
    legacy = {k: v for k, v in base.items() if k != "per_example"}
    assert round(evaluate.summary_score(legacy), 4) == 0.4


def test_eval_limit_takes_examples_from_every_held_out_document_in_turn():
    from types import SimpleNamespace as E

    from archivist.finetune import evaluate

    # the held-out split as datasets.build_dataset lists it: each document's examples together, feedback last
    held = ([E(group="doc:8", source="docs:extractive", i=i) for i in range(15)]
            + [E(group="doc:9", source="docs:extractive", i=i) for i in range(9)] + [E(group="feedback:3", source="feedback", i=0)])
    picked = evaluate.held_out_sample(held, 16, seed=0)
    # before: held[:16], fifteen of file(1) and one of gzip(1), the feedback example never evaluated
    counts = {g: sum(e.group == g for e in picked) for g in ("doc:8", "doc:9", "feedback:3")}
    # groups in the order of sha256("0:<group>"): doc:9, doc:8, feedback:3; one of each in turn
    assert len(picked) == 16 and counts == {"doc:8": 7, "doc:9": 8, "feedback:3": 1}
    assert picked == sorted(picked, key=held.index)  # in the split's order, each group's first examples
    assert [e.i for e in picked if e.group == "doc:8"] == list(range(counts["doc:8"]))
    assert evaluate.held_out_sample(held, 0) == held and evaluate.held_out_sample(held, 40) == held
    assert evaluate.held_out_sample(held, 16, seed=0) == picked  # seeded: the same pick every time
    # feedback citing a document joins that document's group, after its generated examples: it is
    # that group's second pick, not its last
    joined = held[:24] + [E(group="doc:8", source="feedback", i=15)]
    two = evaluate.held_out_sample(joined, 4, seed=0)
    assert [(e.group, e.source, e.i) for e in two] == [("doc:8", "docs:extractive", 0), ("doc:9", "docs:extractive", 0),
                                                       ("doc:9", "docs:extractive", 1), ("doc:8", "feedback", 15)]


# -- fine-tune: no held-out document's text in a training example ----------------------------------------

FACTS = {
    "gzip.txt": "Compression level\n\nThe gzip program compresses at a default level of 6 unless told otherwise. "
                "Version 1.12 of gzip was released on 9 April 2022.\n",
    "bzip2.txt": "Memory\n\nA file compressed by bzip2 with the default block size needs about 3700 kbytes "
                 "to decompress. The small mode halves that to 2300 kbytes.\n",
    "cmp.txt": "Exit status\n\nThe cmp program returns exit status 2 when there was trouble reading a file. "
               "Report bugs to bug-diffutils@gnu.org with the version you run.\n",
    "bc.txt": "Variables\n\nThe bc calculator accepts input bases from 2 to 36. Its scale variable starts at a "
              "value of 0 digits after the point.\n",
    "time.txt": "Output\n\nThe time command writes its report with a resolution of 10 milliseconds. Mail "
                "questions to bug-time@gnu.org for help.\n",
}


def test_feedback_citing_a_held_out_document_does_not_put_its_text_in_training(ws, embedder, tmp_path):
    from archivist import feedback
    from archivist.finetune.datasets import build_dataset
    from archivist.retrieval.hits import load_hits

    ingest_texts(ws, embedder, tmp_path / "man", {"default": FACTS})
    plain = build_dataset(ws, ["docs"], embedder=embedder, name="plain")  # how the documents alone split
    split = {d["path"]: d["split"] for d in plain.manifest["documents"]}
    train_page = next(p for p in sorted(split) if split[p] == "train")
    held_page = next(p for p in sorted(split) if split[p] == "eval")
    chunk = {path: (cid, text) for cid, path, text in ws.db.execute(
        "SELECT c.id, d.path, c.text FROM chunks c JOIN documents d ON d.id = c.document_id")}
    # a user rated up an answer citing a training document [1] and a held-out one [2]: its target
    # states the held-out document's fact
    cits = [{"n": n, "chunk_id": chunk[p][0], "document": p, "collection": "default", "text": chunk[p][1]}
            for n, p in ((1, train_page), (2, held_page))]
    feedback.record_feedback(ws, None, "What do these two pages say?", "They say this [1] and that [2].",
                             rating=1, citations=cits, collection="default")
    ds = build_dataset(ws, ["docs", "feedback"], embedder=embedder, name="with-feedback")
    assert [e.source for e in ds.train + ds.eval].count("feedback") == 1
    held_docs = {d["id"] for d in ds.manifest["documents"] if d["split"] == "eval"}
    hits = load_hits(ws, sorted({c for e in ds.train for c in e.passages}))
    leaked = [(e.source, hits[c].document) for e in ds.train for c in e.passages if hits[c].document_id in held_docs]
    # before: [("feedback", held_page)]: the example was split with its first passage's document only
    assert held_docs and leaked == []
    # the two documents the feedback ties together went to one split, and the others split as before
    split2 = {d["path"]: d["split"] for d in ds.manifest["documents"]}
    assert split2[train_page] == split2[held_page]
    assert {p: s for p, s in split2.items() if p not in (train_page, held_page)} == \
        {p: s for p, s in split.items() if p not in (train_page, held_page)}


def test_file_lines_about_an_ingested_document_go_to_its_split(ws, embedder, tmp_path):
    # A team's own chats, each line naming the page it is about ("document"): a line about a page
    # whose generated questions are held out must not be trained on (its target states the page's
    # fact). Before, the lines were split on their own ("file:gzip.txt" apart from the page).
    from archivist.finetune.datasets import build_dataset

    ingest_texts(ws, embedder, tmp_path / "man", {"default": FACTS})
    chats = tmp_path / "chats.jsonl"
    with open(chats, "w") as f:
        for page, fact in FACTS.items():
            for i in range(2):
                f.write(json.dumps({"prompt": f"Question {i} on {page}?", "completion": fact.split("\n\n")[1].split(". ")[i],
                                    "document": page}) + "\n")
    ds = build_dataset(ws, ["docs", str(chats)], embedder=embedder)
    split = {d["path"]: d["split"] for d in ds.manifest["documents"]}
    placed = {(e.question.split(" on ")[1].rstrip("?"), "train") for e in ds.train if e.source == "file"} | \
             {(e.question.split(" on ")[1].rstrip("?"), "eval") for e in ds.eval if e.source == "file"}
    assert {page for page, _ in placed} == set(FACTS)
    wrong = sorted((page, where) for page, where in placed if page in split and split[page] != where)
    assert wrong == [] and ds.eval and ds.train


@pytest.mark.slow
def test_a_real_fine_tune_evaluates_every_held_out_document(ws, tmp_path, capsys):
    """A real run (SmolLM2, 2 steps): 4 documents of 3 chats each, half held out, --eval-limit 2.
    Before, both evaluated examples were the first held-out document's, and the interval was drawn
    from them one by one."""
    from archivist.cli import main
    from archivist.finetune.datasets import split_groups

    data = tmp_path / "chats.jsonl"
    docs = ["gzip", "bzip2", "cmp", "bc"]
    with open(data, "w") as f:
        for d in docs:
            for i in range(3):
                f.write(json.dumps({"prompt": f"Question {i} about {d}?", "completion": f"{d} answer {i} [1].",
                                    "document": d}) + "\n")
    held = split_groups([f"file:{d}" for d in docs], 0.5, 2)
    assert len(held) == 2
    rc = main(["finetune", "--data", str(data), "--method", "lora", "--max-steps", "2", "--max-seq-len", "256",
               "--eval-fraction", "0.5", "--eval-limit", "2", "--eval-max-new-tokens", "4", "--name", "m", "--seed", "2",
               "--json", "--device", "cpu", "--no-activate"])
    result = json.loads(capsys.readouterr().out)
    assert rc == 0 and result["status"] == "done", result
    metrics = json.loads((ws.home / "adapters" / "m" / "metrics.json").read_text())
    asked = {e["question"].split(" about ")[1].rstrip("?") for e in metrics["examples"]}
    assert metrics["n"] == 2 and {f"file:{d}" for d in asked} == held  # before: one document, asked twice
    assert metrics["difference"]["groups"] == 2 and "2 held-out documents, drawn whole" in metrics["reason"]
    # the report says 2 of how many held-out examples were evaluated (before: "(2 examples)")
    from archivist.finetune.cli import print_evaluation

    assert metrics["held_out"] == 6
    print_evaluation(metrics)
    assert capsys.readouterr().out.startswith("held-out evaluation (2 of 6 examples)")


@pytest.mark.slow
def test_the_adapted_embedder_s_interval_draws_whole_held_out_documents(ws, embedder, tmp_path, one_torch_thread):
    """`finetune --target retriever` asks one question per chunk, several per held-out document; its
    hit@5 and MRR@10 intervals were drawn question by question. They now draw whole documents and
    say how many (every held-out document)."""
    from jargon import write_jargon_docs

    from archivist.finetune import embedders, retriever
    from archivist.ingest.pipeline import ingest_paths

    docs = write_jargon_docs(tmp_path / "handbooks", n_docs=8, sections=4)
    ingest_paths(ws, docs, collection="default", embedder=embedder, progress=False)
    cfg = retriever.RetrieverConfig(questions="sentence", max_chunks=40, max_eval=40, batch_size=16, epochs=1,
                                    max_seq_len=48, train_layers=0, eval_fraction=0.25, activate="never")
    report = retriever.finetune_retriever(ws, cfg, progress=False)
    ev = report["evaluation"]
    held = embedders.load_manifest(ws, report["name"])["documents"]["held_out"]
    assert ev["questions"] > len(held) >= 2  # several questions per held-out document
    for side in (ev, ev["dense"]):
        for m in ("hit@5", "mrr@10"):
            assert side["difference"][m]["groups"] == len(held), side["difference"]  # before: no groups, by question
