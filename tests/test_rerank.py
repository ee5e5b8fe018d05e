"""Rerankers: the no-model coverage reranker on a real workspace, and the loader's choices."""

from __future__ import annotations

import re
import zlib

import numpy as np
import pytest

from archivist.records import Hit


class BowEmbedder:
    name, dim, model_id = "fake-bow", 128, "fake-bow:128"

    def embed(self, texts, batch_size: int = 32) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
            out[i] /= max(np.linalg.norm(out[i]), 1e-9)
        return out


@pytest.fixture
def docs_ws(ws, tmp_path):
    from archivist.ingest.pipeline import ingest_paths

    folder = tmp_path / "d"
    folder.mkdir()
    # "kernel" is everywhere (low idf); "watchdog" and "panic" are rare
    (folder / "a.txt").write_text("kernel kernel kernel scheduler kernel threads kernel")
    (folder / "b.txt").write_text("the kernel watchdog triggers a panic when a cpu hangs")
    (folder / "c.txt").write_text("kernel modules load at boot; the kernel logs to dmesg")
    ingest_paths(ws, [folder], embedder=BowEmbedder(), progress=False)
    return ws


def test_coverage_reranker_prefers_rare_terms_and_keeps_the_hits(docs_ws):
    from archivist.retrieval.rerank import CoverageReranker
    from archivist.retrieval.search import search

    emb = BowEmbedder()
    plain = search(docs_ws, "kernel watchdog panic", k=3, mode="lexical", embedder=emb)
    rr = CoverageReranker(docs_ws, emb, alpha=0.0)  # coverage alone
    hits = rr.rerank("kernel watchdog panic", plain)
    assert hits[0].document == "d/b.txt"  # holds all three terms, two of them rare
    assert sorted(h.chunk_id for h in hits) == sorted(h.chunk_id for h in plain)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].score == pytest.approx(1.0)  # full coverage
    # the idf of the ubiquitous term is smaller than that of a rare one
    assert rr._idf("kernel") < rr._idf("watchdog")


def test_coverage_reranker_cosine_part_uses_stored_vectors(docs_ws):
    from archivist.retrieval.rerank import CoverageReranker

    emb = BowEmbedder()
    rows = docs_ws.db.execute("SELECT c.id, d.path, c.text FROM chunks c JOIN documents d ON d.id = c.document_id").fetchall()
    hits = [Hit(chunk_id=r[0], document_id=0, document=r[1], collection="default", text=r[2], score=0.0) for r in rows]
    out = CoverageReranker(docs_ws, emb, alpha=1.0).rerank("kernel modules dmesg boot", hits)
    expected = emb.embed(["kernel modules dmesg boot"])[0] @ emb.embed([out[0].text])[0]
    assert out[0].document == "d/c.txt"
    assert out[0].score == pytest.approx(float(expected), abs=1e-5)


def test_search_with_reranker_and_loader(docs_ws):
    from archivist.retrieval.rerank import CoverageReranker, load_reranker
    from archivist.retrieval.search import search

    emb = BowEmbedder()
    hits = search(docs_ws, "watchdog panic", k=2, reranker=CoverageReranker(docs_ws, emb), embedder=emb)
    assert hits[0].document == "d/b.txt" and len(hits) <= 2
    assert load_reranker("none", docs_ws) is None and load_reranker(None, docs_ws) is None
    assert isinstance(load_reranker("coverage", docs_ws, emb), CoverageReranker)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_reranker("/no/such/cross-encoder", docs_ws)
    with pytest.raises(ValueError):
        CoverageReranker(docs_ws, emb, alpha=1.5)


# -- the learned reranker (finetune/reranker.py) ------------------------------------------------------


def test_learned_reranker_features_are_the_exact_signals(docs_ws):
    from archivist.retrieval.rerank import FEATURES, LearnedReranker, features
    from archivist.retrieval.search import lexical_ranking, search

    emb = BowEmbedder()
    query = "kernel watchdog panic"
    hits = search(docs_ws, query, k=3, mode="lexical", embedder=emb)
    x = features(docs_ws, query, hits, emb.embed([query])[0])
    assert x.shape == (3, len(FEATURES)) and FEATURES == ("cosine", "bm25", "coverage", "heading")
    lex = lexical_ranking(docs_ws, query, [docs_ws.collection_id("default")], 10)
    bm = dict(lex.hits)
    for h, row in zip(hits, x):
        assert row[0] == pytest.approx(float(emb.embed([h.text])[0] @ emb.embed([query])[0]), abs=1e-5)
        assert row[1] == pytest.approx(bm[h.chunk_id] / lex.ceiling, rel=1e-5)
        assert row[3] == 0.0  # plain text files have no heading path
    b = next(i for i, h in enumerate(hits) if h.document == "d/b.txt")
    assert x[b, 2] == pytest.approx(1.0)  # holds every query term
    assert all(x[i, 2] < 0.5 for i in range(3) if i != b)  # only "kernel", the commonest term
    # weights decide the order: coverage alone puts b first, a negative coverage weight puts it last
    assert LearnedReranker(docs_ws, {"cosine": 0, "bm25": 0, "coverage": 1, "heading": 0}, emb).rerank(query, hits)[0].document == "d/b.txt"
    assert LearnedReranker(docs_ws, {"cosine": 0, "bm25": 0, "coverage": -1, "heading": 0}, emb).rerank(query, hits)[-1].document == "d/b.txt"
    with pytest.raises(ValueError, match="lack heading"):
        LearnedReranker(docs_ws, {"cosine": 1, "bm25": 0, "coverage": 0}, emb)


