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
