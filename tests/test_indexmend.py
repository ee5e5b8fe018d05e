"""A re-ingest that replaces a document, and a delete beside a re-embed, leave nothing of the old text.

Before: a changed file ingested again kept its old version's words in FTS5's segments and in the WAL
(at any size), and past pipeline.HOLD_INDEXES_UP_TO chunks its old vectors in the FAISS file and its
old words in lexical.npz, until the next search; a delete already cleared them all
(tests/test_deletemend.py). And a re-embed's staging file (index/reembed.db) kept the new vectors of
chunks deleted while it ran, or while it waited to be resumed, until its switch. Each test reads the
bytes of the files on disk for the old text's rare word or for the exact vectors of its chunks.
"""

from __future__ import annotations

import numpy as np
import pytest

from archivist.ingest import pipeline
from archivist.retrieval import lexicon_store, reembed, vectors
from test_deletemend import _files_holding, _needles, _vectors_of, big, small  # noqa: F401  (fixtures)
from test_erasemend import DOCS, RARE

CHANGED = "# Merger\n\nThe merger closes in April.\n\nThe canteen opens at eight in the morning.\n"  # no RARE


def _reingest_changed(ws, embedder, tmp_path):
    """merger.md changed on disk (the rare word gone) and ingested again: it replaces its chunks."""
    (tmp_path / "docs" / "merger.md").write_text(CHANGED)
    [res] = pipeline.ingest_paths(ws, [tmp_path / "docs" / "merger.md"], collection="hr", embedder=embedder,
                                  progress=False)
    assert res.status == "updated"


def _chunk_count(ws) -> int:
    return ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]


def test_a_re_ingest_in_a_big_workspace_leaves_the_old_version_in_no_file_at_once(big, embedder, tmp_path):
    """Before: past the threshold the re-ingest only marked the indexes behind, so `c<id>.faiss` kept the
    old chunks' vectors and lexical.npz (and the WAL, and FTS5's segments) the old words until the next
    search. Now, right after it and before any search, no file of the workspace holds either; the
    indexes hold exactly SQLite's chunks and find the new version."""
    cid = big.collection_id("hr")
    old = _vectors_of(big, "merger.md")
    assert set(_files_holding(big.index_dir, old + _needles())) == {f"c{cid}.faiss", "lexical.npz"}  # the control
    _reingest_changed(big, embedder, tmp_path)
    assert _files_holding(big.home, old + _needles()) == []
    assert not (big.index_dir / f"c{cid}.pending").exists() and not (big.index_dir / "lexical.pending").exists()
    assert vectors.fresh_sidecar(big.index_dir / f"c{cid}.faiss")["ntotal"] == _chunk_count(big)
    new = _vectors_of(big, "merger.md")
    assert _files_holding(big.index_dir, new) == [f"c{cid}.faiss"]
    index = lexicon_store.current(big)
    assert index.n_live == _chunk_count(big) == len(index.ids)  # compacted: no dead position of the old chunks
    assert big.db.execute("SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH 'april'").fetchone()[0] == 1