def test_fit_learns_which_signal_marks_the_relevant_candidates():
    """Hand-made candidate sets where only the coverage feature tells the relevant one apart: the
    fitted weight of coverage grows, the loss falls, and the reranked order finds every one first."""
    from archivist.finetune.reranker import compare, fit, loss

    rng = np.random.default_rng(0)
    sets = []
    for _ in range(40):
        x = rng.uniform(0, 1, (10, 4)).astype(np.float32)
        rel = np.zeros(10, bool)
        rel[rng.integers(1, 10)] = True
        x[rel, 2] = 1.0
        x[~rel, 2] *= 0.5
        sets.append((x, rel))
    start = np.array([0.7, 0.3, 0.0, 0.0])
    w = fit(sets, start, l2=1e-3, steps=200, lr=2.0)
    assert w[2] > 2 and loss(sets, w) < loss(sets, start) / 2
    ev = compare(sets, w)
    assert ev["adapted"]["mrr@10"] == 1.0 and ev["base"]["mrr@10"] < 0.5 and ev["difference"]["mrr@10"]["low"] > 0


@pytest.mark.slow
def test_a_learned_reranker_keeps_its_lineage_and_serves_only_those_who_may_read_it(ws, embedder, tmp_path):
    """Trained on a collection bob may not read: bob neither lists it nor gets it for his queries;
    the admin, who may read everything it learned from, searches with it."""
    from archivist import access
    from archivist.finetune import reranker
    from archivist.ingest.pipeline import ingest_paths
    from archivist.retrieval.rerank import LearnedReranker, list_learned, load_reranker
    from archivist.retrieval.search import search
    from jargon import write_jargon_docs

    docs = write_jargon_docs(tmp_path / "handbooks", n_docs=12, sections=6)
    ingest_paths(ws, docs[:8], collection="public", embedder=embedder, progress=False)
    ingest_paths(ws, docs[8:], collection="secret", embedder=embedder, progress=False)
    access.add_user(ws, "bob")
    access.grant(ws, "bob", "public", "read")
    with pytest.raises(access.AccessDenied):
        reranker.finetune_reranker(ws, reranker.RerankerConfig(collections=["secret"]), user="bob")
    cfg = reranker.RerankerConfig(questions="sentence", max_questions=40, max_eval=20, eval_fraction=0.25, steps=100,
                                  name="learned-secret")
    report = reranker.finetune_reranker(ws, cfg)
    assert report["questions"]["train"] >= 10 and report["evaluation"]["questions"] >= 1
    assert report["loss"]["end"] < report["loss"]["start"]
    from archivist import audit

    [rec] = audit.read(ws, by="admin", action="reranker.registered")  # the training is in the audit log
    assert rec["target"] == "learned-secret" and rec["detail"]["collections"] == ["public", "secret"]
    m = [r for r in list_learned(ws, None) if r["name"] == "learned-secret"][0]
    assert m["collections"] == ["public", "secret"] and m["weights"] == report["weights"]
    assert not set(m["documents"]["train"]) & set(m["documents"]["held_out"])
    assert list_learned(ws, "bob") == []
    with pytest.raises(access.AccessDenied):
        load_reranker("learned-secret", ws, embedder, user="bob")
    rr = load_reranker("learned-secret", ws, embedder)
    assert isinstance(rr, LearnedReranker) and rr.name == "learned:learned-secret"
    hits = search(ws, "Who refunds taxi fares after a business trip?", k=5, reranker=rr, embedder=embedder)
    assert len(hits) == 5 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # bob, granted the secret collection too, may now use it
    access.grant(ws, "bob", "secret", "read")
    assert isinstance(load_reranker("learned-secret", ws, embedder, user="bob"), LearnedReranker)
