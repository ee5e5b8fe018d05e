"""Key answers: pick the passage sentence that holds what the question asks for, copy its key span,
and say how likely it is right — with two small logistic models instead of hand-set weights.

The questions people ask of a manual want a command, an option, a function, a file or a number,
and the passages usually hold it in one sentence, a definition or a heading (retrieval/quote.py
lists those candidates). Three steps, all on text copied from the passages, so nothing can be
invented:

    rank        every candidate gets P(it holds the answer) from features of the candidate
                (similarity to the question, the question's words it holds, weighted by how rare
                they are in the corpus, its heading, whether it has what the question type asks
                for, a code-like term the question does not name, its passage's rank)
    span        the key span of the best candidate: the code-like term, path or number in it that
                the question does not already name and that fits the question type
    trust       two question-level probabilities: that the best candidate is right (`right`), and
                that the documents answer the question at all (`answerable`: the question's rare
                words and names found in the passages, the retrieval scores, the ranker's output)
    read        in auto mode only (the chat model is loaded to draft the answer anyway): the chat
                model reads the ranker's best READ_TOP candidates — how much more it expects the
                question after each one than after nothing (`reading`) — which reorders them and
                feeds the *_READ_* models and thresholds (Settings.key_answered_read,
                key_not_found_read). 1.3-1.7 s a question on a 2-core CPU, about 2% of an auto
                answer (bench/RESULTS.md, finding 32); extractive mode does without it

The coefficients below were fitted by bench/tune_quote.py --fit on the TUNING splits of the public
sets (bench/evalsets), plus generated unanswerable questions (each corpus's tuning questions asked
of the other corpora); the held-out splits played no part. `answer.settle` shows the quote as
*answered* when `right` reaches Settings.key_answered, and says *not found* when `answerable` is
under Settings.key_not_found.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from archivist.records import Hit
from archivist.retrieval import verify
from archivist.retrieval.answerability import missing_names, present
from archivist.retrieval.folding import plain
from archivist.retrieval.quote import DEFAULT as QUOTE_WEIGHTS
from archivist.retrieval.quote import JOIN, _has_kind, _is_heading, candidates, question_kind, quoted, words

# -- the fitted models (bench/tune_quote.py --fit; feature order as in CANDIDATE_FEATURES / QUESTION_FEATURES)

CANDIDATE_FEATURES = ("cosine", "cosine_gap", "overlap", "overlap_gap", "rare_overlap", "heading", "kind",
                      "new_term", "is_heading", "is_definition", "rank", "passage_cosine", "words")
# fitted 2026-12-06 05:57 UTC on 277 answerable + 33 unanswerable tuning questions and half of the generated
# unanswerable ones (13,231 candidates, 1,378 holding the gold; retrieval as of finding 19's fusion)
CANDIDATE_COEF = np.array([2.6092, 0.2711, -1.1383, 1.5427, 1.3645, -0.6375, 0.2318, 0.9052, -0.7298, 0.1324,
                           -0.2624, 1.3534, 0.0923])
CANDIDATE_BIAS = -4.0812

QUESTION_FEATURES = ("top", "margin", "answerability", "best_cosine", "rare_coverage", "missing_rare",
                     "unknown_terms", "kind_found", "top_new_term", "top_overlap", "top_rank", "ask_code",
                     "ask_number", "ask_define", "top_quote", "names_missing", "names_missing_top", "top_coverage")
RIGHT_COEF = np.array([1.1103, 0.8274, 0.7819, 0.408, 0.3687, 0.5545, -0.2932, 0.0519, 0.4012, 1.2363, -0.1695,
                       -0.158, -0.0736, -1.084, 0.9098, -1.0654, -0.0084, 0.8562])
RIGHT_BIAS = -4.0613
ANSWERABLE_COEF = np.array([1.997, 0.1606, 3.8487, 3.7134, 0.561, -0.3673, -0.4075, -0.468, -0.4795, 0.784,
                            0.1427, -0.2131, -0.3194, -0.0745, 1.9777, -1.1768, -0.7545, 1.0734])
ANSWERABLE_BIAS = -5.9896

# With a reader (the chat model, in auto mode: retrieval/answer.py): the ranker's best READ_TOP
# candidates are ranked again by log P(candidate) + READ_WEIGHT * reading, and the question-level
# models below see two more features (READ_FEATURES). Fitted 2026-12-06 11:05 UTC by
# bench/tune_quote.py --read, then --fit --reader, on the same tuning rows, the ranker above
# unchanged; READ_WEIGHT: of 0-6, the one whose quote holds the gold most often (bench/RESULTS.md,
# finding 32).
READ_TOP = 5
READ_PROMPT = "Passage: {}\nQuestion answered by the passage:"
READ_BASE = "Question:"
READ_WEIGHT = 3.0
READ_FEATURES = ("read", "read_margin")
READ_HEADING = False  # read a candidate under its heading path (read_text); tried in bench/RESULTS.md finding 38
RIGHT_READ_COEF = np.array([0.6675, 0.2418, 0.805, 0.2949, 0.5114, 0.8359, -0.055, 0.2932, 1.2203, 1.1518, -0.1574,
                            -0.3824, 0.0872, -1.208, 0.9515, -1.2414, -0.1937, 1.0836, 0.0348, 0.8371])
RIGHT_READ_BIAS = -4.7843
ANSWERABLE_READ_COEF = np.array([1.9334, 0.0916, 3.495, 3.4997, 0.35, -0.2296, -0.445, -0.3432, -0.6992, 0.8209,
                                 0.0017, -0.2007, -0.3896, -0.1249, 1.9059, -1.3254, -0.7131, 0.7639, 0.7255, 0.4403])
ANSWERABLE_READ_BIAS = -5.8214


@dataclass
class TermStats:
    """How rare each of the question's content words is in the collections the question was
    searched in (always within what the user may read: `term_stats`)."""
    terms: list[tuple[str, int]] = field(default_factory=list)  # (word, document frequency in chunks)
    n: int = 1  # live chunks of those collections

    def idf(self, df: int) -> float:
        return math.log((self.n + 1) / (df + 0.5))


@dataclass
class KeyAnswer:
    """The chosen quote and how sure it is. Every text in it is copied from the passages."""
    text: str  # shown as an answer: "span — sentence [n]" (or the sentence alone when it has no span)
    quote: str  # shown as a passage, claiming nothing: "sentence [n]"
    span: str  # the key span ("--keep-index", "/var/log/dpkg.log", "20 seconds"), or ""
    picked: list[tuple[int, str]]  # (passage number, sentence)
    candidate: float  # P(the best candidate holds the answer), from the ranker
    right: float  # P(the shown quote is right), question level
    answerable: float  # P(the documents answer the question)
    features: dict[str, float] = field(default_factory=dict)  # the question-level features, for tuning and logs


def term_stats(ws, question: str, collections: Sequence[int] | None = None) -> TermStats:
    """The question's content words with their document frequency among the live chunks of
    `collections` (ids: the ones the question was searched in, `search.statistics_scope`; None:
    every collection), and how many chunks those are. Never the whole workspace's for a user who
    cannot read all of it: `unknown_terms` would tell them which words other collections hold."""
    from archivist.retrieval import lexicon, lexicon_store
    from archivist.retrieval.query import query_terms

    index = lexicon_store.current(ws)
    stats = index.statistics(collections)
    return TermStats([(t, stats.df(index, lexicon.stem(t))) for t in query_terms(question)], stats.n)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


_SECTION = re.compile(r"\d+(\.\d+)+$")  # "3.2" of "3.2 Parental leave": a section number, not an answer
_NOT_TERM = re.compile(r"[^\w./:-]+")  # what separates terms in a question ("--keep-index?" -> "--keep-index")


def _named(term: str, question: str) -> bool:
    """Whether the question already names `term` as written ("git stash" in "how does git stash ...");
    "--keep-index" is not named by "keep the index"."""
    t = " ".join(term.lower().split())
    q = " ".join(_NOT_TERM.sub(" ", question.lower()).split())
    if f" {t} " in f" {q} ":
        return True
    if t.startswith("-"):  # an option stays new unless named with its dashes: "--keep-index" vs "keep index"
        return False
    # a hyphen joins what a question may write apart or as part of a word: "UTF-8" is named by
    # "UTF 8", "URL" by "URL-safe"
    return f" {t.replace('-', ' ')} " in f" {q.replace('-', ' ')} "


def new_terms(sentence: str, question: str) -> list[tuple[str, str]]:
    """(kind, term) for the code-like terms, paths and numbers of `sentence` the question does not
    already name."""
    return [(k, t) for k, t in verify.asserted_terms(sentence)
            if k in ("identifier", "number") and not _named(t, question)]


def candidate_features(question: str, cands: Sequence[tuple[int, str, str]], passages: Sequence[Hit],
                       stats: TermStats, embedder) -> np.ndarray:
    """One row of CANDIDATE_FEATURES per candidate (passage number, text, heading path)."""
    vecs = embedder.embed([question] + [c[1] for c in cands])
    cos = vecs[1:] @ vecs[0]
    qstems = set(verify.content_stems(question))
    kind = question_kind(question)
    weights = {t: stats.idf(df) for t, df in stats.terms}
    total = sum(weights.values()) or 1.0

    def share(text: str) -> float:
        return len(qstems & set(verify.content_stems(text))) / len(qstems) if qstems else 0.0

    def rare_share(text: str) -> float:
        low = plain(text.lower())
        return sum(w for t, w in weights.items() if present(t, low)) / total

    heads = {h: share(h) for _, _, h in cands}
    overlap = np.array([share(s) for _, s, _ in cands])
    pcos = {}
    rows = []
    for i, (n, s, h) in enumerate(cands):
        if n not in pcos:
            p = passages[n - 1]
            pcos[n] = p.dense_score if p.dense_score is not None else 0.0
        rows.append([float(cos[i]), float(cos[i] - cos.max()), overlap[i], overlap[i] - overlap.max(),
                     rare_share(s), heads[h], float(_has_kind(kind, s, question)),
                     float(bool(new_terms(s, question))), float(_is_heading((n, s, h), passages)),
                     float(JOIN in s), float(n - 1), pcos[n], math.log1p(words(s))])
    return np.array(rows, dtype=float)


def question_features(question: str, passages: Sequence[Hit], stats: TermStats, probs: np.ndarray,
                      cands: Sequence[tuple[int, str, str]], answerability: float,
                      top_row: np.ndarray | None = None) -> dict[str, float]:
    """QUESTION_FEATURES: the ranker's best probability and its margin over the best candidate with
    other text, the answerability gate's score, the best passage cosine, the IDF-weighted share of
    the question's words found in the passages, the rarest missing word's IDF (scaled), how many of
    its words the corpus does not hold at all, whether the best candidate has the asked-for kind, a
    term the question does not name, how many of the question's words, its passage's rank, its
    score by retrieval/quote.py (from `top_row`, its CANDIDATE_FEATURES), and the question's type."""
    order = np.argsort(-probs, kind="stable")
    top = float(probs[order[0]]) if len(order) else 0.0
    other = next((float(probs[i]) for i in order[1:] if cands[i][1] != cands[order[0]][1]), 0.0)
    text = plain(" ".join(p.text.lower() + " " + " ".join(p.heading).lower() for p in passages))
    idf = [(t, stats.idf(df), df) for t, df in stats.terms]
    total = sum(w for _, w, _ in idf) or 1.0
    found = sum(w for t, w, _ in idf if present(t, text))
    first = plain(" ".join([passages[0].text.lower(), *(h.lower() for h in passages[0].heading)])) if passages else ""
    missing = [w for t, w, _ in idf if not present(t, text)]
    scale = stats.idf(0) or 1.0
    kind = question_kind(question)
    return {"top": top, "margin": top - other, "answerability": answerability,
            "best_cosine": max((p.dense_score or 0.0) for p in passages) if passages else 0.0,
            "rare_coverage": found / total, "missing_rare": max(missing, default=0.0) / scale,
            "unknown_terms": float(sum(df == 0 for _, _, df in idf)),
            "kind_found": float(bool(len(order)) and _has_kind(kind, cands[order[0]][1], question)),
            **({f"top_{f}": float(top_row[CANDIDATE_FEATURES.index(f)]) for f in ("new_term", "overlap", "rank")}
               if top_row is not None else {"top_new_term": 0.0, "top_overlap": 0.0, "top_rank": 0.0}),
            "ask_code": float(kind == "code"), "ask_number": float(kind in ("number", "default")),
            "ask_define": float(kind == "define"), "top_quote": _quote_score(top_row) if top_row is not None else 0.0,
            "names_missing": min(2, missing_names(question, passages)),
            "names_missing_top": min(2, missing_names(question, passages[:1])),
            "top_coverage": sum(w for t, w, _ in idf if present(t, first)) / total}


