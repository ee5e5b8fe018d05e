"""Whether the hits of a search likely hold an answer: the score `answer.ask` compares with
`Settings.min_relevance` before it lets the LLM answer."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from archivist.records import Hit
from archivist.retrieval import folding, lexicon, lexicon_store
from archivist.retrieval.query import query_terms
from archivist.workspace import Workspace


def relevance(hit: Hit) -> float:
    """How relevant a hit is on an absolute scale (the cosine similarity; 0 if dense missed it)."""
    return hit.dense_score if hit.dense_score is not None else 0.0


def term_coverage(ws: Workspace, query: str, hits: Sequence[Hit], top: int = 3,
                  collections: Sequence[int] | None = None) -> float:
    """IDF-weighted share of the query's content words found in the top hits (0..1).

    A question about something absent from the documents has rare words (or words the corpus
    lacks entirely) that no top passage contains, even when its common words match well. The IDF
    is counted over the chunks of `collections` (ids: the ones searched, `search.statistics_scope`;
    None: every collection), so a collection the user cannot read weighs nothing.
    """
    terms = query_terms(query)
    if not terms:
        return 0.0
    index = lexicon_store.current(ws)
    stats = index.statistics(collections)
    n = stats.n
    text = folding.plain(" ".join(h.text.lower() + " " + " ".join(h.heading).lower() for h in hits[:top]))
    total = got = 0.0
    for t in terms:
        df = stats.df(index, lexicon.stem(t))
        idf = math.log((n + 1) / (df + 0.5))
        total += idf
        if present(t, text):
            got += idf
    return got / total if total > 0 else 0.0


def present(term: str, text: str) -> bool:
    """Whether lower-cased `text` holds a query term (`query_terms`): a word by a crude stem at the
    start of a word ("reimbursed" ~ "reimburse"); a CJK bigram anywhere, as written (no word
    boundary stands between Chinese or Japanese words). Both are folded as the index folds them
    (`folding.searchable`): "Müller" holds "muller" and "mueller", "Søren" "soren"."""
    term, text = folding.comparable(term), folding.searchable(text)
    if folding.is_cjk(term):
        return term in text
    return re.search(r"\b" + re.escape(term[: max(4, len(term) - 2)]), text) is not None


def answerability(ws: Workspace, query: str, hits: Sequence[Hit], collections: Sequence[int] | None = None) -> float:
    """How likely the hits hold an answer: the best cosine similarity plus half the term coverage
    (counted over `collections`, the ids searched; None: every collection).

    Calibrated on the sample documents (samples/QUESTIONS.jsonl): every answerable question
    scored >= 0.68, most unanswerable ones < 0.55; Settings.min_relevance defaults to 0.62.
    """
    if not hits:
        return 0.0
    return max(relevance(h) for h in hits) + 0.5 * term_coverage(ws, query, hits, collections=collections)


_WORDS = re.compile(r"[A-Za-z][\w+#.-]*[\w+#]|[A-Za-z]")


def names(question: str) -> list[str]:
    """The names a question asks about: its words written with a capital letter anywhere but at the
    start (Gerrit, PyPI, macOS, DataFrame, EC2), each once, lower-cased. A question about another
    product names it, and a manual that does not cover the product rarely holds its name near the
    words the question shares with it ("memory pool", "pull request")."""
    words = _WORDS.findall(question)
    out = [w.rstrip(".").lower() for i, w in enumerate(words)
           if i > 0 and w != "I" and any(c.isupper() for c in w)]
    return list(dict.fromkeys(out))


def missing_names(question: str, hits: Sequence[Hit]) -> int:
    """How many of the question's names (see `names`) no hit's text or heading holds. A count, not
    a share: "Amazon SES" is no less absent for the "Postfix" beside it."""
    text = folding.searchable(folding.plain(" ".join(h.text.lower() + " " + " ".join(h.heading).lower() for h in hits)))
    return sum(re.search(r"(?<![\w-])" + re.escape(n[: max(4, len(n) - 2)]), text) is None
               for n in map(folding.comparable, names(question)))
