"""Lexical statistics follow the search's scope (docs/access.md, "Lexical statistics").

BM25's N, document frequencies and average length, and the answer gates' word rarities, are counted
over the collections a search looks in: a member's scores and "not found" say nothing about the words
of collections they cannot read. A search over every collection keeps FTS5's own BM25.

The workspace: "alpha" holds notes with words found nowhere else (zebra, kilo, marta, quokka), two
of them the word "launch"; "beta" holds bob's probe note "zebra unicorn kilo walrus marta" and two others.
alice may read alpha, bob may write beta (the security report's repro, finding F2).
"""

from __future__ import annotations

import numpy as np
import pytest

from archivist import access
from archivist.retrieval import lexicon, lexicon_store
from archivist.retrieval.answerability import term_coverage
from archivist.retrieval.keyanswer import term_stats
from archivist.retrieval.query import STOPWORDS, fts_query
from archivist.retrieval.search import search, statistics_scope

from conftest import ingest_texts

ALPHA = {
    "launch.md": "The launch of ZEBRA-7731 is planned with Marta Vos for the spring.\n",
    "kilo.md": "KILO-42 ships after the launch review; the quokka budget is frozen.\n",
    "rooms.md": "Room twelve hosts the weekly planning call and the budget review.\n",
    "holidays.md": "Office holidays are announced in November for the following year.\n",
    "badges.md": "Visitors get a badge at the front desk and return it when leaving.\n",
}
BETA = {
    "probe.md": "zebra unicorn kilo walrus marta\n",
    "lunch.md": "The canteen serves soup and bread on Fridays, and coffee all day.\n",
    "parking.md": "Bicycles are parked in the yard behind the building near the gate.\n",
}
IN_ALPHA_TOO = ["zebra", "kilo", "marta"]  # in bob's probe note and in alpha
ONLY_BETA = ["unicorn", "walrus"]          # in bob's probe note only


@pytest.fixture
def two_teams(ws, embedder, tmp_path):
    """alpha and beta ingested by the admin; alice reads alpha, bob writes beta."""
    ingest_texts(ws, embedder, tmp_path / "docs", {"alpha": ALPHA, "beta": BETA})
    access.add_user(ws, "alice")
    access.grant(ws, "alice", "alpha", "read")
    access.add_user(ws, "bob")
    access.grant(ws, "bob", "beta", "write")
    return ws


def lexical_scores(ws, query: str, user: str | None) -> dict[str, float]:
    """Document name -> lexical score of `query` for `user` (every document here is one chunk)."""
    return {h.document.rsplit("/", 1)[-1]: h.score for h in search(ws, query, k=20, user=user, mode="lexical")}


def scope_alone(ws, collection: str, query: str) -> dict[str, float]:
    """The same scores from an index built from `collection`'s chunks alone: what BM25 gives when
    nothing else exists (the whole-index path, which test_lexicon checks against FTS5)."""
    rows = ws.db.execute("SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
                         "JOIN collections k ON k.id = d.collection_id WHERE k.name = ?", (collection,)).fetchall()
    index = lexicon.Index.empty(lexicon.fields_of(ws)).with_chunks(lexicon_store._rows(ws, np.array([r[0] for r in rows])))
    names = dict(ws.db.execute("SELECT c.id, d.path FROM chunks c JOIN documents d ON d.id = c.document_id"))
    hits = index.search(lexicon.query_units(query, STOPWORDS), 20)
    return {names[c].rsplit("/", 1)[-1]: s for c, s in hits}


def test_a_member_cannot_tell_which_words_unreadable_collections_hold(two_teams):
    """The tester's repro: on the old code zebra, kilo and marta scored 1.015 (alpha holds them) and
    unicorn and walrus 1.888. Now every word of the probe scores the same, as in a workspace that
    holds beta alone."""
    ws = two_teams
    scores = {w: lexical_scores(ws, w, "bob") for w in IN_ALPHA_TOO + ONLY_BETA}
    assert all(list(s) == ["probe.md"] for s in scores.values()), scores
    values = [s["probe.md"] for s in scores.values()]
    assert values == [values[0]] * len(values), scores
    assert values[0] == pytest.approx(scope_alone(ws, "beta", "unicorn")["probe.md"], rel=1e-6)
    # a word that exists nowhere in beta scores nothing, wherever else it is
    assert lexical_scores(ws, "quokka", "bob") == {}


def test_adding_to_an_unreadable_collection_leaves_a_members_scores_alone(two_teams, embedder, tmp_path):
    """alice's "launch" scores did not stay put when bob put "launch" into beta (0.54 -> 0.000002 in
    the report). Now they do, and they are those of alpha alone; the admin's, over everything, move."""
    ws = two_teams
    before, admin_before = lexical_scores(ws, "launch", "alice"), lexical_scores(ws, "launch", None)
    assert set(before) == {"launch.md", "kilo.md"} and min(before.values()) > 0.1  # above idf's floor of 1e-6
    ingest_texts(ws, embedder, tmp_path / "bob", {"beta": {"bob-launch.md": "Our launch party is on Friday.\n"}},
                 user="bob")
    after, admin_after = lexical_scores(ws, "launch", "alice"), lexical_scores(ws, "launch", None)
    assert after == before
    assert after == pytest.approx(scope_alone(ws, "alpha", "launch"), rel=1e-6)
    assert "bob-launch.md" in admin_after and admin_after["launch.md"] != admin_before["launch.md"]