def _quote_score(row: np.ndarray) -> float:
    """retrieval/quote.py's score of a candidate, from its CANDIDATE_FEATURES (the same parts)."""
    f = dict(zip(CANDIDATE_FEATURES, row))
    w = QUOTE_WEIGHTS
    return float(w.cosine * f["cosine"] + w.overlap * f["overlap"] + w.heading * f["heading"] + w.kind * f["kind"]
                 - w.rank * f["rank"])


_MONTHS = ("january|february|march|april|may|june|july|august|september|october|november|december|"
           "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec")
_MONTH_WORDS = frozenset(_MONTHS.split("|"))
_DAY = r"(?:mon|tues|wednes|thurs|fri|satur|sun)days?"
_DATE = re.compile(rf"\b\d{{1,2}}\.?\s+(?:{_MONTHS})\.?(?:,?\s+\d{{4}})?\b|\b(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?"
                   rf"(?:,?\s+\d{{4}})?\b|\b(?:(?:every|each|on)\s+)?{_DAY}(?:\s+(?:to|-|–)\s+{_DAY})?"
                   rf"(?:\s+at\s+\d{{1,2}}[:.]\d{{2}})?\b", re.I)  # "1 September 2025", "every Tuesday at 07:30"
# An amount as written: a currency before it (EUR 1,500; $5), a range (10:00 to 15:00), a unit after
# it (20 weeks, 0.30 per km): the unit is kept only when verify knows it as one.
_CURRENCY = frozenset("eur usd gbp chf jpy cad aud sek nok dkk pln czk cny inr".split())
_ZONES = frozenset("utc gmt cet cest eet eest wet west est edt cst cdt mst mdt pst pdt ist jst".split())  # after a time
_AMOUNT = re.compile(r"(?<![\w.-])(?:(?P<cur>[A-Z]{3}|[$€£¥])\s?)?(?P<num>\d+(?:[.,:]\d+)*)"
                     r"(?P<range>\s*(?:to|-|–|and)\s*\d+(?:[.,:]\d+)*)?"
                     r"(?P<unit>\s*%|[\s-]+(?:(?:per|a|an|each|every)\s+)?[A-Za-z]+)?")
