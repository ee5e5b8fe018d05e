"""Claim-level verification: a generated sentence counts as supported only if what it asserts is in
the passages it cites (or in the question).

Embedding similarity and word overlap let through sentences whose topic matches a passage but whose
facts do not (an invented command, a swapped number, "yes" where the passage says no). So each
sentence is reduced to the things it asserts, and each must be found in its cited passages:

    identifiers   anything code-like: `backticked` or "quoted" text, --flags, snake_case, dotted.names,
                  calls(), paths/like/this, CamelCase, ALLCAPS
    numbers       with the unit that follows them ("20 weeks" is not supported by "20 days"), in digits
                  or words ("thirty days" supports "30 days")
    rare words    names and other words that are rare in English (wordfreq's Zipf scale), by stem;
                  in Chinese and Japanese (no spaces, no Zipf scale here) every character pair
    code blocks   must match a passage verbatim apart from whitespace
    polarity      a negated claim needs a negated passage sentence about the same thing, and the other
                  way round

and the claim's content words must mostly be in the cited passages (`min_overlap`). A sentence that
makes claims without citing anything is unsupported. The thresholds are calibrated on sentences
generated from the documents themselves (bench/calibrate_verify.py), never on evaluation questions.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from archivist.retrieval.folding import CJK, CJK_CHAR, cjk_pairs, plain

RARE_ZIPF = 3.0  # a word rarer than this in English (Zipf scale; "rebase" 1.8, "launch" 4.7) must be in the passage
MIN_OVERLAP = 0.5  # share of a claim's content words its cited passages must hold (bench/calibrate_verify.py)

CITE = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
_QUOTED = re.compile(r"`([^`\n]+)`|\"([^\"\n]{2,80})\"|“([^”\n]{2,80})”")
_IDENT = re.compile(
    r"(?<![\w-])(?:--?[A-Za-z][\w-]*(?:=\S+)?"          # --flag, -x, --opt=value
    r"|[A-Za-z_][\w-]*(?:(?:\.|::|->)[A-Za-z_]\w*)+\(?\)?"  # dotted.name, mod::fn, obj->f
    r"|[A-Za-z_]\w*\(\)?"                               # call() or call(
    r"|~?/?(?:[\w.-]+/)+[\w.-]*"                          # paths/like/this
    r"|[A-Za-z]*[a-z][A-Z]\w*"                            # camelCase, CamelCase
    r"|[A-Za-z]+_\w+"                                     # snake_case
    r"|[A-Za-z]+-\d[\w.-]*"                              # HR-17, RFC-2616, utf-8
    r"|[A-Z]{2,}[A-Z0-9_]*)"                              # ALLCAPS
)
# (a number may follow a Chinese or Japanese character directly: "年間20日", "端口是8080")
_NUMBER = re.compile(rf"(?<![^\W{CJK}]|[.-])(\d+(?:[.,:]\d+)*)(?:[\s-]*(?:(?:per|a|an|each|every)\s+)?(%|[A-Za-z]+))?")
# Words that make a number's unit: "20 weeks" is not supported by "20 days". Other words after a
# number ("17 gives") are not part of it; they are checked as content words.
UNITS = frozenset("""% percent cent ms s sec secs second seconds min mins minute minutes h hr hrs hour hours
day days week weeks month months year years b byte bytes kb kib mb mib gb gib tb tib k m bit bits kbit mbit gbit
hz khz mhz ghz px pt dpi em cm mm km m kg g mg l ml eur usd gbp chf jpy euro euros dollar dollars pound pounds
times x page pages line lines char chars character characters word words token tokens row rows column columns
file files item items step steps epoch epochs user users employee employees people core cores thread threads
retries attempts request requests connection connections gbps mbps kbps v w kw kwh""".split())
# Numbers written as words, one to a hundred: "thirty days" is "30 days", "twenty-five" is 25, "a dozen" 12,
# "the first" is "the 1st". "second" alone stays out (a unit as well: "30 second"); so does "one" without a
# unit after it ("no one", "one of them"), which states no amount.
_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen nineteen".split()
_FIRSTS = "zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth " \
          "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_TENTHS = "twentieth thirtieth fortieth fiftieth sixtieth seventieth eightieth ninetieth".split()
WORD_NUMBERS = {**dict(zip(_ONES, range(20))), **dict(zip(_FIRSTS, range(20))), **dict(zip(_TENS, range(20, 100, 10))),
                **dict(zip(_TENTHS, range(20, 100, 10))), "hundred": 100, "hundredth": 100, "dozen": 12}
_DIGIT_WORDS = "|".join(_ONES[1:10] + _FIRSTS[1:10])
_LONE_WORDS = "|".join(sorted(set(WORD_NUMBERS) - {"second"}, key=len, reverse=True))
_FIRST_LETTERS = "".join(sorted({w[0] for w in WORD_NUMBERS} | {"a"}))  # a look-ahead that skips most words fast
# "a dozen", "two hundred", "twenty-five hundred": a count of hundreds or dozens, read whole ("two" alone was 2)
_TIMES = rf"(?:a|an|(?:{'|'.join(_TENS)})(?:[\s-](?:{'|'.join(_ONES[1:10])}))?|{'|'.join(_ONES[1:])})\s+(?:hundredth|hundred|dozen)"
_NUMBER_WORD = re.compile(rf"(?<![\w-])(?=[{_FIRST_LETTERS}])({_TIMES}|(?:{'|'.join(_TENS)})[\s-](?:{_DIGIT_WORDS})"
                          rf"|{_LONE_WORDS})(?![\w-])(?:[\s-]*(?:(?:per|a|an|each|every)\s+)?(%|[A-Za-z]+))?", re.I)
# A word: letters (of any script: "beträgt" is one word, not "betr" and "gt"), with inner apostrophes
# and hyphens; on ASCII text exactly [A-Za-z][A-Za-z'-]*[A-Za-z]. A run of Chinese or Japanese is cut
# into bigrams where words are counted (`_words`), as the lexical index cuts it.
_LETTER = r"[^\W\d_]"
_WORD = re.compile(rf"{_LETTER}(?:{_LETTER}|['-])*{_LETTER}|{_LETTER}")
_SPLIT = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])\s*|\n+")  # sentences and lines (CJK full stops need no space)
_NEGATION = frozenset("not no never cannot can't don't doesn't isn't aren't won't wasn't weren't shouldn't "
                      "mustn't without none neither nor nothing nobody unable".split())
# Words that carry no claim of their own (articles, auxiliaries, pronouns, connectives).
FUNCTION_WORDS = frozenset("""a an and are as at be been being but by can could do does did for from had has have how i
if in into is it its me my of on or our so that the their them then there these they this to was we were what when
where which who whom why will with would you your about after all also any before between both each few more most
other over same should some such than too under until very may might must shall here just only use used using
yes one two""".split())


@dataclass
class ClaimCheck:
    """The verdict on one sentence of a generated answer."""
    start: int  # span in the answer text
    end: int
    text: str  # the sentence without its citation marks
    cites: list[int]
    supported: bool
    reason: str = ""  # why not: "no citation", "not in the cited passage: X", "polarity", "code differs", "overlap"
    missing: list[str] = field(default_factory=list)
    overlap: float = 0.0
    claim: bool = True  # False: asserts nothing beyond the question (e.g. "Here is how:")


@lru_cache(maxsize=1)
def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("porter")


def _stem(word: str) -> str:
    return _stemmer().stemWord(word.lower().strip("'-"))


@lru_cache(maxsize=65536)
def zipf(word: str) -> float:
    """How common `word` is in English, on the Zipf scale (0 unknown, 7 "the")."""
    from wordfreq import zipf_frequency

    return zipf_frequency(word, "en")


def _nfc(text: str) -> str:
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def _words(text: str) -> list[str]:
    """The words of `text` (`_WORD`, accents composed), a CJK run as its bigrams (folding.cjk_pairs)."""
    words = _WORD.findall(_nfc(text))
    return words if text.isascii() else [p for w in words for p in cjk_pairs(w)]


def _norm(text: str) -> str:
    """Lower case, one space for any run of white space, typographic quotes and dashes made plain,
    accents composed (NFC)."""
    text = _nfc(text)
    text = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    text = text.replace("—", "-").replace("–", "-")
    return " ".join(text.lower().split())


def canonical_number(s: str) -> str:
    """'1,500' and '1500' are one number; '1.5' stays as written; '08' is '8'; fullwidth '２０' is '20'."""
    s = plain(s)
    s = s.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+", s) else s
    return s.lstrip("0") or "0" if s.isdigit() else s


def word_number(words: str) -> str | None:
    """The digits of a number written as words ("thirty", "twenty-five", "a dozen", "first"), or None."""
    words = words.lower()
    if words in WORD_NUMBERS or not re.search(r"[\s-]", words):  # one word: most are none (a fast path)
        return str(WORD_NUMBERS[words]) if words in WORD_NUMBERS and words != "second" else None
    parts = re.split(r"[\s-]+", words)
    if not all(p in WORD_NUMBERS or p in ("a", "an") for p in parts) or parts[-1] in ("a", "an"):
        return None
    if parts[-1] in ("hundred", "hundredth", "dozen"):  # "two hundred" is 200, "a dozen" 12
        return str((sum(WORD_NUMBERS[p] for p in parts[:-1] if p not in ("a", "an")) or 1) * WORD_NUMBERS[parts[-1]])
    return str(sum(WORD_NUMBERS[p] for p in parts))


def spelled_numbers(text: str) -> list[tuple[str, str]]:
    """(digits, unit or "") of each number `text` writes as words (`_NUMBER_WORD`), as `_NUMBER` reads
    "30 days": an ordinal has no unit ("first day", as "1st day"), a lone "one" is no number."""
    out = []
    for m in _NUMBER_WORD.finditer(text):
        words, unit = m.group(1).lower(), m.group(2) if m.group(2) and m.group(2).lower() in UNITS else ""
        if words == "one" and not unit:
            continue
        ordinal = words.endswith(("st", "nd", "rd", "th"))
        out.append((word_number(words), "" if ordinal else unit))
    return out


@dataclass
class Evidence:
    """What a passage (or several, or the question) offers to check claims against, computed once."""
    text: str  # normalized
    stems: frozenset[str]
    numbers: dict[str, set[str]]  # number -> stems of the words right after it ("" for none)
    sentences: list[tuple[frozenset[str], bool]]  # (content stems, negated) per sentence
    squashed: str  # all white space removed, for code blocks

    @classmethod
    def of(cls, *texts: str) -> "Evidence":
        joined = "\n".join(texts)
        norm = _norm(joined)
        words = _words(joined)
        numbers: dict[str, set[str]] = {}
        for m in _NUMBER.finditer(joined):
            unit = m.group(2) if m.group(2) and m.group(2).lower() in UNITS else ""
            numbers.setdefault(canonical_number(m.group(1)), set()).add(_stem(unit) if unit else "")
        for digits, unit in spelled_numbers(joined):
            numbers.setdefault(digits, set()).add(_stem(unit) if unit else "")
        sents = []
        for s in _SPLIT.split(joined):
            ws = [w.lower() for w in _words(s)]
            sents.append((frozenset(word_number(w) or _stem(w) for w in ws if w not in FUNCTION_WORDS and w not in _NEGATION),
                          _negated(ws)))
        return cls(text=norm, stems=frozenset(_stem(w) for w in words) | numbers.keys(), numbers=numbers, sentences=sents,
                   squashed=re.sub(r"\s+", "", joined.lower()))


def _negated(words: Sequence[str]) -> bool:
    return any(w in _NEGATION or w.endswith("n't") for w in words)


def asserted_terms(sentence: str) -> list[tuple[str, str]]:
    """The things a sentence asserts that must be found in its evidence, as (kind, term):
    kind is "identifier", "number" or "rare". Citation marks are ignored."""
    s = _nfc(replace_marks(sentence, lambda m: " "))
    out: list[tuple[str, str]] = []
    for m in _QUOTED.finditer(s):
        out.append(("identifier", next(g for g in m.groups() if g)))
    for m in _IDENT.finditer(s):
        tok = m.group(0).rstrip(".,;:)")
        if len(tok.strip("-/.~")) >= 2 and not _plain_word(tok):
            out.append(("identifier", tok))
    for m in _NUMBER.finditer(s):
        unit = m.group(2) if m.group(2) and m.group(2).lower() in UNITS else ""
        out.append(("number", f"{m.group(1)} {unit}".strip()))
    first = True
    for m in _WORD.finditer(s):
        w, lw = m.group(0), m.group(0).lower()
        if not w.isascii() and CJK_CHAR.search(w):
            # Chinese and Japanese have no Zipf scale here, and no spaces: every bigram (a lone character
            # alone) must be in the evidence, as a rare word must: "端口是九九九九" is not "端口是八零八零"
            out += [("rare", p) for p in cjk_pairs(lw) if CJK_CHAR.match(p)]
            first = False
            continue
        if lw not in FUNCTION_WORDS and lw not in _NEGATION and len(lw) >= 2:
            name = w[0].isupper() and not w.isupper() and not first  # a capitalized word inside a sentence
            if (len(lw) >= 3 and zipf(lw) < RARE_ZIPF) or name:
                out.append(("rare", w))
        first = s[m.end():m.end() + 2].lstrip(" ")[:1] in (".", "!", "?")
    return list(dict.fromkeys(out))


def _plain_word(tok: str) -> bool:
    """A token the identifier pattern caught that is an ordinary word (a capitalized first word,
    "e.g", an acronym that is common English such as "OK")."""
    if tok.isupper() and tok.isalpha():
        return len(tok) <= 2 or zipf(tok.lower()) >= 4.5
    return tok.lower() in ("e.g", "i.e", "etc", "vs")


def term_found(kind: str, term: str, ev: Evidence) -> bool:
    """Whether the evidence holds `term`: identifiers as text (case-insensitive, white space
    normalized), numbers with the unit that follows them, rare words by stem."""
    if kind == "identifier":
        t = _norm(term).strip("()")
        return bool(t) and t in ev.text
    if kind == "number":
        m = _NUMBER.match(term)
        units = ev.numbers.get(canonical_number(m.group(1)))
        if units is None:
            return False
        unit = m.group(2)
        return not unit or _stem(unit) in units
    return _stem(term) in ev.stems


def content_stems(sentence: str) -> list[str]:
    """The stems of a sentence's content words; a number in words is its digits ("thirty" is "30"), which
    a passage's "30" or "thirty" holds (`Evidence.stems`)."""
    return [word_number(w) or _stem(w) for w in (x.lower() for x in _words(replace_marks(sentence, lambda m: " ")))
            if w not in FUNCTION_WORDS and w not in _NEGATION]


