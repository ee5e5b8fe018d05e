"""What the searches read from a query's text: its words, the stopwords left out, the safe FTS5
query, the content terms (marked on hits, weighed by answerability)."""

from __future__ import annotations

import re

STOPWORDS = frozenset("""a an and are as at be been but by can could do does did for from had has have how i if in into is it
its me my no not of on or our so that the their them then there these they this to was we were what when where which
who whom why will with would you your about after all also any before between both each few more most other over same
should some such than too under until very""".split())

WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str | None:
    """Turn free user text into a safe FTS5 query: terms OR-ed, each quoted, so quotes,
    operators (AND, NEAR, *, :, ^, parentheses) and odd characters can never raise.
    A term with inner punctuation (NW-4410, HR-17, v2.1) stays a quoted phrase."""
    terms = []
    for piece in text.split():
        piece = piece.strip(".,;:!?()[]{}<>\"'`*^+~=|/\\")
        words = WORD.findall(piece)
        if not words:
            continue
        if len(words) == 1 and words[0].lower() in STOPWORDS:
            continue
        phrase = " ".join(words)
        terms.append('"' + phrase.replace('"', '""') + '"')
    terms = list(dict.fromkeys(terms))
    return " OR ".join(terms) if terms else None


def query_terms(text: str) -> list[str]:
    """The query's content words, lower-cased, each once, in order (stopwords left out)."""
    return list(dict.fromkeys(w.lower() for w in WORD.findall(text) if w.lower() not in STOPWORDS))