_WHO_Q = re.compile(r"^\W*(who|whom|whose)\b", re.I)
_MONEY = "rate|cost|costs|price|fee|fees|budget|allowance|per diem|salary|amount"  # what a question about money names
# Questions after an amount that question_kind does not call "number" ("what budget ...", "at what rate ...")
_AMOUNT_Q = re.compile(rf"\b({_MONEY}|length|size|limit|minimum|maximum|deadline|date|hours|opening times|"
                       r"how (many|much|long|often|big|large|old))\b", re.I)
# A question that asks for the amount or date itself: then no other key stands in for a missing one.
# ("when" inside a question is a clause: "which directory is copied when the account is created?")
# "What is the default line-wrap length for ...?" asks the length itself, as "what length" does: a
# sentence that names the option but not its value holds no answer (sed's manual, 2026-12-07).
_AMOUNT_NOUN = r"(year|date|day|time|port|size|version|rate|price|cost|budget|amount|fee|allowance|limit|length|deadline)"
_ASKS_AMOUNT = re.compile(rf"^\W*(when|how (many|much|long|often|big|large|old))\b|\b(what|which) {_AMOUNT_NOUN}\b|"
                          rf"\b(what|which) (is|are|was|were) the ([\w'’-]+ ){{0,3}}{_AMOUNT_NOUN}\b", re.I)