def check_sentence(sentence: str, cited: Sequence[str], question: str = "", *,
                   min_overlap: float = MIN_OVERLAP) -> tuple[bool, str, list[str], float]:
    """(supported, reason, missing terms, overlap) of one claim against the texts it cites.

    Terms may also come from the question (restating it is no invention); polarity and overlap are
    judged against the passages alone."""
    if not cited:
        return False, "no citation", [], 0.0
    ev = Evidence.of(*cited, question)
    # and a number in words where it states an amount ("forty days"); "one", "the first", "two steps" stay
    # content words. Not in asserted_terms, whose terms the key-answer models were fitted on.
    terms = asserted_terms(sentence) + [("number", f"{digits} {unit}") for digits, unit in spelled_numbers(sentence)
                                        if unit and digits != "1"]
    missing = [t for k, t in terms if not term_found(k, t, ev)]
    stems = content_stems(sentence)
    passages = Evidence.of(*cited)
    overlap = sum(s in ev.stems for s in stems) / len(stems) if stems else 1.0
    if missing:
        return False, "not in the cited passage: " + ", ".join(missing[:5]), missing, overlap
    q = Evidence.of(question)
    own = [(k, t) for k, t in terms if not term_found(k, t, q)]
    if len(own) >= 2 and not _together(own, cited):
        return False, "not together in the cited passage: " + ", ".join(t for _, t in own[:5]), [], overlap
    if overlap < min_overlap:
        return False, "overlap", [], overlap
    if stems and not _polarity_agrees(set(stems), _negated([w.lower() for w in _WORD.findall(sentence)]), passages):
        return False, "polarity", [], overlap
    return True, "", [], overlap


