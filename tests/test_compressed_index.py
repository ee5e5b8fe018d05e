"""The compressed index (retrieval/vectors.py): past `compress_above` chunks a collection's FAISS
index is IVF-PQ, and its candidates are re-scored with the exact vectors SQLite keeps.

Real FAISS, real SQLite, the real ingestion pipeline; the vectors come from a deterministic
bag-of-words embedder, so texts sharing words are near (as real embeddings are) and the tests need
no model: each word is a fixed random direction, a text the normalized sum of its words'."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from archivist import access
from archivist.ingest.pipeline import delete_document, ingest_paths, list_documents, reindex
from archivist.retrieval import index_kinds, vectors
from archivist.retrieval.repair import open_checked
from archivist.retrieval.search import search
from archivist.settings import Settings

DIM = 384
VOCAB = [f"w{i}" for i in range(600)]


class WordEmbedder:
    name, dim, model_id = "words", DIM, "words:384"

    def embed(self, texts, batch_size=32):
        out = np.zeros((len(texts), DIM), np.float32)
        for row, text in zip(out, texts):
            for word in text.split():
                seed = int(hashlib.sha256(word.encode()).hexdigest()[:8], 16)
                row += np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


EMBEDDER = WordEmbedder()


def write_docs(folder, n_docs: int, per_doc: int, seed: int, prefix: str = "doc") -> list:
    """`n_docs` markdown files of `per_doc` sections, each one chunk of 10 words drawn from a
    topic (a 40-word slice of VOCAB) so that chunks cluster as real ones do."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in range(n_docs):
        sections = []
        for s in range(per_doc):
            topic = rng.integers(0, len(VOCAB) - 40)
            words = " ".join(VOCAB[topic + j] for j in rng.integers(0, 40, 10))
            sections.append(f"# {prefix} {d} part {s}\n\n{words}\n")
        path = folder / f"{prefix}-{seed}-{d:03d}.md"
        path.write_text("\n".join(sections))
        paths.append(path)
    return paths


def make_settings(tmp_path, **kw) -> Settings:
    return Settings.from_env(home=tmp_path / "ws", ann_threshold=100, compress_above=300,
                             chunk_tokens=64, chunk_overlap=8, **kw)


def chunk_vectors(ws, collection: str) -> tuple[np.ndarray, np.ndarray]:
    rows = ws.db.execute("SELECT c.id, c.embedding FROM chunks c JOIN documents d ON d.id = c.document_id "
                         "JOIN collections k ON k.id = d.collection_id WHERE k.name = ? ORDER BY c.id", (collection,)).fetchall()
    return np.array([r[0] for r in rows], np.int64), np.stack([np.frombuffer(r[1], np.float32) for r in rows])


def exact_top(ids, vecs, query, k):
    scores = vecs @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return ids[order].tolist(), scores[order]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A workspace whose collection "A" crossed compress_above (360 chunks) in a second ingest,
    and whose collection "B" (60 chunks) did not. Built once; `compressed` gives each test a copy."""
    tmp_path = tmp_path_factory.mktemp("compressed")
    settings = make_settings(tmp_path)
    with open_checked(settings) as ws:
        ingest_paths(ws, write_docs(tmp_path / "a1", 4, 60, seed=1), collection="A", embedder=EMBEDDER, progress=False)
        assert vectors._load(ws, ws.collection_id("A")).kind == "ivf"  # 240 chunks: past ann_threshold only
        ingest_paths(ws, write_docs(tmp_path / "a2", 2, 60, seed=2), collection="A", embedder=EMBEDDER, progress=False)
        ingest_paths(ws, write_docs(tmp_path / "b", 1, 60, seed=3, prefix="secret"), collection="B",
                     embedder=EMBEDDER, progress=False)
    return settings


@pytest.fixture
def compressed(built, tmp_path):
    """This test's own copy of `built` (copying the folder copies the workspace)."""
    shutil.copytree(built.home, tmp_path / "ws")
    return make_settings(tmp_path)


def test_crossing_the_threshold_builds_the_compressed_index(compressed):
    import faiss

    with open_checked(compressed) as ws:
        ids, _ = chunk_vectors(ws, "A")
        assert len(ids) == 360
        loaded = vectors._load(ws, ws.collection_id("A"))
        assert loaded.kind == "ivfpq"
        pq = faiss.downcast_index(faiss.extract_index_ivf(loaded.index))
        assert isinstance(pq, faiss.IndexIVFPQ) and pq.pq.M == index_kinds.pq_subquantizers(DIM) == 48
        assert sorted(index_kinds.index_ids(loaded.index).tolist()) == ids.tolist()
        assert vectors._load(ws, ws.collection_id("B")).kind == "flat"
        # a PQ code is an approximation: vectors are never read back from it
        assert vectors.stored(ws, {ws.collection_id("A"): ids[:3].tolist()}) is None
        assert vectors.check_and_repair(ws) == []