_DEFAULT_WORD = re.compile(r"\bdefault", re.I)
_MONEY_Q = re.compile(rf"\b({_MONEY}|how much|pay|paid|spend)\b", re.I)
_WHEN_Q = re.compile(r"\b(when|date|deadline|which day|what day)\b", re.I)
# "section 3.2", "page 45", "p. 12": a pointer, not an amount (texinfo's PDFs write "(see Section 3.7.6
# [Signals], page 45)" in most paragraphs: GNU Bash's manual, 2026-12-07)
_REFERENCE = re.compile(r"(?:\b(?:section|chapter|figure|table|step|pages?|pp?\.)|§)\s*$", re.I)
_CAPITAL = re.compile(r"[A-Z][\w'’-]*")
_LINK = re.compile(r"\S+@\S+\.\w+|\w+://\S+")  # an e-mail address or URL: shown whole


def _amount(sentence: str, question: str) -> str:
    """The first date or amount of `sentence` the question does not name, as written ("" if none);
    one with a currency first for a question about money, a date first for "when", one after the
    word "default" first for a question about a default ("A length of 0 means never wrap; the
    default is 70": 70)."""
    asked = {verify.canonical_number(n) for n in re.findall(r"\d+(?:[.,:]\d+)*", question)}
    money, when = _MONEY_Q.search(question), _WHEN_Q.search(question)
    default = _DEFAULT_WORD.search(sentence) if _DEFAULT_WORD.search(question) else None
    dates = list(_DATE.finditer(sentence))
    found = [(0 if when else 1, m.start(), m.group(0).strip()) for m in dates]
    dated = [range(m.start(), m.end()) for m in dates]
    for m in _AMOUNT.finditer(sentence):
        unit = (m.group("unit") or "").strip(" -")
        last = unit.split()[-1].lower() if unit else ""
        real_unit = unit == "%" or last in verify.UNITS or ":" in m.group("num") and last in _ZONES
        if verify.canonical_number(m.group("num")) in asked or _SECTION.fullmatch(m.group("num")) and not real_unit \
                or any(m.start("num") in r for r in dated) or _REFERENCE.search(sentence[:m.start()]):
            continue
        cur = m.group("cur") or ""
        keep_cur = cur and (not cur.isalpha() or cur.lower() in _CURRENCY)
        text = (cur + (" " if cur.isalpha() else "") if keep_cur else "") + m.group("num") + (m.group("range") or "")
        if real_unit:
            text += ("" if unit == "%" else " ") + unit
        first = money and keep_cur or default is not None and m.start() > default.start()
        found.append((0 if first else 1, m.start("cur") if keep_cur else m.start("num"), text))
    found = [f for f in found if verify.canonical_number(f[2]) not in asked]
    return min(found)[2] if found else ""  # what the question asks for (money, a date) first, then the first