TOGETHER = 3  # the terms a claim asserts must stand within this many consecutive lines or sentences


def _together(terms: Sequence[tuple[str, str]], cited: Sequence[str]) -> bool:
    """Whether some window of TOGETHER consecutive sentences (a table row is a line) of one cited
    passage holds all `terms`: "Heron's APAC revenue is 880" must not be made of two rows."""
    for text in cited:
        units = [u for u in _SPLIT.split(text) if u.strip()]
        for i in range(max(1, len(units) - TOGETHER + 1)):
            window = Evidence.of("\n".join(units[i:i + TOGETHER]))
            if all(term_found(k, t, window) for k, t in terms):
                return True
    return False


def _polarity_agrees(stems: set[str], negated: bool, ev: Evidence) -> bool:
    """A claim agrees in polarity when the passage sentence that shares most of its content words
    is negated exactly when the claim is (ties: any of them will do)."""
    best, pols = 0, set()
    for sent_stems, neg in ev.sentences:
        n = len(stems & sent_stems)
        if n > best:
            best, pols = n, {neg}
        elif n == best and n:
            pols.add(neg)
    return best == 0 or negated in pols


def code_blocks_match(answer: str, passages: Sequence[str]) -> list[str]:
    """The fenced code blocks of `answer` that no passage holds verbatim (white space aside)."""
    squashed = [re.sub(r"\s+", "", p.lower()) for p in passages]
    bad = []
    for m in _FENCE.finditer(answer):
        code = re.sub(r"\s+", "", m.group(1).lower())
        if code and not any(code in p for p in squashed):
            bad.append(m.group(1).strip())
    return bad