def test_a_re_ingest_in_a_small_workspace_leaves_the_old_words_in_no_fts5_segment_nor_the_wal(small, embedder,
                                                                                             tmp_path):
    """Under the threshold the index files were synced already, but FTS5 kept the old words in its
    segments (the original and the delete marker's) and the WAL kept the old pages, text and all."""
    assert [f for f in _files_holding(small.home, _needles()) if f.startswith("archivist.db")]  # the control
    _reingest_changed(small, embedder, tmp_path)
    assert _files_holding(small.home, _needles()) == []  # archivist.db and its WAL (which the job's end writes to again)
    assert small.db.execute("SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH 'april'").fetchone()[0] == 1
    assert small.db.execute("SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (RARE,)).fetchone()[0] == 0


def _staged(ws, chunk_ids: list[int]) -> list[bytes]:
    """The new vectors a re-embed staged for `chunk_ids`, as index/reembed.db stores them."""
    import sqlite3

    with sqlite3.connect(ws.index_dir / "reembed.db") as db:
        rows = db.execute(f"SELECT embedding FROM vectors WHERE chunk_id IN ({','.join('?' * len(chunk_ids))})",
                          chunk_ids).fetchall()
    assert len(rows) == len(chunk_ids)
    return [bytes(r[0]) for r in rows]


def _erase(ws, embedder, tmp_path):
    from archivist.ingest import erase

    erase.erase(ws, "merger.md")


@pytest.mark.parametrize("remove", [
    lambda ws, embedder, tmp_path: pipeline.delete_document(ws, "merger.md"),
    _erase,
    _reingest_changed,
], ids=["delete", "erase", "re-ingest"])
def test_a_stopped_re_embed_s_staging_keeps_no_vector_of_a_removed_chunk(small, embedder, tmp_path, remove):
    """A re-embed stopped after its first step (a kill, a cancel, `stop_after`) waits to be resumed with
    its staged vectors in index/reembed.db. Before: a delete, an erase or a re-ingest then left the
    removed chunks' new vectors there until the switch. Now none is in any file under index/, the
    staging keeps the rest, and resuming switches to exactly SQLite's chunks."""
    ids = [r[0] for r in small.db.execute("SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
                                          "WHERE d.path = 'merger.md'")]
    target = reembed.Target(embedder, "")
    assert not reembed.reembed(small, target, progress=False, stop_after=1).switched
    staged = _staged(small, ids)
    assert _files_holding(small.index_dir, staged)  # the control: the staging holds them
    before = reembed.staged_count(small)
    remove(small, embedder, tmp_path)
    assert _files_holding(small.index_dir, staged) == []
    assert reembed.staged_count(small) == before - len(ids)
    result = reembed.reembed(small, target, progress=False)
    assert result.switched and result.chunks == _chunk_count(small)
    assert not (small.index_dir / "reembed.db").exists()
    cid = small.collection_id("hr")
    assert vectors.fresh_sidecar(vectors.paths_for(small, cid, "")[0])["ntotal"] == _chunk_count(small)


class _DeletingWhileEmbedding:
    """The target embedder, whose first call lets another connection (another process: `archivist
    delete`) delete merger.md while the re-embed's step embeds it; it keeps the vectors it returns."""

    def __init__(self, inner, settings):
        self.inner, self.settings, self.returned = inner, settings, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed(self, texts, batch_size=None):
        from archivist.workspace import open_workspace

        if not self.returned:
            other = open_workspace(self.settings)
            try:
                pipeline.delete_document(other, "merger.md")
            finally:
                other.close()
        out = np.asarray(self.inner.embed(texts, batch_size=batch_size), np.float32)
        self.returned += [(t, v.tobytes()) for t, v in zip(texts, out)]
        return out


def test_a_delete_committed_while_a_re_embed_step_embeds_leaves_no_staged_vector(small, embedder, settings):
    """The delete looked at the staging before the step wrote its vectors there, so it found none of its
    chunks to drop. Before: the step then staged them and they stayed. Now the step drops them after its
    commit (it checks its own chunks against SQLite), and its WAL is emptied."""
    target = _DeletingWhileEmbedding(embedder, settings)
    assert not reembed.reembed(small, reembed.Target(target, ""), progress=False, stop_after=1).switched
    assert small.db.execute("SELECT COUNT(*) FROM documents WHERE path = 'merger.md'").fetchone()[0] == 0
    gone = [v for t, v in target.returned if RARE in t]
    assert gone  # the control: the step embedded the deleted chunk
    assert _files_holding(small.index_dir, gone) == []
    assert reembed.staged_count(small) == _chunk_count(small)


@pytest.mark.parametrize("pruned", [True, False], ids=["one-pruned", "none-pruned"])
def test_an_ingest_with_prune_forgets_the_replaced_and_the_pruned_chunks_with_one_fts5_merge(ws, embedder, tmp_path,
                                                                                            monkeypatch, pruned):
    """`archivist ingest FOLDER --prune` past the threshold, with one file changed and (or not) one gone
    from the folder. Before, a changed file's old words and vectors stayed until the next search when
    nothing was pruned. Now none stays in any file either way, and the run merges FTS5 once: the
    prune's delete forgets the replaced chunks with its own (the merge rewrites the whole full-text
    index: 2 s at 100,000 chunks), rather than once for the update and once more for the prune."""
    monkeypatch.setattr(pipeline, "HOLD_INDEXES_UP_TO", 0)
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in {**DOCS["hr"], "old.md": "# Old\n\nThe old rota hangs in the hall.\n"}.items():
        (folder / name).write_text(text)
    pipeline.ingest_paths(ws, [folder], collection="hr", embedder=embedder, progress=False)
    cid = ws.collection_id("hr")
    vectors.search(ws, cid, np.zeros(vectors.dimension(ws), np.float32), 3)
    lexicon_store.current(ws)
    old = _vectors_of(ws, "docs/merger.md") + (_vectors_of(ws, "docs/old.md") if pruned else [])
    assert set(_files_holding(ws.index_dir, old + _needles())) == {f"c{cid}.faiss", "lexical.npz"}  # the control
    (folder / "merger.md").write_text(CHANGED)
    if pruned:
        (folder / "old.md").unlink()
    merges = []
    ws.db.set_trace_callback(lambda sql: merges.append(sql) if "VALUES ('optimize')" in sql else None)  # FTS5 merges
    results = pipeline.ingest_paths(ws, [folder], collection="hr", embedder=embedder, progress=False, prune=True)
    ws.db.set_trace_callback(None)
    assert sorted((r.name, r.status) for r in results if r.status != "unchanged") == [
        ("docs/merger.md", "updated")] + ([("docs/old.md", "removed")] if pruned else [])
    assert len(merges) == 1
    assert _files_holding(ws.home, old + _needles()) == []
    assert vectors.fresh_sidecar(ws.index_dir / f"c{cid}.faiss")["ntotal"] == _chunk_count(ws)
    assert lexicon_store.current(ws).n_live == _chunk_count(ws) == len(lexicon_store.current(ws).ids)
