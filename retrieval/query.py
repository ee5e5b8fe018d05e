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


# A CJK bigram that is grammar, not a word a passage would share: Japanese kana alone (particles and
# endings: "どこ", "ます", "すか"), a pair with a Chinese function character (的 了 吗 什么 怎么 这 那 ...),
# or 请问 ("may I ask"); 请 and 问 alone are parts of words (申请 apply, 请求 request, 访问 access, 问题 problem).
# Left out of the question's terms as STOPWORDS are; the lexical search itself keeps every bigram.
_CJK_FUNCTION = re.compile(r"[\u3041-\u309f]+|.?[的了吗呢吧么哪怎什这那]+.?|请问")
# Words that hold one of those characters and still name something: kept.
_CJK_CONTENT = frozenset({"了解", "了结", "明了", "目的", "标的", "的士", "吗啡", "酒吧", "网吧", "呢绒", "刹那"})


def query_terms(text: str) -> list[str]:
    """The query's content words, lower-cased, each once, in order (stopwords left out). Chinese and
    Japanese, written without spaces, give their bigrams (`folding.cjk_pairs`), as the lexical index
    holds them: a whole sentence is no word any passage holds."""
    from archivist.retrieval.folding import cjk_pairs, plain

    words = (t for w in WORD.findall(plain(text)) for t in cjk_pairs(w.lower()))
    return list(dict.fromkeys(w for w in words if w not in STOPWORDS
                              and (w in _CJK_CONTENT or not _CJK_FUNCTION.fullmatch(w))))