_YES_NO = re.compile(r"^\W*(is|are|am|was|were|can|could|may|might|must|shall|should|will|would|do|does|did|"
                     r"has|have|had|isn't|aren't|can't|doesn't|don't)\b", re.I)


_EXISTS = re.compile(r"^\W*(is|are) there\b", re.I)


def asks_yes_no(question: str) -> bool:
    """A question that yes or no answers ("Does Valgrind run on Windows?"), not one that asks for a
    thing in yes/no form ("Is there a command that ...?")."""
    return bool(_YES_NO.match(question)) and not _EXISTS.match(question)


def makes_claim(sentence: str, question: str) -> bool:
    """Whether a sentence says anything beyond the question: a term the question lacks, or a
    content word the question does not have. "Here is how:" and restatements make none, except
    after a yes/no question, where restating it as a statement answers it."""
    q = Evidence.of(question)
    if _YES_NO.match(question) and (content_stems(sentence) or re.search(r"\b(yes|no)\b", sentence, re.I)):
        return True
    if any(not term_found(k, t, q) for k, t in asserted_terms(sentence)):
        return True
    return any(s not in q.stems for s in content_stems(sentence))


# a sentence ends at . ! ? before a capital (or a digit, quote, bracket), at Chinese and Japanese full
# stops (no space after them, and a closing bracket stays with its sentence), and at a line break.
# The capitals include Europe's others (Ü, É, Ż, Ж) and its openers ¿ ¡ « „, or a German, Polish or
# Russian passage was one sentence; “ stays out, as English text splits as it always did.
_OPENERS = "".join(c for c in map(chr, range(0xC0, 0x530)) if c.isupper()) + "¿¡«„"
_SENT = re.compile(rf"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[`{_OPENERS}])|(?<=[。！？])(?![」』）”])\s*|(?<=[。！？][」』）”])\s*|\n+")