def fts5_scores(ws, query: str) -> dict[str, float]:
    """Document name -> FTS5's own bm25 over the whole chunks_fts table (text 1.0, heading 0.5)."""
    rows = ws.db.execute("SELECT d.path, -bm25(chunks_fts, 1.0, 0.5) FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
                         "JOIN documents d ON d.id = c.document_id WHERE chunks_fts MATCH ?", [fts_query(query)]).fetchall()
    return {p.rsplit("/", 1)[-1]: s for p, s in rows}


@pytest.mark.parametrize("query", ["launch", "zebra", "unicorn", "launch kilo bread"])
def test_a_search_over_every_collection_keeps_fts5s_bm25(two_teams, query):
    """The admin (and anyone reading everything) gets the whole-index statistics, unchanged: FTS5's
    scores; and a scope naming every collection is bit-identical to the fast path."""
    ws = two_teams
    ours = lexical_scores(ws, query, None)
    ref = fts5_scores(ws, query)
    assert set(ours) == set(ref)
    assert [ours[d] for d in sorted(ours)] == pytest.approx([ref[d] for d in sorted(ref)], rel=1e-5)
    index = lexicon_store.current(ws)
    units = lexicon.query_units(query, STOPWORDS)
    every = [r[0] for r in ws.db.execute("SELECT id FROM collections")]
    whole, scoped = index.rank(units, 20), index.rank(units, 20, every)
    assert whole.hits == scoped.hits and whole.ceiling == scoped.ceiling
    assert statistics_scope(ws, None) is None


def test_answer_gates_count_words_over_the_searched_collections(two_teams, embedder, tmp_path):
    """term_stats' document frequencies (its unknown_terms counts words with none) and term_coverage's
    IDF see beta only for bob: quokka, in alpha alone, is as unknown to him as a word nobody wrote,
    and a word alpha gains changes nothing for him."""
    ws = two_teams
    scope = statistics_scope(ws, "bob")
    assert scope == [ws.db.execute("SELECT id FROM collections WHERE name = 'beta'").fetchone()[0]]
    stats = term_stats(ws, "zebra unicorn quokka xylophone", scope)
    assert stats.terms == [("zebra", 1), ("unicorn", 1), ("quokka", 0), ("xylophone", 0)]
    assert stats.n == len(BETA)
    hits = search(ws, "unicorn walrus", k=3, user="bob", mode="lexical")
    coverage = {q: term_coverage(ws, q, hits, collections=scope) for q in ("unicorn quokka", "unicorn xylophone")}
    assert coverage["unicorn quokka"] == coverage["unicorn xylophone"] == pytest.approx(np.log(4 / 1.5) / (np.log(4 / 1.5) + np.log(4 / 0.5)))
    ingest_texts(ws, embedder, tmp_path / "more", {"alpha": {"zoo.md": "A unicorn and a walrus at the zoo.\n"}})
    assert term_stats(ws, "zebra unicorn quokka xylophone", scope) == stats
    assert term_coverage(ws, "unicorn quokka", hits, collections=scope) == coverage["unicorn quokka"]
    # the admin's, over every collection, count alpha too
    assert term_stats(ws, "unicorn quokka", statistics_scope(ws, None)).terms == [("unicorn", 2), ("quokka", 1)]


def test_the_rerankers_weigh_words_over_the_searched_collections_only(two_teams, embedder):
    """The optional rerankers (eval --reranker) counted word rarity over every chunk: bob's reranked
    scores for his probe moved with the words alpha holds. Now a reranker takes the search's scope."""
    from archivist.retrieval.rerank import CoverageReranker, LearnedReranker

    ws = two_teams
    weights = {"cosine": 0.0, "bm25": 0.5, "coverage": 0.5, "heading": 0.0}
    for make in (lambda: CoverageReranker(ws, embedder, alpha=0.0), lambda: LearnedReranker(ws, weights, embedder)):
        def probe_score(query: str) -> float:
            hits = search(ws, query, k=5, user="bob", mode="lexical", reranker=make())
            return next(h.score for h in hits if h.document.endswith("probe.md"))

        before = [probe_score(q) for q in ("walrus quokka", "unicorn holidays")]
        ingest_texts(ws, embedder, ws.home / "more", {"alpha": {f"more-{len(before)}.md": "walrus unicorn notes."}})
        assert [probe_score(q) for q in ("walrus quokka", "unicorn holidays")] == pytest.approx(before, rel=1e-6)
