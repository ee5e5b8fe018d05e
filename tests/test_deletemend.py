"""After `archivist delete` (not erase) no file of the workspace can give a deleted document back.

A customer asked for a file naming a person to be deleted. Before, a delete left: the name in
FTS5's segments (`chunks_fts_data`, original and delete marker) until a merge; the pages as they
were in the WAL until a checkpoint truncated it; and, past pipeline.HOLD_INDEXES_UP_TO chunks, the
chunks' vectors in the collection's FAISS file (and in a save's leftover `.tmp`) until the next
search. Each test reads the bytes of the files on disk for the deleted document's rare word, or
for its chunks' exact vectors (an embedding can be inverted to approximate text).
"""

from __future__ import annotations

from contextlib import contextmanager

import shutil

import numpy as np
import pytest

from archivist.ingest import pipeline
from archivist.retrieval import lexicon, lexicon_store, vectors
from conftest import ingest_texts
from test_erasemend import DOCS, RARE


def _needles() -> list[bytes]:
    """The rare word as written and as FTS5 and the lexical index store it (lower case, stemmed)."""
    return sorted({RARE.encode(), RARE.lower().encode(), lexicon.tokens(RARE)[0].encode()})


def _files_holding(root, needles) -> list[str]:
    """The files under `root` whose bytes hold any of `needles`."""
    return sorted(str(f.relative_to(root)) for f in root.rglob("*")
                  if f.is_file() and any(n in f.read_bytes() for n in needles))


@contextmanager
def _rename_interrupted(monkeypatch, suffix: str):
    """Ctrl-C at a save's rename of a file whose name ends with `suffix` (the .tmp is left); the block
    must be interrupted there."""
    real = vectors.os.replace

    def interrupted(src, dst):
        if str(dst).endswith(suffix):
            raise KeyboardInterrupt
        real(src, dst)

    with monkeypatch.context() as m:
        m.setattr(vectors.os, "replace", interrupted)
        with pytest.raises(KeyboardInterrupt):
            yield


def _vectors_of(ws, name: str) -> list[bytes]:
    """Document `name`'s chunk vectors as SQLite (and a flat FAISS index) store them: float32 bytes."""
    rows = ws.db.execute("SELECT c.embedding FROM chunks c JOIN documents d ON d.id = c.document_id "
                         "WHERE d.path = ?", (name,)).fetchall()
    assert rows
    return [bytes(r[0]) for r in rows]


@pytest.fixture
def small(ws, embedder, tmp_path):
    ingest_texts(ws, embedder, tmp_path / "docs", DOCS)
    return ws


@pytest.fixture
def big(ws, embedder, tmp_path, monkeypatch):
    """The same documents ingested as past the threshold (an ingest loads no index), then searched,
    so that the index files hold them."""
    monkeypatch.setattr(pipeline, "HOLD_INDEXES_UP_TO", 0)
    ingest_texts(ws, embedder, tmp_path / "docs", DOCS)
    cid = ws.collection_id("hr")
    assert (ws.index_dir / f"c{cid}.pending").exists()  # the ingest only marked the FAISS index behind
    vectors.search(ws, cid, np.zeros(vectors.dimension(ws), np.float32), 3)  # a search syncs it
    lexicon_store.current(ws)
    return ws


def _db_files_holding_the_word(ws) -> list[str]:
    return [f for f in _files_holding(ws.home, _needles()) if f.startswith("archivist.db")]