def test_rescored_results_equal_exact_search(compressed):
    import faiss

    rng = np.random.default_rng(7)
    with open_checked(compressed) as ws:
        cid = ws.collection_id("A")
        ids, vecs = chunk_vectors(ws, "A")
        index = vectors._load(ws, cid).index
        recalls, raw_errors = [], []
        for row in rng.choice(len(ids), 40, replace=False):
            query = vecs[row] + 0.05 * rng.standard_normal(DIM).astype(np.float32)
            query /= np.linalg.norm(query)
            want_ids, want_scores = exact_top(ids, vecs, query, 10)
            got = vectors.search(ws, cid, query, 10)
            got_ids, got_scores = [i for i, _ in got], np.array([s for _, s in got])
            recalls.append(len(set(got_ids) & set(want_ids)) / 10)
            assert got_ids[0] == want_ids[0] == ids[row]
            # every score is the exact cosine, not the PQ estimate, and the order follows it
            by_id = dict(zip(ids.tolist(), (vecs @ query).tolist()))
            assert got_scores == pytest.approx([by_id[i] for i in got_ids], abs=1e-5)
            assert list(got_scores) == sorted(got_scores, reverse=True)
            raw_scores, _ = index.search(query[None, :], 1)
            raw_errors.append(abs(float(raw_scores[0][0]) - want_scores[0]))
        assert np.mean(recalls) >= 0.95, recalls
        assert max(raw_errors) > 1e-3  # the PQ scores alone are off: the re-scoring is what makes them exact
        assert faiss.extract_index_ivf(index).nprobe < faiss.extract_index_ivf(index).nlist  # not a full scan


def test_adds_deletes_and_reindex_keep_the_compressed_index_equal_to_sqlite(compressed, tmp_path):
    with open_checked(compressed) as ws:
        cid = ws.collection_id("A")
        before, _ = chunk_vectors(ws, "A")
        ingest_paths(ws, write_docs(tmp_path / "a3", 2, 12, seed=4), collection="A", embedder=EMBEDDER, progress=False)
        ids, vecs = chunk_vectors(ws, "A")
        new = np.setdiff1d(ids, before)
        assert len(new) == 24 and vectors._load(ws, cid).kind == "ivfpq"  # added to it, not rebuilt
        for chunk in new[:6]:
            assert vectors.search(ws, cid, vecs[ids.tolist().index(chunk)], 1)[0][0] == chunk

        gone = list_documents(ws, collection="A")[:2]
        gone_ids = [r[0] for r in ws.db.execute(
            f"SELECT id FROM chunks WHERE document_id IN ({','.join(str(d['id']) for d in gone)})")]
        gone_vecs = vecs[np.isin(ids, gone_ids)]
        for doc in gone:
            delete_document(ws, doc["id"])
        ids, vecs = chunk_vectors(ws, "A")
        assert sorted(index_kinds.index_ids(vectors._load(ws, cid).index).tolist()) == ids.tolist()
        for v in gone_vecs:
            assert not set(i for i, _ in vectors.search(ws, cid, v, 10)) & set(gone_ids)
        assert vectors.check_and_repair(ws) == []

        assert reindex(ws, progress=False)["A"] == len(ids)
        loaded = vectors._load(ws, cid)
        assert loaded.kind == "ivfpq" and sorted(index_kinds.index_ids(loaded.index).tolist()) == ids.tolist()
        assert vectors.search(ws, cid, vecs[5], 1)[0][0] == ids[5]


def test_a_user_never_gets_chunks_of_a_collection_they_may_not_read(compressed):
    with open_checked(compressed) as ws:
        access.add_user(ws, "rita")
        access.grant(ws, "rita", "A", "read")
        secret = ws.db.execute("SELECT c.text, c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
                               "JOIN collections k ON k.id = d.collection_id WHERE k.name = 'B' LIMIT 5").fetchall()
        for text, chunk in secret:
            for mode in ("dense", "hybrid"):
                hits = search(ws, text, k=10, user="rita", mode=mode, embedder=EMBEDDER)
                assert hits and {h.collection for h in hits} == {"A"} and chunk not in [h.chunk_id for h in hits]
            admin = search(ws, text, k=3, mode="dense", embedder=EMBEDDER)
            assert admin[0].chunk_id == chunk  # the admin, who reads B, finds it: the query was a fair one
        # a document filter goes into the compressed index as an id selector
        doc = list_documents(ws, collection="A")[4]
        text = ws.db.execute("SELECT text FROM chunks WHERE document_id = ? LIMIT 1", (doc["id"],)).fetchone()[0]
        hits = search(ws, text, k=5, user="rita", mode="dense", documents=[doc["id"]], embedder=EMBEDDER)
        assert hits and {h.document_id for h in hits} == {doc["id"]}
        # hybrid's dense score is the exact cosine, read from SQLite, not the PQ estimate
        hits = search(ws, text, k=5, user="rita", mode="hybrid", embedder=EMBEDDER)
        q = EMBEDDER.embed([text])[0]
        ids, vecs = chunk_vectors(ws, "A")
        by_id = dict(zip(ids.tolist(), (vecs @ q).tolist()))
        scored = [h for h in hits if h.dense_score is not None]
        assert scored and [h.dense_score for h in scored] == pytest.approx([by_id[h.chunk_id] for h in scored], abs=1e-5)


def test_vectors_of_another_generation_are_not_used_to_rescore(compressed):
    """A re-embed commits the new vectors to SQLite, then switches the pointer the query embedder and
    the index files follow; in between (or after a kill there) SQLite is a generation ahead, and
    re-scoring old-generation queries with its vectors would mix the two."""
    with open_checked(compressed) as ws:
        cid = ws.collection_id("A")
        ids, vecs = chunk_vectors(ws, "A")
        exact = vectors.search(ws, cid, vecs[3], 5)
        assert exact[0] == (ids[3], pytest.approx(1.0, abs=1e-5))
        ws.set_meta("embedder_generation", "g-next")  # the switch's commit, before its rename
        ahead = vectors.search(ws, cid, vecs[3], 5)
        raw_scores, raw_ids = vectors._load(ws, cid).index.search(vecs[3][None, :], 5)
        assert ahead == [(int(i), float(s)) for i, s in zip(raw_ids[0], raw_scores[0])]
        assert ahead != exact


def test_compress_above_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="compress_above must be at least 1, got 0"):
        Settings(home=tmp_path, compress_above=0)
