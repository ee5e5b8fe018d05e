"""Text beyond ASCII as words: folding (`fold`: invisible characters, compatibility forms,
diacritics, case) and the scripts written without spaces between words (`CJK`: Chinese, Japanese,
Korean), cut into characters and overlapping pairs (`words`, `cjk_pairs`). The lexical index's
tokens (retrieval/lexicon.py), the claim checks (retrieval/verify.py), the question's terms
(retrieval/query.py) and the chunker (ingest/chunking.py) read text through these, so a word is the
same word to each of them. ASCII text never comes here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache

# Scripts written without spaces between words: Han (with 々〆〇), hiragana, katakana (with ー), Hangul
# syllables. A run of them is one unicode61 token, so no word inside a sentence could be found;
# it is cut into single characters and overlapping pairs instead (as Lucene's CJK analyzer does).
# `CJK` holds their ranges for a regex character class.
CJK = ("\u3005-\u3007\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff\u3400-\u4dbf"
       "\u4e00-\u9fff\uac00-\ud7a3\uf900-\ufaff\U00020000-\U0003134f")
CJK_CHAR = re.compile(f"[{CJK}]")
# Latin letters that no decomposition takes to a plain one, written as people type them without
# accents (as Lucene's ASCIIFoldingFilter does): "wlasne" finds "własne", "Soren" "Søren", "Aero"
# "Ærø". Lower case only: `fold` is given lower-cased text. ß needs none (case folding: ss).
PLAIN_LETTERS = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "ð": "d", "ħ": "h", "ŧ": "t", "ı": "i",
                               "ŋ": "n", "æ": "ae", "œ": "oe", "þ": "th"})


# German umlauts as German is typed without them: "Mueller" for Müller, "Groesse" for Größe. Not a
# folding (the index folds ü to u, and "ue" to "u" would make "queue" quu and "does" dos): the
# index holds such a word's typed form as a second term (`lexicon.umlaut_twins`), and `searchable`
# text holds it too. Lower case, composed (NFC) only.
UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue"})
_UMLAUT = re.compile("[äöü]")


@lru_cache(maxsize=1)
def patterns() -> tuple[re.Pattern, re.Pattern, re.Pattern, re.Pattern]:
    """(what `fold` drops, what it strips after decomposing, a word of folded text, a word of text
    without CJK), built once from
    the Unicode tables (30 ms): format characters (soft hyphen, zero-width and bidi marks, tags) and
    variation selectors carry no letter and must not cut a word; combining marks go as the diacritics
    `stem` drops (kana voicing marks stay: デ is not テ); marks that are letters' parts (Devanagari's
    vowel signs) stay inside their word."""
    drop, marks, inner = [], [], []
    for c in (*range(0x80, 0x20000), *range(0xE0000, 0xE0200)):
        ch = chr(c)
        cat = unicodedata.category(ch)
        if cat == "Cf" or 0xFE00 <= c <= 0xFE0F or 0xE0100 <= c <= 0xE01EF or c in (0x034F, 0x180B, 0x180C, 0x180D):
            drop.append(ch)
        elif cat[0] == "M":
            (marks if unicodedata.combining(ch) and c not in (0x3099, 0x309A) else inner).append(ch)

    def cls(chars: list[str]) -> str:  # as ranges: a class of a thousand single characters is slow to match
        runs: list[list[int]] = []
        for c in map(ord, chars):
            if runs and c == runs[-1][1] + 1:
                runs[-1][1] = c
            else:
                runs.append([c, c])
        return "[" + "".join(re.escape(chr(a)) + (f"-{re.escape(chr(b))}" if b > a else "") for a, b in runs) + "]"

    word = re.compile(rf"([{CJK}]+)|(?:[^\W_{CJK}]|{cls(inner)})+")
    return re.compile(cls(drop)), re.compile(cls(marks)), word, re.compile(rf"(?:[^\W_]|{cls(inner)})+")


def plain(text: str) -> str:
    """Text as a typed question's words and numbers are looked for in it: compatibility forms made
    plain (NFKC: fullwidth ＲＯＵＴＥＲ is ROUTER, ２０ is 20, ﬁ is fi, decomposed accents composed);
    ASCII as it is. Lighter than `fold` (no case, no diacritics dropped)."""
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


def fold(low: str, quick: bool = True) -> str:
    """A lower-cased text beyond ASCII as the tokens are cut from it: format characters dropped (a soft
    hyphen or zero-width space inside a word joins it again), compatibility forms made plain (ＸＲ５００,
    the ligature ﬁ), diacritics removed whether written precomposed (NFC) or decomposed (NFD), case
    folded (ß: ss), letters without a decomposition made plain (`PLAIN_LETTERS`: ł, ø, æ). `quick`:
    text with nothing to drop, already NFKC and without combining marks is only case folded, its
    precomposed letters (é, ł) left to `stem`, which folds each word in full (ten times faster on a
    page of French, the same terms)."""
    drop, marks = patterns()[:2]
    if quick and not drop.search(low) and not marks.search(low) and unicodedata.is_normalized("NFKC", low):
        return low.casefold()
    text = unicodedata.normalize("NFKD", drop.sub("", low))
    return unicodedata.normalize("NFC", marks.sub("", text)).casefold().translate(PLAIN_LETTERS)


@lru_cache(maxsize=128)
def comparable(low: str) -> str:
    """A lower-cased text as a word is looked for in it outside the index (answerability's coverage
    and names, the coverage reranker): ASCII as it is; beyond ASCII folded in full, as `lexicon.stem`
    folds a word, so "muller" is in "Müller" and "soren" in "Søren" wherever search finds them.
    Remembered: the gates look for each of a question's terms in the same passages (a page of
    text beyond ASCII takes about 1 ms a kilobyte to fold)."""
    return low if low.isascii() else fold(low, quick=False)


def typed(low: str) -> str | None:
    """A lower-cased text with its German umlauts written as typed without them (`UMLAUTS`: "müller"
    -> "mueller"), composed first (a decomposed ü is one too); None when it holds none."""
    if low.isascii():
        return None
    low = unicodedata.normalize("NFC", low)
    return low.translate(UMLAUTS) if _UMLAUT.search(low) else None


def searchable(low: str) -> str:
    """A lower-cased text as `comparable` makes it, followed on a line of its own by the same text as
    `typed` writes it when it holds umlauts: a term made `comparable` is found in it written either
    way ("muller" or "mueller" in "Müller"), as the lexical index finds it."""
    also = typed(low)
    return comparable(low) if also is None else comparable(low) + "\n" + comparable(also)


def words(text: str, query: bool = False) -> Iterator[tuple[int, int, str, bool]]:
    """(start, end, word, cjk) of the lower-cased folded `text`: unicode61's runs of letters and digits,
    except that a run of CJK characters (see `CJK`) is a run of its own, given as its characters and
    their overlapping pairs (`query`: the pairs alone, or the one character of a run of one), spans in
    `text`."""
    word = patterns()[2]
    for m in word.finditer(text):
        if m.group(1) is None:
            yield m.start(), m.end(), m.group(), False
            continue
        a, run = m.start(), m.group()
        if not query or len(run) == 1:
            for i, ch in enumerate(run):
                yield a + i, a + i + 1, ch, True
        for i in range(len(run) - 1):
            yield a + i, a + i + 2, run[i:i + 2], True


def cjk_pairs(word: str) -> list[str]:
    """A lower-cased word as a query's terms: itself, or where it holds CJK characters its other
    letters' runs and the CJK runs' bigrams (a lone character alone), unfolded: "設定ファイルの場所"
    -> 設定, 定フ, ..., 場所; "confに置く" -> conf, に置, 置く."""
    if word.isascii() or not CJK_CHAR.search(word):
        return [word]
    return [w for _, _, w, _ in words(word, query=True)]


def is_cjk(term: str) -> bool:
    """Whether a term starts with a CJK character (then it is a character or a bigram, not a word)."""
    return CJK_CHAR.match(term) is not None


def cjk_count(text: str) -> int:
    """How many CJK characters `text` holds (0 for ASCII, at once)."""
    return 0 if text.isascii() else len(CJK_CHAR.findall(text))