def test_a_delete_leaves_the_document_s_words_in_no_fts5_segment(small):
    """Before: FTS5 kept the word in two rows of `chunks_fts_data` (its segment and the delete
    marker's) until it merged them, read back from the file's bytes after a checkpoint. Now the
    delete merges them: the database file holds it nowhere, and the full-text search still works."""
    assert _db_files_holding_the_word(small)  # the control: the words are there before the delete
    pipeline.delete_document(small, "merger.md")
    small.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert _db_files_holding_the_word(small) == []
    assert small.db.execute("SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH 'canteen'").fetchone()[0] == 1
    assert small.db.execute("SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (RARE,)).fetchone()[0] == 0


def test_a_delete_leaves_the_document_s_words_in_no_frame_of_the_wal(small):
    """Before: the WAL kept the ingest's pages, text and all, until a checkpoint truncated it (only
    an erase did; a long-running `archivist serve` never did). Now the delete empties it: right after
    it, neither `archivist.db` nor its WAL holds the word."""
    pipeline.delete_document(small, "merger.md")
    assert _db_files_holding_the_word(small) == []
    assert (small.home / "archivist.db-wal").stat().st_size == 0


def test_a_delete_in_a_big_workspace_takes_the_document_s_vectors_out_of_the_faiss_file_at_once(big):
    """Before: past the threshold a delete only marked the FAISS index behind (`c<id>.pending`), and
    `c<id>.faiss` kept the deleted chunks' vectors until the next vector search. Now no file under
    index/ holds one of them or the rare word right after the delete, and no mark is left."""
    cid = big.collection_id("hr")
    gone = _vectors_of(big, "merger.md")
    kept = _vectors_of(big, "leave.md")
    assert _files_holding(big.index_dir, gone) == [f"c{cid}.faiss"]  # the control
    pipeline.delete_document(big, "merger.md")
    assert _files_holding(big.index_dir, gone + _needles()) == []
    assert not (big.index_dir / f"c{cid}.pending").exists()
    assert _files_holding(big.index_dir, kept) == [f"c{cid}.faiss"]
    assert vectors.fresh_sidecar(big.index_dir / f"c{cid}.faiss")["ntotal"] == big.db.execute(
        "SELECT COUNT(*) FROM chunks").fetchone()[0]


def test_a_save_cut_short_leaves_no_copy_of_a_deleted_document_in_its_tmp_file(big):
    """A save killed between its write and its rename (`vectors.save_with_sidecar`) leaves a whole
    copy of the index as `c<id>.faiss.tmp` or `lexical.tmp.npz`. Before: a delete past the threshold
    left the FAISS one, holding the deleted chunks' vectors, until the next save of that index. Now
    the delete's own save of each index consumes it."""
    cid = big.collection_id("hr")
    shutil.copy(big.index_dir / f"c{cid}.faiss", big.index_dir / f"c{cid}.faiss.tmp")
    shutil.copy(big.index_dir / "lexical.npz", big.index_dir / "lexical.tmp.npz")
    gone = _vectors_of(big, "merger.md")
    assert _files_holding(big.index_dir, gone + _needles()) == sorted(
        [f"c{cid}.faiss", f"c{cid}.faiss.tmp", "lexical.npz", "lexical.tmp.npz"])  # the control
    pipeline.delete_document(big, "merger.md")
    assert _files_holding(big.index_dir, gone + _needles()) == []
    assert sorted(f.name for f in big.index_dir.glob("*tmp*")) == []


def test_a_delete_while_another_connection_reads_does_not_wait_on_it_and_the_next_delete_empties_the_wal(small):
    """Emptying the WAL waits for readers of an older snapshot: at the connection's busy timeout
    (60 s) a delete through `archivist serve` hung while another request held a read. It waits 2 s,
    leaves the WAL to the next delete, and that one empties it."""
    import time

    from archivist.workspace import connect

    reader = connect(small.home / "archivist.db")
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM chunks").fetchone()
        start = time.perf_counter()
        pipeline.delete_document(small, "merger.md")
        assert time.perf_counter() - start < 10
        assert (small.home / "archivist.db-wal").stat().st_size > 0  # held by the reader
        reader.execute("COMMIT")
    finally:
        reader.close()
    pipeline.delete_document(small, "canteen.md")
    assert _db_files_holding_the_word(small) == []
    assert small.db.execute("PRAGMA busy_timeout").fetchone()[0] == 60000


@pytest.fixture
def cut_short(ws, embedder, tmp_path, monkeypatch):
    """Two documents in the FAISS file, then the merger note ingested past the threshold and the sync
    that would add it to the file interrupted (Ctrl-C) between its write and its rename: its vectors
    are only in `c<id>.faiss.tmp`."""
    monkeypatch.setattr(pipeline, "HOLD_INDEXES_UP_TO", 0)
    docs = dict(DOCS["hr"])
    merger = docs.pop("merger.md")
    ingest_texts(ws, embedder, tmp_path / "docs", {"hr": docs})
    cid = ws.collection_id("hr")
    vectors.sync(ws, cid)
    ingest_texts(ws, embedder, tmp_path / "docs", {"hr": {"merger.md": merger}})
    with _rename_interrupted(monkeypatch, ".faiss"):
        vectors.sync(ws, cid)
    gone = _vectors_of(ws, "merger.md")
    assert _files_holding(ws.index_dir, gone) == [f"c{cid}.faiss.tmp"]  # the control
    return ws


def test_a_delete_removes_a_save_s_leftover_even_when_it_has_nothing_to_save(cut_short):
    """The delete's sync finds the file already without the document (its addition never reached
    the file) and saves nothing. Before: `c<id>.faiss.tmp` kept the deleted chunks' vectors."""
    gone = _vectors_of(cut_short, "merger.md")
    pipeline.delete_document(cut_short, "merger.md")
    assert _files_holding(cut_short.index_dir, gone) == []
    assert not list(cut_short.index_dir.glob("*.tmp"))


def test_a_delete_removes_the_lexical_save_s_leftover_even_when_it_has_nothing_to_save(ws, embedder, tmp_path,
                                                                                       monkeypatch):
    """The lexical index's save of an ingest interrupted (Ctrl-C) at its rename: `lexical.tmp.npz`
    holds the new document's words, `lexical.npz` does not. Another process then deletes the
    document: its sync finds nothing to change and saves nothing. Before: the words stayed in the tmp."""
    docs = dict(DOCS["hr"])
    merger = docs.pop("merger.md")
    ingest_texts(ws, embedder, tmp_path / "docs", {"hr": docs})
    with _rename_interrupted(monkeypatch, "lexical.npz"):
        ingest_texts(ws, embedder, tmp_path / "docs", {"hr": {"merger.md": merger}})
    assert _files_holding(ws.index_dir, _needles()) == ["lexical.tmp.npz"]  # the control
    lexicon_store._cache.clear()  # as in another process, which reads the file
    pipeline.delete_document(ws, "merger.md")
    assert _files_holding(ws.index_dir, _needles()) == []


def test_opening_the_workspace_removes_a_save_s_leftover(small, settings):
    """After a crash between a save's write and its rename, the next process that opens the workspace
    to search it (`open_checked`) removes the leftover copy; before, it stayed until that index's next save."""
    from archivist.retrieval.repair import open_checked

    cid = small.collection_id("hr")
    shutil.copy(small.index_dir / f"c{cid}.faiss", small.index_dir / f"c{cid}.faiss.tmp")
    shutil.copy(small.index_dir / "lexical.npz", small.index_dir / "lexical.tmp.npz")
    opened = open_checked(settings)
    try:
        assert not list(opened.index_dir.glob("*.tmp"))
        assert _files_holding(opened.index_dir, _vectors_of(opened, "merger.md")) == [f"c{cid}.faiss"]
    finally:
        opened.close()
