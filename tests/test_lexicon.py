"""The in-memory lexical index: FTS5's BM25 computed from a CSR matrix, kept in step with SQLite."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from archivist.ingest.pipeline import delete_document, ingest_paths
from archivist.retrieval import lexicon, lexicon_store
from archivist.retrieval.query import STOPWORDS, fts_query
from archivist.retrieval.search import lexical

from conftest import SAMPLE_DOCS, sample_questions


def fts5_ranking(ws, query: str, limit: int = 10) -> list[tuple[int, float]]:
    """The same ranking straight from SQLite's FTS5 (the reference the index reproduces)."""
    q = fts_query(query)
    rows = ws.db.execute("SELECT rowid, -bm25(chunks_fts, 1.0, 0.5) FROM chunks_fts WHERE chunks_fts MATCH ? "
                         "ORDER BY bm25(chunks_fts, 1.0, 0.5), rowid LIMIT ?", [q, limit]).fetchall()
    return [(int(a), float(b)) for a, b in rows]


def same_ranking(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> bool:
    return [c for c, _ in a] == [c for c, _ in b] and np.allclose([s for _, s in a], [s for _, s in b], rtol=1e-5)


def all_ids(ws) -> list[int]:
    return [r[0] for r in ws.db.execute("SELECT id FROM collections")]


@pytest.mark.parametrize("word", ["allowance", "parental", "expenses", "password", "leave", "NW", "station", "laptop"])
def test_single_word_scores_equal_fts5_bm25(sample_ws, word):
    ours = lexical(sample_ws, word, all_ids(sample_ws), 10)
    ref = fts5_ranking(sample_ws, word)
    assert ref, f"{word} is in the samples"
    assert [c for c, _ in ours] == [c for c, _ in ref]
    assert np.allclose([s for _, s in ours], [s for _, s in ref], rtol=1e-5)


def test_questions_rank_like_fts5(sample_ws):
    """Whole questions OR many words together; FTS5 matches phrases (NW-1180) by adjacency, the index
    by co-occurrence, and Porter stemmers can differ on rare words, so allow a little slack."""
    same = overlap = 0
    rows = sample_questions() + sample_questions(answerable=False)
    for row in rows:
        ours = [c for c, _ in lexical(sample_ws, row["question"], all_ids(sample_ws), 10)]
        ref = [c for c, _ in fts5_ranking(sample_ws, row["question"])]
        same += ours[:3] == ref[:3]
        overlap += len(set(ours) & set(ref)) / max(1, len(ref))
    assert same / len(rows) >= 0.9 and overlap / len(rows) >= 0.95, (same, overlap, len(rows))


def test_query_units_follow_fts_query():
    assert lexicon.query_units('parental leave "HR-17" OR NEAR( the', STOPWORDS) == [
        ("parent",), ("leav",), ("hr", "17"), ("near",)]
    assert lexicon.query_units("the of and", STOPWORDS) == []
    assert lexicon.tokens("Crème brûlée_recipes") == ["creme", "brule", "recip"]


def test_stems_come_from_the_c_stemmer_and_equal_the_pure_python_ones(sample_ws):
    """PyStemmer (C, ~100x faster) is installed and used, and stems every word of the samples as
    snowballstemmer's pure-Python Porter does."""
    import re

    import snowballstemmer
    from snowballstemmer.porter_stemmer import PorterStemmer

    assert type(snowballstemmer.stemmer("porter")).__module__ == "Stemmer"
    text = " ".join(r[0] for r in sample_ws.db.execute("SELECT text FROM chunks"))
    words = sorted({w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2})
    assert len(words) > 500
    pure = PorterStemmer()
    assert [lexicon.stem(w) for w in words] == [pure.stemWord(w) for w in words]


def test_delete_and_reingest_keep_the_index_equal_to_sqlite(ws, embedder, tmp_path):
    docs = [p for p in SAMPLE_DOCS if p.suffix in (".md", ".txt", ".csv")][:3]
    ingest_paths(ws, docs, embedder=embedder, progress=False)
    before = lexical(ws, "station", all_ids(ws), 50)
    assert before and lexicon_store.current(ws).n_live == ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    owner = ws.db.execute("SELECT d.path FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ?",
                          (before[0][0],)).fetchone()[0]
    delete_document(ws, owner)
    gone = {r[0] for r in ws.db.execute("SELECT id FROM chunks")}
    after = lexical(ws, "station", all_ids(ws), 50)
    assert all(c in gone for c, _ in after) and before[0][0] not in {c for c, _ in after}
    assert lexicon_store.current(ws).n_live == len(gone)
    # What a fresh build from SQLite gives, scores included (df and length statistics skip dead chunks).
    rebuilt = lexicon.Index.empty().with_chunks(lexicon_store._rows(ws, np.array(sorted(gone))))
    units = lexicon.query_units("station charging price", STOPWORDS)
    assert same_ranking(lexicon_store.current(ws).search(units, 20), rebuilt.search(units, 20))


def test_deleted_chunks_masked_or_compacted_rank_as_a_fresh_build(sample_ws):
    rows = lexicon_store._rows(sample_ws, np.array([r[0] for r in sample_ws.db.execute("SELECT id FROM chunks")]))
    full = lexicon.Index.empty().with_chunks(rows)
    keep = rows[::3]
    dropped = np.array([r[0] for r in rows if r not in keep], np.int64)
    fresh = lexicon.Index.empty().with_chunks(keep)
    masked, compacted = full.without(dropped), full.without(dropped, min_dead=1)
    assert len(masked.ids) == len(rows) and len(compacted.ids) == len(keep)
    units = lexicon.query_units("leave allowance travel invoice station", STOPWORDS)
    for index in (masked, compacted):
        assert index.n_live == len(keep)
        assert same_ranking(index.search(units, 15), fresh.search(units, 15))


def test_incremental_adds_equal_one_build(sample_ws):
    rows = lexicon_store._rows(sample_ws, np.array([r[0] for r in sample_ws.db.execute("SELECT id FROM chunks")]))
    step = lexicon.Index.empty()
    for start in range(0, len(rows), 7):
        step = step.with_chunks(rows[start:start + 7])
    once = lexicon.Index.empty().with_chunks(rows)
    assert step.terms == once.terms
    assert np.array_equal(step.indptr, once.indptr) and np.array_equal(step.post_pos, once.post_pos)
    units = lexicon.query_units("How many days of parental leave NW-1180", STOPWORDS)
    assert step.search(units, 10) == once.search(units, 10)


def test_a_document_filter_applies_inside_the_lexical_search(sample_ws):
    doc = sample_ws.db.execute("SELECT id FROM documents WHERE path = 'price-list-2025.csv'").fetchone()[0]
    one = lexical(sample_ws, "price station", all_ids(sample_ws), 50, documents=[doc])
    assert one and {r[0] for r in sample_ws.db.execute(
        f"SELECT document_id FROM chunks WHERE id IN ({','.join('?' * len(one))})", [c for c, _ in one])} == {doc}


def test_a_corrupt_or_missing_index_file_is_rebuilt_from_sqlite(sample_home, tmp_path):
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    home = tmp_path / "copy"
    shutil.copytree(sample_home, home)
    path = home / "index" / "lexical.npz"
    with open_checked(Settings.from_env(home=home)) as w:
        expected = lexical(w, "parental leave", all_ids(w), 10)
    path.write_bytes(b"not a zip file")
    os.utime(path, (1, 1))
    lexicon_store._cache.clear()
    with open_checked(Settings.from_env(home=home)) as w:  # the check on open notices the sidecar no longer fits
        assert lexical(w, "parental leave", all_ids(w), 10) == expected
    path.unlink()
    lexicon_store._cache.clear()
    with open_workspace(Settings.from_env(home=home)) as w:  # first search builds it
        assert lexical(w, "parental leave", all_ids(w), 10) == expected
    assert path.exists()


def test_another_process_saving_the_index_is_picked_up(sample_home, tmp_path, embedder):
    """A second workspace handle stands in for another process: it sees the file's new mtime and reloads."""
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    home = tmp_path / "copy"
    shutil.copytree(sample_home, home)
    settings = Settings.from_env(home=home)
    with open_checked(settings) as reader:
        assert lexical(reader, "zeppelin", all_ids(reader), 5) == []
        note = tmp_path / "airship.md"
        note.write_text("# Airships\n\nThe zeppelin fleet is inspected every spring.\n")
        lexicon_store._cache.clear()  # the writer starts from the file, as another process would
        with open_checked(settings) as writer:
            ingest_paths(writer, [note], embedder=embedder, progress=False)
        hits = lexical(reader, "zeppelin", all_ids(reader), 5)
        assert len(hits) == 1


@pytest.mark.parametrize("offset", [0, 10_000_000], ids=["dense ids", "sparse ids"])
def test_positions_find_live_chunks_by_id_and_nothing_else(offset):
    """Dense ids are looked up in an array, sparse ones (a workspace re-ingested many times) by a
    binary search: both find every live chunk at its position and report dead, unknown, negative
    and out-of-range ids as not found."""
    rows = [(offset + 3 * i + 1, 1, 1, f"word{i} common text", "") for i in range(40)]
    index = lexicon.Index.empty().with_chunks(rows).without(np.array([offset + 4, offset + 61]), min_dead=10**6)
    assert (index._position_of is None) == (offset > 0)
    live = np.array([r[0] for r in rows if r[0] not in (offset + 4, offset + 61)])
    pos, found = index.positions(live)
    assert found.all() and np.array_equal(index.ids[pos], live) and index.live[pos].all()
    others = np.array([offset + 4, offset + 61, offset + 2, offset + 3 * 40 + 1, -5, offset + 10**9, 0])
    pos, found = index.positions(others)
    assert not found.any() and not pos.any()
    held, found = index.holding([lexicon.stem("word7"), lexicon.stem("common")], [offset + 22, offset + 25, offset + 4])
    assert found.tolist() == [True, True, False]
    assert held.tolist() == [[True, False, False], [True, True, False]]


# -- fields (BM25F in FTS5's form) and identifiers ------------------------------------------------

FIELD_ROWS = [  # (chunk id, document, collection, text, heading, title); every word here is its own Porter stem
    (1, 1, 1, "git stash dog", "tree", "stash"),
    (2, 2, 1, "os.path.join fox", "", ""),
    (3, 3, 1, "path os join dog", "", ""),
    (4, 4, 1, "fox fox fox", "stash", ""),
    (5, 5, 1, "cat dog", "", ""),
    (6, 6, 1, "cat fox", "", ""),
]


def bm25(f: float, length: float, df: int, n: int = 6, avgdl: float = 3.5) -> float:
    """One term's BM25 as FTS5 computes it (k1 1.2, b 0.75), from a hand-counted weighted frequency."""
    idf = np.log((n - df + 0.5) / (df + 0.5))
    return idf * f * 2.2 / (f + 1.2 * (0.25 + 0.75 * length / avgdl))


def test_bm25f_title_and_heading_scores_by_hand():
    """heading 0.5, title 2: chunk 1 holds "stash" once in its text and once in its title (f = 1 + 2),
    its length 3 + 1 + 1 = 5; chunk 4 once in its heading (f = 0.5), length 4. The six lengths sum to
    21, so the average is 3.5; "stash" is in 2 of 6 chunks."""
    index = lexicon.Index.empty(lexicon.Fields(heading=0.5, title=2.0)).with_chunks(FIELD_ROWS)
    assert index.avgdl == 3.5
    hits = index.search([("stash",)], 10)
    assert [c for c, _ in hits] == [1, 4]
    assert np.allclose([s for _, s in hits], [bm25(3.0, 5, 2), bm25(0.5, 4, 2)], rtol=1e-6)
    assert np.allclose([s for _, s in hits], [0.8459734, 0.3535904], rtol=1e-6)


def test_default_fields_ignore_the_title_as_fts5_does():
    """Title weight 0: the title is neither counted nor part of the length (lengths 4,4,4,4,2,2: average 10/3)."""
    with_title = lexicon.Index.empty().with_chunks(FIELD_ROWS)
    without = lexicon.Index.empty().with_chunks([r[:5] for r in FIELD_ROWS])
    assert with_title.search([("stash",)], 10) == without.search([("stash",)], 10)
    hits = with_title.search([("stash",)], 10)
    assert np.allclose([s for _, s in hits], [bm25(1.0, 4, 2, avgdl=20 / 6), bm25(0.5, 4, 2, avgdl=20 / 6)], rtol=1e-6)


def test_an_identifier_written_verbatim_outranks_its_words_scattered():
    """os.path.join: chunks 2 and 3 hold all three words (co-occurrence frequency 1 each); only chunk 2
    writes them as one identifier, so with identifier weight 1 its frequency is 1 + 1 x 1 = 2."""
    units = lexicon.query_units("os.path.join", STOPWORDS)
    assert units == [("os", "path", "join")]
    plain = lexicon.Index.empty().with_chunks(FIELD_ROWS).search(units, 10)
    assert [c for c, _ in plain] == [2, 3] and plain[0][1] == plain[1][1]  # a tie, broken by id
    idx = lexicon.Index.empty(lexicon.Fields(identifier=1.0)).with_chunks(FIELD_ROWS)
    hits = idx.search(units, 10)
    assert [c for c, _ in hits] == [2, 3]
    assert np.allclose([s for _, s in hits], [bm25(2.0, 4, 2, avgdl=20 / 6), bm25(1.0, 4, 2, avgdl=20 / 6)], rtol=1e-6)
    # the pairs are no words of their own: lengths, and so one-word scores, are unchanged
    assert idx.search([("fox",)], 10) == lexicon.Index.empty().with_chunks(FIELD_ROWS).search([("fox",)], 10)


def test_identifier_pairs_join_words_written_without_space():
    assert lexicon.identifier_pairs("Run os.path.join(a) then --keep-index; git stash, snake_case") == [
        "os\x00path", "path\x00join", "join\x00a", "keep\x00index", "snake\x00case"]


def test_bad_field_weights_are_refused_by_name():
    with pytest.raises(ValueError, match="title"):
        lexicon.Fields(title=-1.0)
    with pytest.raises(ValueError, match="identifier"):
        lexicon.Fields(identifier=float("nan"))


def test_an_index_weighted_otherwise_is_rebuilt_with_the_default_fields(sample_home, tmp_path):
    """The weights are saved with the index; a file weighted otherwise (an older setting) is rebuilt
    on first use and then ranks as before."""
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    home = tmp_path / "copy"
    shutil.copytree(sample_home, home)
    with open_workspace(Settings.from_env(home=home)) as w:
        expected = lexical(w, "parental leave", all_ids(w), 10)
        lexicon_store.sync(w, rebuild=True, fields=lexicon.Fields(title=3.0, identifier=1.0))
        lexicon_store._cache.clear()
        assert lexicon_store._load(w).fields == lexicon.Fields(title=3.0, identifier=1.0)
        assert lexical(w, "parental leave", all_ids(w), 10) == expected
        assert lexicon_store._load(w).fields == lexicon.DEFAULT_FIELDS


def test_the_settings_choose_the_fields(sample_home, tmp_path):
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    home = tmp_path / "copy"
    shutil.copytree(sample_home, home)
    with open_workspace(Settings.from_env(home=home, lexical_title_weight=2.0, lexical_identifier_weight=1.0)) as w:
        assert lexicon_store.current(w).fields == lexicon.Fields(heading=0.5, title=2.0, identifier=1.0)
        rows = lexicon_store._rows(w, np.array([r[0] for r in w.db.execute("SELECT id FROM chunks")]))
        fresh = lexicon.Index.empty(lexicon.Fields(title=2.0, identifier=1.0)).with_chunks(rows)
        units = lexicon.query_units("parental leave NW-1180", STOPWORDS)
        assert same_ranking(lexicon_store.current(w).search(units, 10), fresh.search(units, 10))
    with pytest.raises(ValueError, match="lexical_title_weight"):
        Settings.from_env(home=home, lexical_title_weight=-1.0)
