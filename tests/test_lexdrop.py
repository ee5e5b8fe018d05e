"""A deleted or replaced document's words leave the lexical index file in a big workspace too.

Past pipeline.HOLD_INDEXES_UP_TO chunks (5,000) an ingest or a delete wrote pending segments and the
next search folded them in, keeping the removed chunks as dead postings and their words in the term
table until an erase or `archivist reindex`: a deleted document's rare words (a name) stayed on disk,
and the table only grew. Each test sets the threshold to 0, so a few small documents take that path.
"""

from __future__ import annotations

import pytest

from archivist.ingest import pipeline
from archivist.retrieval import lexicon, lexicon_store
from conftest import ingest_texts
from test_erasemend import DOCS, RARE, _on_disk

QUERIES = ("canteen morning", "leave per year", "merger closes in March", "eight", "paid days employee canteen")


@pytest.fixture
def big(ws, embedder, tmp_path, monkeypatch):
    """The erase tests' three documents and a few more, ingested as past the threshold (pending segments)."""
    monkeypatch.setattr(pipeline, "HOLD_INDEXES_UP_TO", 0)
    more = {f"note{i}.md": f"# Note {i}\n\nThe canteen serves soup {'every day ' * i}at noon.\n\n"
                           f"Leave requests go to the office {i} days ahead.\n" for i in range(1, 5)}
    ingest_texts(ws, embedder, tmp_path / "docs", {"hr": {**DOCS["hr"], **more}})
    lexicon_store.current(ws)  # a search folds the segments into lexical.npz
    assert lexicon.tokens(RARE)[0] in _on_disk(ws).terms
    return ws


def _index_files_holding(ws, word: str) -> list[str]:
    """The files under index/ (lexical.npz, its sidecar, leftovers of a save, pending segments, FAISS)
    whose bytes hold `word`'s stem; the npz is uncompressed, so its term table is plain text."""
    stem = lexicon.tokens(word)[0].encode()
    return sorted(str(f.relative_to(ws.index_dir)) for f in ws.index_dir.rglob("*") if f.is_file() and stem in f.read_bytes())


def _assert_as_freshly_built(ws):
    """The index on disk holds no dead position and no term beyond a fresh build's, and ranks every
    query as an index built afresh from the chunks SQLite holds: same chunks, same order, same scores."""
    kept = _on_disk(ws)
    fresh = lexicon.Index.empty(kept.fields).with_chunks(lexicon_store._rows(ws, lexicon_store._sqlite_ids(ws)))
    assert len(kept.ids) == kept.n_live == fresh.n_live
    assert set(kept.terms) == set(fresh.terms)
    index = lexicon_store.current(ws)
    cid = ws.db.execute("SELECT id FROM collections WHERE name = 'hr'").fetchone()[0]
    for query in QUERIES:
        units = lexicon.query_units(query)
        for scope in (None, [cid]):
            got, want = index.search(units, 50, scope), fresh.search(units, 50, scope)
            assert [c for c, _ in got] == [c for c, _ in want] and got, (query, scope)
            assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-9, rel=0)


def test_a_delete_in_a_big_workspace_drops_the_document_s_words_from_the_file_at_once(big):
    """Before: the delete wrote a pending segment of removed ids; lexical.npz kept the rare word until
    an erase or reindex (and a search's fold kept it as a term matching nothing). Now the file holds
    no word of it right after the delete, before any search, and ranks as a fresh build."""
    assert _index_files_holding(big, RARE) == ["lexical.npz"]
    pipeline.delete_document(big, "merger.md")
    assert _index_files_holding(big, RARE) == []
    assert not (big.index_dir / "lexical.pending").exists()
    assert lexicon.tokens(RARE)[0] not in _on_disk(big).terms
    _assert_as_freshly_built(big)


def test_a_re_ingest_in_a_big_workspace_drops_the_old_version_s_words_at_the_fold(big, embedder, tmp_path):
    """A changed document's re-ingest past the threshold: the old version's words leave the file, and
    stay out of it after the next search. Before: the fold kept them as terms matching nothing, until
    an erase or reindex. (Since tests/test_indexmend.py the re-ingest syncs the index itself, as a
    delete does, rather than leaving a segment for the next search to fold in.)"""
    (tmp_path / "docs" / "merger.md").write_text("# Merger\n\nThe merger closes in April.\n\n"
                                                 "The canteen opens at eight in the morning.\n")
    [res] = pipeline.ingest_paths(big, [tmp_path / "docs" / "merger.md"], collection="hr", embedder=embedder,
                                  progress=False)
    assert res.status == "updated"
    assert not lexicon_store._segments(big) and _index_files_holding(big, RARE) == []  # before any search
    lexicon_store.current(big)
    assert _index_files_holding(big, RARE) == []
    assert not (big.index_dir / "lexical.pending").exists()
    _assert_as_freshly_built(big)


def test_a_document_deleted_before_any_search_folds_its_words_in_leaves_no_segment_holding_them(big, embedder, tmp_path):
    """Ingested past the threshold, a document's postings wait in a pending segment; deleted before a
    search folds it, they stayed in that segment file (and then in lexical.npz's term table). Now
    the delete folds and removes the segments, and no file under index/ holds its words."""
    note = tmp_path / "complaint.md"
    note.write_text("# Complaint\n\nThe complaint filed by Quorthlemayne concerns overtime in the canteen.\n")
    pipeline.ingest_paths(big, [note], collection="hr", embedder=embedder, progress=False)
    [segment] = lexicon_store._segments(big)
    assert _index_files_holding(big, "Quorthlemayne") == [str(segment.relative_to(big.index_dir))]
    pipeline.delete_document(big, "complaint.md")
    assert _index_files_holding(big, "Quorthlemayne") == [] and lexicon_store._segments(big) == []
    _assert_as_freshly_built(big)


def test_a_segment_write_cut_short_leaves_no_file_holding_the_words(big, embedder, tmp_path, monkeypatch):
    """Ctrl-C while an ingest writes its pending segment leaves the half-made `.tmp` file. Before: no
    one removed it, so it kept the document's words after the document was deleted, and the folder it
    kept alive made every search sync the index with SQLite (`current` checks for the folder). Now the
    next sync removes it (under the index's lock, where no writer is at work) and the folder."""
    note = tmp_path / "complaint.md"
    note.write_text("# Complaint\n\nThe complaint filed by Quorthlemayne concerns overtime in the canteen.\n")
    write = lexicon_store._write

    def cut_short(f, index, removed=None):
        write(f, index, removed)
        raise KeyboardInterrupt

    monkeypatch.setattr(lexicon_store, "_write", cut_short)
    with pytest.raises(KeyboardInterrupt):
        pipeline.ingest_paths(big, [note], collection="hr", embedder=embedder, progress=False)
    monkeypatch.setattr(lexicon_store, "_write", write)
    assert [f.suffix for f in (big.index_dir / "lexical.pending").iterdir()] == [".tmp"]
    assert lexicon_store.current(big).df(lexicon.tokens("Quorthlemayne")[0]) == 1  # read again from SQLite
    pipeline.delete_document(big, "complaint.md")
    assert _index_files_holding(big, "Quorthlemayne") == []
    assert not (big.index_dir / "lexical.pending").exists()
    _assert_as_freshly_built(big)