def citation_marks(text: str) -> list[re.Match]:
    """The `CITE` matches of `text` that are citation marks. A bracket glued to code is an index and
    left out: after a dotted or snake_case name or a single letter (`sys.argv[1]`, `_v[5]`, `a[2]`),
    after a call or another index (`f(x)[0]`, `x[0][1]`), and `[0]` anywhere, which no mark is. A
    mark glued to a word or number ("per year[1].", "port 8080[2]"), after a space or punctuation
    ("weeks.[2]"), a CJK character ("设立[2]") or another mark ("[1][3]") is a mark."""
    out, last = [], -1  # last: where the previous mark ended
    for m in CITE.finditer(text):
        before = text[m.start() - 1] if m.start() else " "
        if before == "]":
            code = m.start() != last
        elif before == ")":
            code = True
        elif before.isascii() and (before.isalnum() or before == "_"):
            word = re.search(r"[\w.]*$", text[:m.start()]).group(0).strip(".")
            code = m.group(1) == "0" or "." in word or "_" in word or (len(word) == 1 and word.isalpha())
        else:
            code = False
        if not code:
            out.append(m)
            last = m.end()
    return out


def replace_marks(text: str, by=lambda m: "") -> str:
    """`text` with each citation mark (`citation_marks`) replaced by `by(match)`; a mark replaced by ""
    goes with the white space before it. Code indexes stay as written: "sys.argv[2] [1]" without its
    marks is "sys.argv[2]", where CITE.sub made it "sys.argv", a claim any "sys.argv[1]" passage held."""
    out, pos = [], 0
    for m in citation_marks(text):
        start, new = m.start(), by(m)
        while not new and start > pos and text[start - 1].isspace():
            start -= 1
        out += [text[pos:start], new]
        pos = m.end()
    return "".join(out) + text[pos:]


