"""Past pipeline.HOLD_INDEXES_UP_TO chunks an ingesting process does not load the search indexes
(issue 17, item 9): it marks the FAISS index behind SQLite and writes the lexical postings of its
new chunks as pending segments; the next search folds them into the index files. Each test sets the
threshold to 0, so the sample workspace (a few dozen chunks) takes that path."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from archivist.ingest import pipeline
from archivist.ingest.pipeline import delete_document, ingest_paths
from archivist.retrieval import lexicon, lexicon_store, vectors
from archivist.retrieval.search import dense, lexical


@pytest.fixture
def big(sample_home, tmp_path, monkeypatch):
    """A copy of the sample workspace, opened, that ingestion treats as past the threshold."""
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    monkeypatch.setattr(pipeline, "HOLD_INDEXES_UP_TO", 0)
    home = tmp_path / "copy"
    shutil.copytree(sample_home, home)
    lexicon_store._cache.clear()
    vectors._cache.clear()
    with open_checked(Settings.from_env(home=home)) as w:
        yield w


def collections(ws) -> list[int]:
    return [r[0] for r in ws.db.execute("SELECT id FROM collections")]


def rebuilt_index(ws) -> lexicon.Index:
    rows = lexicon_store._rows(ws, lexicon_store._sqlite_ids(ws))
    return lexicon.Index.empty(lexicon.fields_of(ws)).with_chunks(rows)


def assert_files_agree_with_sqlite(ws, faiss: bool = True):
    """Nothing pending, and the cheap checks on open find the files in step with SQLite."""
    assert not (ws.index_dir / "lexical.pending").exists()
    assert lexicon_store.check_and_repair(ws) == []
    if faiss:
        assert not list(ws.index_dir.glob("*.pending"))
        assert vectors.check_and_repair(ws) == []


def test_an_ingest_past_the_threshold_loads_no_index_and_the_next_search_folds_it_in(big, tmp_path, embedder):
    lexical_file = big.index_dir / "lexical.npz"
    [faiss_file] = big.index_dir.glob("c*.faiss")
    before = lexical_file.stat().st_mtime_ns, faiss_file.stat().st_mtime_ns
    note = tmp_path / "airship.md"
    note.write_text("# Airships\n\nThe zeppelin fleet is inspected every spring by the hangar crew.\n")

    [res] = ingest_paths(big, [note], embedder=embedder, progress=False)

    assert res.status == "added"
    assert lexicon_store._cache == {} and vectors._cache == {}, "the ingesting process loaded an index"
    assert (lexical_file.stat().st_mtime_ns, faiss_file.stat().st_mtime_ns) == before
    assert len(list((big.index_dir / "lexical.pending").glob("*.npz"))) == 1
    assert faiss_file.with_suffix(".pending").exists()

    hits = lexical(big, "zeppelin hangar", collections(big), 5)
    qvec = embedder.embed(["zeppelin fleet inspection"])[0]
    near = dense(big, qvec, collections(big), 3)
    doc = big.db.execute("SELECT document_id FROM chunks WHERE id = ?", (hits[0][0],)).fetchone()[0]
    assert big.db.execute("SELECT path FROM documents WHERE id = ?", (doc,)).fetchone()[0] == "airship.md"
    assert near[0][0] == hits[0][0]
    assert_files_agree_with_sqlite(big)
    units = lexicon.query_units("zeppelin leave parental expenses station", frozenset())
    assert lexicon_store.current(big).search(units, 20) == rebuilt_index(big).search(units, 20)


def test_a_deletion_past_the_threshold_is_folded_in_too(big, embedder):
    doc = big.db.execute("SELECT id FROM documents WHERE path LIKE '%.md' ORDER BY id LIMIT 1").fetchone()[0]
    gone = {r[0] for r in big.db.execute("SELECT id FROM chunks WHERE document_id = ?", (doc,))}
    text = big.db.execute("SELECT text FROM chunks WHERE document_id = ? ORDER BY seq", (doc,)).fetchone()[0]
    word = max(re.findall(r"[A-Za-z]+", text), key=len)
    assert {c for c, _ in lexical(big, word, collections(big), 50)} & gone
    lexicon_store._cache.clear()
    delete_document(big, doc)
    assert not list(big.index_dir.glob("*.pending"))  # a delete syncs both index files itself (test_deletemend.py)
    assert not {c for c, _ in lexical(big, word, collections(big), 50)} & gone
    assert not {c for c, _ in dense(big, embedder.embed([text])[0], collections(big), 50)} & gone
    assert_files_agree_with_sqlite(big)
    assert lexicon_store.current(big).n_live == big.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]


def test_a_segment_folded_before_a_crash_is_not_folded_twice(big, tmp_path, embedder):
    """A kill between saving lexical.npz and deleting the segments leaves them behind."""
    note = tmp_path / "airship.md"
    note.write_text("# Airships\n\nThe zeppelin fleet is inspected every spring.\n")
    ingest_paths(big, [note], embedder=embedder, progress=False)
    [seg] = (big.index_dir / "lexical.pending").glob("*.npz")
    kept = seg.read_bytes()
    lexicon_store.current(big)
    seg.parent.mkdir()
    seg.write_bytes(kept)  # as if the fold had been killed after the save
    lexicon_store._cache.clear()
    index = lexicon_store.current(big)
    assert index.n_live == len(set(index.ids[index.live].tolist())) == big.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    assert_files_agree_with_sqlite(big, faiss=False)


def test_merging_indexes_equals_tokenizing_their_chunks_together():
    rows = [(i, i // 3, 1 + i % 2, f"word{i % 7} shared text number {i}", f"Heading {i % 4}") for i in range(40)]
    whole = lexicon.Index.empty().with_chunks(rows)
    first = lexicon.Index.empty().with_chunks(rows[:15]).without(np.array([3, 4]), min_dead=100)
    parts = [lexicon.Index.empty().with_chunks(rows[15:30]), lexicon.Index.empty().with_chunks(rows[30:])]
    merged = first.merged(parts)
    reference = lexicon.Index.empty().with_chunks(rows).without(np.array([3, 4]), min_dead=100)
    units = lexicon.query_units("word3 shared number 17 heading", frozenset())
    assert merged.search(units, 40) == reference.search(units, 40)
    assert merged.n_live == whole.n_live - 2
    assert sorted(merged.terms) == sorted(whole.terms)