def _name(sentence: str, question: str) -> str:
    """The first name in `sentence` the question does not name: a run of capitalized words (two or
    more, or one inside the sentence), joined with an apposition ("Chief Financial Officer, Marta
    Oliveira"); a label before a colon ("Decision:"), a month or a lone first word is not one."""
    words = list(_CAPITAL.finditer(sentence))
    runs: list[list] = []
    for m in words:
        w = m.group(0)
        if w.lower() in _MONTH_WORDS or _named(w, question) or sentence[m.end():m.end() + 1] == ":":
            continue
        gap = sentence[runs[-1][-1].end():m.start()] if runs else None
        if gap is not None and (gap == " " or (gap == ", " and len(runs[-1]) > 1)):
            runs[-1].append(m)
        else:
            runs.append([m])
    for run in runs:
        first = run[0].start() == len(sentence) - len(sentence.lstrip())
        if len(run) > 1 or not first:
            return sentence[run[0].start():run[-1].end()]
    return ""


def reading(llm, question: str, texts: Sequence[str]) -> np.ndarray | None:
    """How much each text makes the chat model expect the question: the log-probability of the
    question after READ_PROMPT with the text, minus after READ_BASE alone, per token of the question
    (pointwise mutual information). `llm`: the in-process model or a server that returns prompt
    log-probabilities (vLLM); None when it cannot."""
    logp = llm.continuation_logprobs([READ_PROMPT.format(t) for t in texts] + [READ_BASE], " " + question)
    if logp is None:
        return None
    return (np.array(logp[:-1]) - logp[-1]) / max(1, llm.count_tokens(" " + question))


# What a question asks for, by the noun after "which"/"what" ("which configuration file", "With
# NFSv4, which export option ..."), and the shape a term of that kind has. A key span must fit it:
# "/etc/exports" for "which file", not "NFS"; "tag.gpgSign" for "which configuration variable", not
# "--no-sign". Chosen on the tuning splits' rows (bench/key_span.py, bench/RESULTS.md finding 52).
_ASKED_NOUNS = {
    "option": r"options?|flags?|switch(?:es)?",
    "env": r"environment(?:al)? variables?|env vars?",
    "constant": r"constants?",
    "setting": r"configuration (?:variables?|settings?|options?|keys?)|config (?:variables?|settings?|keys?)|settings?",
    "variable": r"variables?",
    "signal": r"signals?",
    "error": r"error (?:codes?|numbers?|values?)|errno(?: values?)?|errors?",
    "path": r"(?:configuration |config |system-wide |initialization )*(?:files?|director(?:y|ies)|folders?|paths?)",
    "function": r"functions?|methods?|special methods?|callables?",
    "class": r"classe?s?|exceptions?",
    "parameter": r"parameters?|arguments?|keyword arguments?|keywords?",
    "command": r"commands?|subcommands?|programs?|tools?|utilit(?:y|ies)|scripts?|daemons?|packages?|executables?"
               r"|binar(?:y|ies)",
}
_ASKED = re.compile(r"\b(?:which|what)\s+(?:[\w.-]+\s+){0,3}?(?:" + "|".join(f"(?P<{k}>{v})" for k, v in _ASKED_NOUNS.items())
                    + r")\b", re.I)
