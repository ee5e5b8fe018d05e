"""Retrieval and answers on the sample documents with the real default models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from archivist.records import Hit
from archivist.retrieval.answer import (NOT_FOUND, answer_json, ask, build_messages, check_citations, pack,
                                        parse_citations, standalone_question)
from archivist.retrieval.query import fts_query
from archivist.retrieval.search import lexical, search

from conftest import sample_questions


def top_docs(hits, n=3):
    return [h.document for h in hits[:n]]


@pytest.mark.parametrize("row", sample_questions(), ids=lambda r: r["question"][:40])
def test_hybrid_search_finds_the_source_document_in_top_3(sample_ws, row):
    hits = search(sample_ws, row["question"], k=10)
    assert row["document"] in top_docs(hits), top_docs(hits)


def test_exact_identifier_through_the_lexical_path(sample_ws):
    hits = search(sample_ws, "NW-1180", k=5, mode="lexical")
    assert hits and hits[0].document == "price-list-2025.csv"
    assert "nw" in hits[0].matched_terms and "1180" in hits[0].matched_terms
    hybrid = search(sample_ws, "NW-1180", k=5)
    assert hybrid[0].document == "price-list-2025.csv" and hybrid[0].lexical_rank == 1


def test_paraphrase_through_the_dense_path(sample_ws):
    question = "How much money can staff spend each year on courses and training?"  # the handbook says "learning budget"
    dense = search(sample_ws, question, k=3, mode="dense")
    assert "employee-handbook.pdf" in top_docs(dense)
    assert dense[0].dense_score is not None and dense[0].dense_score > 0.3


@pytest.mark.parametrize("query", ['"', '""', "AND OR NOT", "NEAR(a b)", "col:value", "*", "^start", "a - b + c",
                                   "'; DROP TABLE chunks; --", "(((", "NW-4410\"", "\\x00", "ümlaut ß 東京", "   "])
def test_hostile_queries_never_raise(sample_ws, query):
    for mode in ("hybrid", "dense", "lexical"):
        hits = search(sample_ws, query, k=5, mode=mode)
        assert isinstance(hits, list)
    assert sample_ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] > 0


def test_fts_query_quotes_every_term():
    assert fts_query('parental leave "HR-17" OR NEAR(') == '"parental" OR "leave" OR "HR 17" OR "NEAR"'
    assert fts_query("the of and") is None


def test_filters_apply_inside_the_search(sample_ws):
    # The price list ranks low for this question; filtered to it, its chunks still come back.
    hits = search(sample_ws, "parental leave weeks", k=2, documents=["price-list-2025.csv"])
    assert hits and {h.document for h in hits} == {"price-list-2025.csv"}
    hits = search(sample_ws, "policy", k=20, kinds=["html"])
    assert hits and {h.kind for h in hits} == {"html"}
    assert search(sample_ws, "policy", k=5, collections=["nonexistent"]) == []
    ids = lexical(sample_ws, "allowance", [sample_ws.collection_id("default")], 50, kinds=["markdown"])
    assert ids
    kinds = {r[0] for r in sample_ws.db.execute(
        f"SELECT d.kind FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id IN ({','.join(str(i) for i, _ in ids)})")}
    assert kinds == {"markdown"}


def test_linear_fusion_scores_are_exact_cosine_and_bm25(sample_ws, embedder):
    """Every hybrid hit's score is (1 - w) x its cosine + w x its BM25 over the query's best BM25
    (fusion_norm "max", the default; "ceiling": the query's ceiling), both recomputed here from
    scratch, lexical-only and dense-only candidates included."""
    from dataclasses import replace

    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    assert sample_ws.settings.fusion_norm == "max"
    _check_linear_fusion(sample_ws, embedder)
    with open_checked(replace(Settings.from_env(home=sample_ws.home), fusion_norm="ceiling")) as w:
        _check_linear_fusion(w, embedder)


def _check_linear_fusion(sample_ws, embedder):
    import numpy as np

    from archivist.retrieval import lexicon, lexicon_store
    from archivist.retrieval.query import STOPWORDS

    w = sample_ws.settings.lexical_weight
    assert sample_ws.settings.fusion == "linear" and 0 < w < 1
    index = lexicon_store.current(sample_ws)
    kinds = set()
    for row in sample_questions()[:6]:
        question = row["question"]
        hits = search(sample_ws, question, k=6, candidates=6, embedder=embedder)
        qvec = embedder.embed([question])[0]
        units = lexicon.query_units(question, STOPWORDS)
        bm25 = dict(index.search(units, 10_000))
        ceiling = index.rank(units, 1).ceiling
        assert ceiling > max(bm25.values())
        norm = ceiling if sample_ws.settings.fusion_norm == "ceiling" else max(bm25.values())
        for h in hits:
            vec = np.frombuffer(sample_ws.db.execute("SELECT embedding FROM chunks WHERE id = ?", (h.chunk_id,)).fetchone()[0], np.float32)
            expected = (1 - w) * float(vec @ qvec) + w * bm25.get(h.chunk_id, 0.0) / norm
            assert h.score == pytest.approx(expected, abs=2e-3)
            kinds.add((h.dense_rank is not None, h.lexical_rank is not None))
        assert row["document"] in [h.document for h in hits[:3]]
    assert kinds == {(True, True), (True, False), (False, True)}  # candidates of both lists and of one only


def test_fusion_setting_chooses_rrf_or_linear(sample_home, embedder):
    from dataclasses import replace

    from archivist.retrieval.fusion import RRF_K
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    question = "travel expense approval limit"
    with open_checked(replace(Settings.from_env(home=sample_home), fusion="rrf")) as w:
        hits = search(w, question, k=5, embedder=embedder)
        for h in hits:  # an RRF score is the sum of 1 / (60 + rank) over the lists that found the chunk
            expected = sum(1 / (RRF_K + r) for r in (h.dense_rank, h.lexical_rank) if r is not None)
            assert h.score == pytest.approx(expected)
    for weight, mode in ((0.0, "dense"), (1.0, "lexical")):
        with open_checked(replace(Settings.from_env(home=sample_home), lexical_weight=weight)) as w:
            fused = [h.chunk_id for h in search(w, question, k=5, embedder=embedder)]
            alone = [h.chunk_id for h in search(w, question, k=5, mode=mode, embedder=embedder)]
            assert fused == alone
    with pytest.raises(ValueError, match="fusion"):
        Settings.from_env(home=sample_home, fusion="max")
    with pytest.raises(ValueError, match="fusion_norm"):
        Settings.from_env(home=sample_home, fusion_norm="mean")


def test_matched_terms_are_what_the_lexical_index_matched(ws, tmp_path, embedder):
    from archivist.ingest.pipeline import ingest_paths
    from archivist.retrieval import lexicon_store
    from archivist.retrieval.hits import mark_matched_terms

    (tmp_path / "esc.txt").write_text("The escalation policy names the on-call engineer for each service.\n")
    ingest_paths(ws, [tmp_path / "esc.txt"], embedder=embedder, progress=False)
    (hit,) = search(ws, "escalations policies for the engineer on_call", k=5, embedder=embedder)
    # stems, as BM25 matched them: "policies" and "policy" are one term; "on_call" is "on" + "call"
    assert hit.matched_terms == ["escalations", "policies", "engineer", "on_call"]
    mark_matched_terms([hit], ["escalations", "engineer", "nowhere"])  # no index: words that begin with a term
    assert hit.matched_terms == ["engineer"]
    mark_matched_terms([hit], ["engineers", "service"], lexicon_store.current(ws))
    assert hit.matched_terms == ["engineers", "service"]


def test_near_duplicates_are_collapsed(ws, tmp_path, embedder):
    from archivist.ingest.pipeline import ingest_paths

    text = "The Lisbon warehouse stores spare gripper arms on shelf 12.\n"
    (tmp_path / "copy1.txt").write_text(text)
    (tmp_path / "copy2.txt").write_text(text)
    (tmp_path / "other.txt").write_text("Gripper arms are calibrated every 90 days.\n")
    ingest_paths(ws, [tmp_path / "copy1.txt", tmp_path / "copy2.txt", tmp_path / "other.txt"], embedder=embedder, progress=False)
    hits = search(ws, "Lisbon gripper arms shelf", k=5, embedder=embedder)
    texts = [h.text for h in hits]
    assert texts.count(text.strip()) == 1 and len(hits) == 2


def test_fusion_reads_vectors_from_faiss_and_from_sqlite_when_faiss_lacks_them(ws, tmp_path, embedder):
    from archivist.ingest.pipeline import ingest_paths
    from archivist.retrieval import vectors
    from archivist.retrieval.fusion import stored_vectors

    (tmp_path / "a.txt").write_text("Forklift batteries are charged overnight in bay 4.\n")
    (tmp_path / "b.txt").write_text("Visitors sign in at the north gate and wear a badge.\n")
    ingest_paths(ws, [tmp_path / "a.txt", tmp_path / "b.txt"], embedder=embedder, progress=False)
    stored = {r[0]: np.frombuffer(r[1], np.float32) for r in ws.db.execute("SELECT id, embedding FROM chunks")}
    ids = sorted(stored)
    from_faiss = vectors.stored(ws, {ws.collection_id("default"): ids})
    assert from_faiss is not None and all(np.array_equal(from_faiss[i], stored[i]) for i in ids)
    vectors.drop(ws, ws.collection_id("default"))  # FAISS lacks them now: SQLite answers
    assert vectors.stored(ws, {ws.collection_id("default"): ids}) is None
    got = stored_vectors(ws, ids)
    assert sorted(got) == ids and all(np.array_equal(got[i], stored[i]) for i in ids)


def test_duplicate_collapsing_keeps_exactly_what_pairwise_jaccard_keeps():
    """The shortcuts in collapse_duplicates (comparing only sets of near sizes, the prefix test) never
    change its answer: on random 3-gram sets with overlaps around the threshold it keeps the same
    hits as comparing every pair in full."""
    from archivist.retrieval.duplicates import collapse_duplicates

    rng = np.random.default_rng(7)
    for trial in range(1000):
        base = rng.choice(2**32, size=int(rng.integers(20, 200)), replace=False).astype(np.uint32)
        hits = []
        for j in range(12):
            keep = base[rng.random(len(base)) > rng.choice([0.0, 0.02, 0.05, 0.08, 0.5, 1.0])]
            extra = rng.choice(2**32, size=int(rng.integers(1, 8)), replace=False).astype(np.uint32)  # never empty, as real chunks
            h = Hit(chunk_id=j, document_id=j, document=f"d{j}", collection="c", text=f"t{trial}-{j}", score=0.0)
            h._hash, h._shingles = None, np.unique(np.concatenate([keep, extra])).tobytes()
            hits.append(h)
        expected = []
        for h in hits:
            a = set(np.frombuffer(h._shingles, np.uint32).tolist())
            if not any(len(a & b) >= 0.9 * len(a | b) for b in
                       (set(np.frombuffer(k._shingles, np.uint32).tolist()) for k in expected)):
                expected.append(h)
        assert [h.chunk_id for h in collapse_duplicates(hits)] == [h.chunk_id for h in expected]


def test_nearly_equal_chunks_collapse_and_old_workspaces_get_their_shingles(ws, tmp_path, embedder):
    from archivist.ingest.pipeline import ingest_paths
    from archivist.ingest.shingles import backfill_shingles
    from archivist.retrieval.repair import open_checked

    words = ("The night shift checks the cold store alarms every two hours and writes the readings "
             "into the blue logbook kept beside the loading dock door").split()
    near = list(words)
    near[7] = "three"  # one word of 26 changed: 21 of 27 word 3-grams shared, Jaccard 0.78
    far = words[:10] + ["inventory", "counts", "happen", "on", "the", "first", "Monday"] + words[17:]
    for name, w in (("a.txt", words), ("b.txt", near), ("c.txt", far)):
        (tmp_path / name).write_text(" ".join(w) + "\n")
    ingest_paths(ws, [tmp_path / n for n in ("a.txt", "b.txt", "c.txt")], embedder=embedder, progress=False)
    assert ws.db.execute("SELECT COUNT(*) FROM chunks WHERE shingles IS NULL").fetchone()[0] == 0
    names = lambda hits: sorted(h.document for h in hits)  # noqa: E731
    assert names(search(ws, "night shift cold store alarms logbook", k=5, embedder=embedder)) == ["a.txt", "b.txt", "c.txt"]
    from archivist.retrieval.duplicates import collapse_duplicates
    from archivist.retrieval.hits import load_hits

    hits = list(load_hits(ws, [r[0] for r in ws.db.execute("SELECT id FROM chunks ORDER BY id")]).values())
    assert [h.document for h in collapse_duplicates(hits, threshold=0.75)] == ["a.txt", "c.txt"]
    # a workspace from before shingles were stored gets them on its next open, the same values
    stored = ws.db.execute("SELECT id, shingles FROM chunks ORDER BY id").fetchall()
    ws.db.execute("UPDATE chunks SET shingles = NULL")
    ws.db.execute("DELETE FROM meta WHERE key = 'shingles'")
    ws.db.commit()
    with open_checked(ws.settings) as again:
        assert again.db.execute("SELECT id, shingles FROM chunks ORDER BY id").fetchall() == stored
        assert backfill_shingles(again) == 0


def test_followup_question_is_made_self_contained():
    history = [{"role": "user", "content": "What is the per diem for France?"}, {"role": "assistant", "content": "EUR 53 [1]"}]
    assert standalone_question("And for Germany?", history) == "per diem France And for Germany?"
    assert standalone_question("What is the SEV1 response time?", history) == "What is the SEV1 response time?"
    assert standalone_question("And for Germany?", None) == "And for Germany?"


def test_packing_keeps_whole_passages_within_budget():
    hits = [Hit(chunk_id=i, document_id=1, document="d", collection="c", text="word " * n, score=1.0)
            for i, n in enumerate([50, 400, 30])]
    packed = pack(hits, lambda s: len(s.split()), budget=200)
    assert [h.chunk_id for h in packed] == [0, 2]  # the 400-word passage does not fit; the next one does


def test_citations_are_checked_against_the_prompt(embedder):
    passages = [Hit(chunk_id=10 + i, document=f"doc{i}.md", document_id=i, collection="c", text=t, score=0.1)
                for i, t in enumerate(["Parental leave is 20 weeks under policy HR-17.", "The VPN desk opens at 07:00."])]
    answer = "Parental leave is 20 weeks [1]. The desk opens at 07:00 [2]. It is sunny [7]."
    text, cites, invalid = check_citations(answer, passages, embedder, weak_below=0.45)
    assert invalid == [7] and "[7]" not in text
    assert [(c.n, c.chunk_id, c.document) for c in cites] == [(1, 10, "doc0.md"), (2, 11, "doc1.md")]
    assert all(not c.weak for c in cites)
    _, cites, _ = check_citations("Parental leave is 52 weeks [1].", passages, embedder, weak_below=0.45)
    assert cites[0].weak, "a number the passage does not hold is weakly supported"
    assert parse_citations("a [1, 3] b [2]") == [(1, 2, 8), (3, 2, 8), (2, 11, 14)]


@pytest.mark.slow
def test_prompt_follows_the_model_chat_template(llm, sample_ws):
    hits = search(sample_ws, "What are the VPN support hours?", k=2)
    messages = build_messages("What are the VPN support hours?", hits)
    prompt = llm.render(messages)
    assert prompt == llm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert "[1] (" + hits[0].document in prompt and "[2] (" + hits[1].document in prompt
    assert prompt.count("<|im_start|>") == 3


@pytest.mark.slow
def test_generation_streams_in_pieces(llm):
    pieces = list(llm.stream([{"role": "user", "content": "Count from one to ten."}], max_new_tokens=12))
    assert len(pieces) > 1 and "".join(pieces).strip()


def test_absent_topic_gets_the_plain_not_in_documents_answer(sample_ws):
    for row in sample_questions(answerable=False):
        result = ask(sample_ws, row["question"])
        assert result.not_found and result.answer == NOT_FOUND and result.citations == [], row["question"]


@pytest.mark.slow
@pytest.mark.usefixtures("short_answers")
def test_answer_json_citations_match_prompt_passages(sample_ws, llm):
    streamed = []
    result = ask(sample_ws, "Which phone extension reaches the on-call duty manager?", llm=llm, on_token=streamed.append)
    data = answer_json(result)
    assert json.loads(json.dumps(data)) == data
    assert set(data) >= {"answer", "citations", "passages"}
    assert data["citations"], data
    for c in data["citations"]:
        assert set(c) >= {"n", "document", "page", "chunk_id", "score", "text"}
        passage = result.passages[c["n"] - 1]
        assert (c["chunk_id"], c["document"], c["text"]) == (passage.chunk_id, passage.document, passage.text)
    assert any(c["document"] == "oncall-runbook.md" for c in data["citations"])
    assert len(streamed) > 1
    assert "4417" in data["answer"]  # the model's answer, or the quoted passage when it was unsupported


@pytest.mark.slow
def test_adapter_switches_without_reloading(sample_ws, llm, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from archivist.adapters import Adapter
    from archivist.models import loaded_models

    # A LoRA adapter with random (non-zero) weights, so its outputs differ from the base model's.
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(llm.path)
    torch.manual_seed(0)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "rand")
    messages = [{"role": "user", "content": "Say hello."}]
    rand = Adapter("rand-test", str(tmp_path / "rand"))
    before = "".join(llm.stream(messages, max_new_tokens=8))
    with_adapter = "".join(llm.stream(messages, max_new_tokens=8, adapter=rand))
    after = "".join(llm.stream(messages, max_new_tokens=8))  # no adapter named: the base model, not the last one used
    assert with_adapter != before and after == before
    assert len(loaded_models("llm")) == 1  # one model object per process


def test_a_csv_rows_source_is_named_once(sample_ws):
    """A CSV's rows are headed by the file's name: the label said "price-list-2025.csv —
    price-list-2025.csv" under every answer quoting one."""
    from archivist.retrieval.answer import source_label

    hit = next(h for h in search(sample_ws, "PalletPilot 800 price", k=10) if h.document.endswith(".csv"))
    assert hit.heading and hit.heading[0] == "price-list-2025.csv"  # as the CSV reader heads its rows
    label = source_label(hit.document, hit.page, hit.heading)
    assert label.count("price-list-2025.csv") == 1, label
    assert source_label("guide.html", None, ("guide.html", "Setup")) == "guide.html — Setup"
    assert source_label("a/handbook.pdf", 3, ("Leave", "Parental")) == "a/handbook.pdf, page 3 — Leave > Parental"