def parse_citations(text: str) -> list[tuple[int, int, int]]:
    """(n, start, end) for every citation mark in the text (`citation_marks`); [1, 3] yields 1 and 3."""
    out = []
    for m in citation_marks(text):
        for num in re.split(r"\s*[,;]\s*", m.group(1)):
            out.append((int(num), m.start(), m.end()))
    return out


_CJK_STOPS = "。！？」』）”"
_LEAD_CITE = re.compile(r"\s*(?:\[\d+(?:\s*[,;]\s*\d+)*\]\s*)+")


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) spans of the sentences of `text`; a citation after the full stop ("fact. [1]")
    belongs to the sentence before it."""
    spans, pos = [], 0
    for m in _SENT.finditer(text):
        if m.start() > pos:
            spans.append((pos, m.start()))
        pos = m.end()
    if pos < len(text):
        spans.append((pos, len(text)))
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and not replace_marks(text[a:b]).strip(" .;,"):
            merged[-1] = (merged[-1][0], b)
            continue
        lead = _LEAD_CITE.match(text, a, b)
        if merged and lead and text[merged[-1][1] - 1] in _CJK_STOPS:  # "事实。[1]下一句": [1] ends the first
            merged[-1], a = (merged[-1][0], lead.end()), lead.end()
        merged.append((a, b))
    return merged


def verify_answer(answer: str, passages: Sequence[str], question: str = "", *,
                  min_overlap: float = MIN_OVERLAP) -> list[ClaimCheck]:
    """Check every sentence of a generated answer against the passages it cites (1-based [n] into
    `passages`). Fenced code blocks are checked whole, verbatim. Returns one ClaimCheck a sentence,
    in order; sentences that assert nothing beyond the question come back with claim=False."""
    out: list[ClaimCheck] = []
    code_spans = [(m.start(), m.end()) for m in _FENCE.finditer(answer)]
    bad_code = set(code_blocks_match(answer, passages))
    for a, b in code_spans:
        block = _FENCE.match(answer, a).group(1).strip()
        ok = block not in bad_code
        out.append(ClaimCheck(a, b, block, [], ok, "" if ok else "code differs from every passage"))
    for a, b in sentences(answer):
        if any(a < ce and b > cs for cs, ce in code_spans):
            continue
        raw = answer[a:b]
        text = " ".join(replace_marks(raw, lambda m: " ").split())
        cites = sorted({n for n, _, _ in parse_citations(raw) if 1 <= n <= len(passages)})
        if not makes_claim(text, question):
            out.append(ClaimCheck(a, b, text, cites, True, claim=False))
            continue
        ok, reason, missing, overlap = check_sentence(text, [passages[n - 1] for n in cites], question,
                                                      min_overlap=min_overlap)
        out.append(ClaimCheck(a, b, text, cites, ok, reason, missing, round(overlap, 3)))
    out.sort(key=lambda c: c.start)
    return out