_SETTING = r"^[a-z][\w-]*(?:\.[\w<>-]+)+$|^[A-Za-z]+_\w+$|^[a-z]\w*=\S+$|^[a-z]+[A-Z]\w*$"
_SHAPES = {  # tested on the term as written ("getfacl(" of "getfacl(1)" is a manual page, not a command as typed)
    "option": re.compile(r"^--?[A-Za-z]|^[a-z][\w-]*=\S+$"),
    "env": re.compile(r"^\$?[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$|^\$?[A-Z]{4,}$"),
    "constant": re.compile(r"^(?:[\w.]+\.)?[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$|^\w+(?:\.\w+)+$"),
    "setting": re.compile(_SETTING),
    "variable": re.compile(_SETTING + r"|^\$?[A-Z][A-Z0-9]+$"),  # or a shell's name in capitals: PATH, PS1
    "signal": re.compile(r"^(?:SIG)?[A-Z][A-Z0-9]+$"),  # SIGHUP, or HUP as kill -l writes it
    "error": re.compile(r"^E[A-Z0-9]{3,}$|^(?:[\w.]+\.)?[A-Z]\w*Error$"),  # EINTR, or Python's ValueError
    "path": re.compile(r"/|^\.\w"),
    "function": re.compile(r"\(|^[\w.]+\.\w+$|^__\w+__$"),
    "class": re.compile(r"^(?:[\w.]+\.)?[A-Z][a-z]+[A-Z]\w*|^(?:[\w.]+\.)?[A-Z][a-z]\w+$"),
    "parameter": re.compile(r"^[a-z_]\w*=\S+$|^[a-z_]\w*$"),
    "command": re.compile(r"^[a-z][\w.+-]*(?: [a-z][\w-]*)?$|/"),
}
_PORT_Q = re.compile(r"\b(which|what)\s+(\w+\s+){1,2}port\b", re.I)  # "on which TCP port" (no port is a term)
_LABEL = re.compile(r"^Source code:\s*\S+")  # Python's "Source code: Lib/uuid.py" line: a label, not an answer
_SIGNATURE = re.compile(r"^(?:class\s+)?[\w.]+\((.*?)\)\s+" + JOIN.strip() + " ")  # "f(a, b=X) — ...": X is an argument
# An abbreviation in capitals ("APT", "POSIX"): no key span, unless the sentence puts it next to the asked
# noun ("the PATH variable", key_span). A signal's name (SIGHUP) or an errno value (EINTR) is code, no abbreviation.
_ACRONYM = re.compile(r"(?!SIG[A-Z]|E[A-Z]{3,5}$)[A-Z]{2,6}")
_VALUE = re.compile(r"\$[A-Z][A-Z0-9_]*\b")  # a variable's value as a shell writes it: "$PATH" (not a term to verify)
_APPOSED_TERM = r"(?<![\w./~$=-])((?:~/|/|\$|\.)?[A-Za-z_][\w.+/$=<>~-]*[\w/>]|[A-Za-z])"
_COMMON_ZIPF = 3.0  # a word next to the asked noun more common than this is English ("when", "file"), not a name


def asked_kind(question: str) -> str | None:
    """The kind of term a question asks for by its noun ("which environment variable ...": "env"), one
    of _ASKED_NOUNS; None for a question without one, or that asks how ("How do I choose which merge
    tool ...": a clause, not what is asked)."""
    if re.match(r"\W*how\b", question, re.I):
        return None
    m = _ASKED.search(question)
    return next(k for k in _ASKED_NOUNS if m.group(k)) if m else None


def _terms(sentence: str, question: str) -> list[tuple[int, str, str]]:
    """(position, term as shown, term as written) for the code-like terms and paths of `sentence` the
    question does not name, in verify.asserted_terms' order: "file(s)" is no call, and the arguments of a definition's signature
    ("zlib.compress(data, wbits=MAX_WBITS) — ...") count only where the description names them again."""
    sig = _SIGNATURE.match(sentence)
    out = []
    for k, t in new_terms(sentence, question):
        shown = t[:-1] if t.endswith("(") else t  # "heapq.nlargest(" of "heapq.nlargest(n, iterable)"
        i = sentence.find(t)
        if k != "identifier" or i < 0 or _SECTION.match(shown) or shown.lower() in _CURRENCY | _ZONES:
            continue
        if re.fullmatch(r"[a-z]+\(", t) and sentence[i + len(t):i + len(t) + 2] == "s)" and verify.zipf(t[:-1]) >= 3.5:
            continue  # "configuration file(s)": a plural, not a call
        if sig and sig.start(1) <= i < sig.end(1):
            i = sentence.find(t, sig.end())
            if i < 0:
                continue
        out.append((i, shown, t))
    label = _LABEL.match(sentence)
    return [c for c in out if not label or c[0] >= label.end()]


def _apposed(sentence: str, kind: str, question: str) -> list[tuple[float, str, str]]:
    """Rare words the sentence puts next to the asked noun ("the atq command", "the option fsid=0"),
    the first of a list ("the nagios4 and monitoring-plugins packages": nagios4), as _terms' rows."""
    noun = _ASKED_NOUNS[kind]
    found = [(m.start(1), m.group(1)) for m in re.finditer(rf"{_APPOSED_TERM}\s+(?:{noun})\b", sentence)]
    found += [(m.start(1), m.group(1)) for m in re.finditer(rf"\b(?:{noun})\s+{_APPOSED_TERM}", sentence)]
    out = []
    for i, t in found:
        t = t.rstrip(".,;:")
        if _named(t, question) or t.isalpha() and not t.isupper() and verify.zipf(t.lower()) >= _COMMON_ZIPF:
            continue
        before = sentence[max(0, i - 200):i]  # a list's first item is near (and a long word made this quadratic)
        first = re.search(r"(?<![\w.+-])([A-Za-z][\w.+-]*\w)\s*(?:,|\band\b|\bor\b)\s*$", before)
        if first and verify.zipf(first.group(1).lower()) < _COMMON_ZIPF and not _named(first.group(1), question):
            i, t = i - len(before) + first.start(1), first.group(1)
        out.append((i, t, t))
    return out


def _shown(term: str, sentence: str) -> str:
    """`term` as the sentence writes it: with a "$" before it ("$GIT_DIR/worktrees"), or the e-mail
    address or URL that holds it, whole."""
    if not term.startswith("$") and "$" + term in sentence:
        return "$" + term
    return next((m.group(0).rstrip(".,;:)") for m in _LINK.finditer(sentence) if term in m.group(0)), term)


def key_span(sentence: str, question: str) -> str:
    """The span of `sentence` that answers, copied from it. For a question that asks for a kind of
    term by its noun (`asked_kind`: "which option", "which configuration file"), the first term that
    has that kind's shape, or a rare word the sentence puts next to the noun ("the atq command"; a name
    in capitals only there or written as code: "the PATH variable", "$PATH", "SIGHUP", not "POSIX"); else
    for a question about a number or date, the first amount or date it does not name (with its
    currency, range and unit: "EUR 1,500 per year", "1 September 2025", "2 weeks ago"); for "who",
    the first name; otherwise (unless the question asks for a kind of term or the amount itself:
    "when ...?", "how many ...?") its first code-like term or path the question does not name that
    is not a bare acronym, an e-mail address or URL whole. "" when there is none: no key is better
    than a wrong one."""
    kind = asked_kind(question)
    if kind:
        apposed = _apposed(sentence, kind, question)
        values = [(m.start(), m.group(0), m.group(0)) for m in _VALUE.finditer(sentence)
                  if kind in ("variable", "env") and not _named(m.group(0), question)]
        rows = _terms(sentence, question) + apposed + values
        fits = sorted((0 if (i, t, raw) in apposed else 1, i, t) for i, t, raw in rows
                      if _SHAPES[kind].search(raw) and ((i, t, raw) in apposed or not _ACRONYM.fullmatch(raw)))
        if fits:
            return _shown(fits[0][2], sentence)
    asks = _ASKS_AMOUNT.search(question) or _PORT_Q.search(question)
    if asks or question_kind(question) == "number" or _AMOUNT_Q.search(question):
        amount = _amount(sentence, question)
        if amount and re.search(re.escape(amount) + r"\s+ago\b", sentence):
            amount += " ago"  # "default is 2 weeks ago"
        if amount or asks:
            return amount
    if _WHO_Q.search(question):
        name = _name(sentence, question)
        if name:
            return name
    if kind:
        return ""
    terms = [t for _, t, _ in _terms(sentence, question) if not _ACRONYM.fullmatch(t)]  # "APT" names no answer
    return _shown(terms[0], sentence) if terms else ""


def key_status(answerable: float, right: float, top_quote: float, *, not_found: float, answered: float,
               quote_answered: float, yes_no: bool = False) -> str:
    """What a key answer is shown as (retrieval/answer.py `settle`; bench/tune_quote.py scores the
    same rule out of fold): "not_found" when the probability that the documents answer is under
    `not_found`, "answered" when the probability that the quote is right reaches `answered` or its
    sentence scores `quote_answered` by retrieval/quote.py, else "uncertain".

    yes_no: the question is one that yes or no answers (`verify.asks_yes_no`). A quote is then at
    most "uncertain": a copied sentence says neither yes nor no, and one that shares the question's
    words ("Does Valgrind support Windows?" quoting "initial support for reading Windows .PDB debug
    information has been added") would be shown as the answer. The models were fitted on questions
    that ask for a command, a setting or a number, and the few yes/no ones among them were never
    answered. A guard, not a gain: on Valgrind's held-out set it turned one right quote to
    uncertain and caught no wrong one (bench/RESULTS.md, finding 43)."""
    if answerable < not_found:
        return "not_found"
    if yes_no:
        return "uncertain"
    return "answered" if right >= answered or top_quote >= quote_answered else "uncertain"


def key_answer(question: str, passages: Sequence[Hit], embedder, stats: TermStats, answerability: float,
               *, follow_up: str | None = None, max_sentences: int = 2, second: float = 0.9,
               reader=None) -> KeyAnswer | None:
    """The best-answering candidate of `passages`, its key span, and how sure it is; None when the
    passages have nothing quotable.

    reader: `reader(question, texts) -> scores` (`reading` with the chat model) to rank the best
    READ_TOP candidates again and give the question-level models the *_READ_* coefficients; None:
    the ranker alone. Not used for follow-ups (their ranking is quote.py's, see below).

    follow_up: the question as asked when `question` is its standalone form; candidates are then
    ranked by quote.py's score, the mean over both forms, as before the ranker (see below).
    A second sentence of the same passage joins when it scores `second` of the first."""
    cands = candidates(passages)
    if not cands:
        return None
    rows = candidate_features(question, cands, passages, stats, embedder)
    probs = _sigmoid(rows @ CANDIDATE_COEF + CANDIDATE_BIAS)
    rank = probs
    if follow_up and follow_up != question:
        # The previous turn's words found the passages; ranking on them pulls the quote back to the
        # previous answer. Follow-ups keep quote.py's ranking on the mean of both forms (the ranker was
        # fitted on questions without history).
        asked = candidate_features(follow_up, cands, passages, stats, embedder)
        rank = (np.array([_quote_score(r) for r in rows]) + np.array([_quote_score(r) for r in asked])) / 2
        rows, probs = asked, _sigmoid(asked @ CANDIDATE_COEF + CANDIDATE_BIAS)
    order = [int(i) for i in np.argsort(-rank, kind="stable")]
    read = None
    if reader is not None and not (follow_up and follow_up != question):
        order, read = _read(question, cands, probs, order, reader)  # read stays None if the reader cannot
    first = order[0]
    picked = [first]
    for i in order[1:max_sentences * 4]:
        if len(picked) >= max_sentences or rank[i] < second * rank[first]:
            break
        if cands[i][1] != cands[first][1] and cands[i][0] == cands[first][0] \
                and not _is_heading(cands[i], passages) and not _is_heading(cands[first], passages):
            picked.append(i)
    picked.sort()
    q = question_features(follow_up or question, passages, stats, probs, cands, answerability, rows[first])
    right_coef, right_bias, ans_coef, ans_bias = RIGHT_COEF, RIGHT_BIAS, ANSWERABLE_COEF, ANSWERABLE_BIAS
    names = QUESTION_FEATURES
    if read is not None:
        q.update(read)
        right_coef, right_bias, ans_coef, ans_bias = RIGHT_READ_COEF, RIGHT_READ_BIAS, ANSWERABLE_READ_COEF, ANSWERABLE_READ_BIAS
        names = QUESTION_FEATURES + READ_FEATURES
    x = np.array([q[f] for f in names])
    span = key_span(cands[first][1], follow_up or question)
    body = " ".join(f"{quoted(cands[i][1])} [{cands[i][0]}]" for i in picked)
    # a definition's sentence already starts with its term ("--keep-index — All changes ...", or
    # "textwrap.dedent(text) — Remove ..." for the span "textwrap.dedent"): no second copy
    lead = cands[picked[0]][1]
    term = lead.split(JOIN, 1)[0] if JOIN in lead else ""
    shown = f"{span}{JOIN}{body}" if span and span not in term else body
    return KeyAnswer(text=shown, quote=body, span=span,
                     picked=[(cands[i][0], cands[i][1]) for i in picked], candidate=float(probs[first]),
                     right=float(_sigmoid(x @ right_coef + right_bias)),
                     answerable=float(_sigmoid(x @ ans_coef + ans_bias)), features=q)


def read_text(cand: tuple[int, str, str]) -> str:
    """What the reader reads of a candidate (passage number, sentence, heading path)."""
    return f"{cand[2]}\n{cand[1]}" if READ_HEADING and cand[2] else cand[1]


def _read(question: str, cands, probs: np.ndarray, order: list[int], reader) -> tuple[list[int], dict[str, float] | None]:
    """`order` with its first READ_TOP candidates ranked by log P + READ_WEIGHT * reading (the
    ranker's order after them), and READ_FEATURES of the new first: its reading, and its margin
    over the best other one read. (order, None) when the reader returns None."""
    top = order[:READ_TOP]
    scores = reader(question, [read_text(cands[i]) for i in top])
    if scores is None:
        return order, None
    scores = np.asarray(scores, dtype=float)
    combined = np.log(np.maximum(probs[top], 1e-9)) + READ_WEIGHT * scores
    ranked = [int(j) for j in np.argsort(-combined, kind="stable")]
    best = scores[ranked[0]]
    others = [scores[j] for j in ranked[1:]]
    return [top[j] for j in ranked] + order[READ_TOP:], {"read": float(best),
                                                          "read_margin": float(best - max(others, default=best))}
