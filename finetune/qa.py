"""Question-answer pairs from one chunk of text: a deterministic extractive generator and an LLM one.

Both return `QA` records whose `answer` is an exact slice of the chunk (`text[start:end]`) and whose
`sentence` is the sentence that holds it; the dataset builder turns that sentence, with a citation,
into the training target.

The extractive generator is the default because the default model (SmolLM2-135M) writes poor
questions: it picks sentences that carry a checkable fact (an amount of money, a date, a time, a
quantity with its unit, a code, an e-mail address, a name, or a `key: value; ...` table row) and
turns each into a question by putting a wh-phrase where the fact was ("Full-time employees receive
how many days of paid annual leave per calendar year?"). Such echo questions read a little stiff
but are always answerable from the chunk, which is what a small model needs to learn to extract
and cite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from archivist.retrieval.verify import sentences  # the rule answers are checked by: one home for sentence ends

MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
WEEKDAYS = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
UNITS = ("days|weeks|months|years|hours|minutes|seconds|characters|km|kilometres|kilometers|metres|meters|"
         "percent|people|guests|employees|robots|messages|blocks|times|cycles|working days|calendar days|"
         "business days|nights|pages|units|per cent|kg|GB|TB|MB")

# (kind, pattern, wh-phrase); earlier kinds win when spans overlap. `{unit}` is filled from the match;
# a group named `v` marks the answer inside a longer match.
PATTERNS: list[tuple[str, re.Pattern, str]] = [
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "which address"),
    ("url", re.compile(r"https?://[^\s,;)]+[^\s,;).]"), "which address"),
    ("money", re.compile(r"(?:\b(?:EUR|USD|GBP|CHF)\s?|[€$£]\s?)\d[\d,]*(?:\.\d+)?(?:\s?(?:million|thousand|k)\b)?"), "how much"),
    ("date", re.compile(rf"\b\d{{1,2}} (?:{MONTHS}) \d{{4}}\b|\b(?:{MONTHS}) \d{{1,2}}, \d{{4}}\b|\b\d{{4}}-\d{{2}}-\d{{2}}\b"), "on what date"),
    ("month", re.compile(rf"\b(?:{MONTHS}) \d{{4}}\b"), "what month"),
    ("time", re.compile(r"\b\d{1,2}:\d{2}(?:\s*(?:to|-|–)\s*\d{1,2}:\d{2})?(?:\s?(?:CET|UTC|CEST))?"), "at what time"),
    ("percent", re.compile(r"\b\d+(?:[.,]\d+)?\s?(?:%|percent|per cent)"), "what percentage"),
    ("quantity", re.compile(rf"\b\d(?:[\d,]*\d)?(?:\.\d+)?\s(?P<unit>{UNITS})\b"), "how many {unit}"),
    ("code", re.compile(r"\b[A-Z]{2,}-\d+[A-Z0-9-]*\b"), "which code"),
    ("name", re.compile(r"(?<=[a-z,] )(?<!the )[A-Z][a-z]+(?: [A-Z][a-z]+){1,2}\b(?! \d| [a-z])"), "who"),
    ("number", re.compile(r"\b(?:extension|version|room|floor|gate|building|line|level|step|page|section) "
                          r"(?P<v>\d(?:[\d,]*\d)?(?:\.\d+)*)\b"),
     "what number"),
]
_ROW = re.compile(r"^[^:;\n]{1,40}: [^;\n]+(?:; [^:;\n]{1,40}: [^;\n]*)+$")
_WORD = re.compile(r"\w+")
_PREPOSITION = re.compile(r"\b(?:at|on|in|from|before|after|until|by|to|of|for|within) $")
_NOT_NAMES = re.compile(rf"^(?:{MONTHS}|{WEEKDAYS}|The|This|Our|Every|Each|All)\b")
# Code and markup are not prose: in a manual's examples `$1` is a shell argument, not a dollar, `23:03`
# is a column of `ls -l`, `1%` is part of a sed script, and Texinfo's cross references
# ("*note Regexp Addresses::") look like names. A sentence with a pipe, a backslash, a brace, a
# backtick, a shell prompt or comment, a positional parameter or an Info cross reference gives no
# question (on sed's manual this drops 34 of its 59 questions, nearly all of them unreadable).
_CODE = re.compile(r"[|\\{}`]|(?:^|\s)[$#]\s|^\s*#|\$[@#*?]|[\"'‘]\$\d|\$\d[\"'’]|\*[Nn]ote\b|::")
_POSITIONAL = re.compile(r"\$\d(?![\d,.])")  # two of them: shell arguments ("$1 $2"); one may be a price
_CAPITALIZED_BEFORE = re.compile(r"\b[A-Z][a-z]+ $")
_ACRONYM_AFTER = re.compile(r"^ \((?P<acronym>[A-Z]{2,})\)")


@dataclass
class QA:
    """A question whose answer is text[start:end] of the chunk; `sentence` is the sentence holding it."""

    question: str
    answer: str
    start: int
    end: int
    sentence: str
    kind: str  # the fact kind (money, date, ..., row) or "llm"


def _clean(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


def _facts(sentence: str) -> list[tuple[str, int, int, str]]:
    """Non-overlapping (kind, start, end, wh) facts in a sentence, most specific kind first."""
    taken: list[tuple[int, int]] = []
    found = []
    for kind, pattern, wh in PATTERNS:
        for m in pattern.finditer(sentence):
            s, e = m.span("v") if "v" in pattern.groupindex else m.span()
            if any(s < b and a < e for a, b in taken) or _cuts_a_token(sentence, s, e):
                continue
            if kind == "name" and (_NOT_NAMES.match(sentence[s:e]) or _CAPITALIZED_BEFORE.search(sentence[:s])
                                   or _abbreviated(sentence[s:e], sentence[e:])):
                continue  # "Free Software Foundation" is not a person called "Software Foundation"
            unit = m.groupdict().get("unit")
            found.append((kind, s, e, wh.format(unit=unit) if unit else wh))
            taken.append((s, e))
    return found


def _cuts_a_token(sentence: str, s: int, e: int) -> bool:
    """Whether sentence[s:e] is only part of a token: "0.9" of version "0.9.0", "70%" of "60-70%",
    "10:00" of "10:00:30", "1.0" of "1.0rc2". Asked about, the rest would stay in the question
    ("by bzip2 which version.0 or later?") and the gold would be a wrong answer."""
    return bool(re.search(r"\w[.:/-]?$", sentence[:s]) or re.match(r"\w|[.:/-]\w", sentence[e:]))


def _abbreviated(phrase: str, after: str) -> bool:
    """Whether a capitalized phrase is a term spelled out before its acronym: "Extended Regular
    Expression (ERE)" is no person, but "Marek Jansen (COO)" is one with a title."""
    m = _ACRONYM_AFTER.match(after)
    return bool(m) and m["acronym"] == "".join(w[0] for w in phrase.split())


def _question(sentence: str, s: int, e: int, kind: str, wh: str) -> str | None:
    """The sentence with the fact replaced by its wh-phrase, as a question; None when it would read badly."""
    before, after = sentence[:s], sentence[e:]
    if kind in ("code", "number"):
        # "policy HR-17" -> "which policy", "extension 4417" -> "which extension"
        m = re.search(r"(\b[A-Za-z][a-z-]+) $", before)
        if m and m.group(1).lower() not in ("of", "to", "and", "or", "the", "a", "an", "by", "in", "at", "on", "for", "with"):
            before, wh = before[: m.start()], f"which {m.group(1).lower()}"
    if _PREPOSITION.search(before) and wh.split(" ", 1)[0] in ("at", "on"):
        wh = wh.split(" ", 1)[1]  # "from at what time" -> "from what time"
    if kind == "quantity":
        wh_unit = wh.split(" ", 2)[-1]
        after = re.sub(rf"^\s*of\s+{re.escape(wh_unit)}\b", "", after)  # "how many days of days" never happens
    q = _clean(before + wh + after).rstrip(" .;:!")
    if q.startswith(wh):
        q = q[0].upper() + q[1:]
    words = _WORD.findall(q)
    if not 5 <= len(words) <= 45:
        return None
    return q + "?"


def _row_pairs(line: str) -> list[tuple[str, str, int, int]]:
    """(key, value, start, end) of each field of a `key: value; key: value` row (offsets in the line)."""
    out, pos = [], 0
    for part in line.split("; "):
        k, _, v = part.partition(": ")
        v0 = pos + len(k) + 2
        v_stripped = v.rstrip()
        out.append((k.strip(), v_stripped, v0, v0 + len(v_stripped)))
        pos += len(part) + 2
    return out


def _row_questions(text: str, b0: int, line: str, limit: int) -> list[QA]:
    """Questions about a table row: 'What is the <key> for <first key> <first value>?'."""
    pairs = _row_pairs(line)
    if len(pairs) < 2 or not pairs[0][1]:
        return []
    k0, v0 = pairs[0][0], pairs[0][1]
    out = []
    # fields with digits first: prices, dates and counts are what people look up in a table
    for k, v, s, e in sorted(pairs[1:], key=lambda p: (not re.search(r"\d", p[1]), pairs.index(p))):
        if not v or len(v) > 80 or v == v0:
            continue
        question = f"What is the {k} for {k0} {v0}?"
        sentence = f"The {k} for {k0} {v0} is {v}."
        out.append(QA(question, text[b0 + s: b0 + e], b0 + s, b0 + e, sentence, "row"))
        if len(out) >= limit:
            break
    return out


def extractive_pairs(text: str, max_pairs: int = 3) -> list[QA]:
    """Up to `max_pairs` deterministic question-answer pairs from a chunk, at most one per sentence.

    Every pair's answer is exactly text[start:end]. Table rows give field lookups; prose sentences
    give one echo question per sentence about their most specific fact. Returns [] for a chunk with
    no checkable fact (a heading, a paragraph of opinions).
    """
    out: list[QA] = []
    seen_answers: set[str] = set()
    for a, b in sentences(text):
        if len(out) >= max_pairs:
            break
        line = text[a:b]
        if _ROW.match(line.strip()):
            lead = len(line) - len(line.lstrip())
            for qa in _row_questions(text, a + lead, line.strip(), limit=1):
                if qa.answer not in seen_answers:
                    out.append(qa)
                    seen_answers.add(qa.answer)
            continue
        n_words = len(_WORD.findall(line))
        if n_words < 6 or (n_words < 10 and not line.rstrip().endswith((".", "!", "?"))):
            continue  # headings and fragments
        if _CODE.search(line) or len(_POSITIONAL.findall(line)) > 1:
            continue  # a command line, a script or a cross reference, not a sentence
        for kind, s, e, wh in _facts(line):
            answer = line[s:e]
            if answer in seen_answers or line.count(answer) > 1:
                continue  # the question must not contain its own answer
            q = _question(line, s, e, kind, wh)
            if q is None:
                continue
            out.append(QA(q, answer, a + s, a + e, _clean(line), kind))
            seen_answers.add(answer)
            break
    return out


# -- LLM question generation -------------------------------------------------------------------

# Two short asks work better than one formatted reply for a small model: SmolLM2-135M asked for
# "Question: ... Answer: ..." mostly writes just a question. A reply in that format is still used as is.
QUESTION_PROMPT = ("Write one question that the passage below answers. Reply with the question only.\n\n"
                   "Passage:\n{text}")
ANSWER_PROMPT = ("Passage:\n{text}\n\nQuestion: {question}\n"
                 "Answer with a short phrase copied word for word from the passage.")
_QA_REPLY = re.compile(r"Question:\s*(?P<q>.+?)\s*\n+\s*Answer:\s*(?P<a>.+)", re.S | re.I)


def find_span(text: str, answer: str) -> tuple[int, int] | None:
    """Where `answer` occurs in `text`, ignoring case and runs of whitespace; None when it does not."""
    words = answer.strip().strip(".").split()
    if not words:
        return None
    m = re.search(r"\s+".join(re.escape(w) for w in words), text, re.I)
    return (m.start(), m.end()) if m else None


def grounded_pair(text: str, question: str, answer: str) -> QA | None:
    """A QA when the answer is found in the chunk and the question does not give it away, else None."""
    question = _clean(question).removeprefix("Question:").strip()
    answer = _clean(answer.split("\n")[0]).removeprefix("Answer:").strip(" \"'")
    if not question.endswith("?") or len(_WORD.findall(question)) < 3 or not answer or len(_WORD.findall(answer)) > 20:
        return None
    if answer.lower().rstrip(".") in question.lower():
        return None
    span = find_span(text, answer)
    if span is None:
        return None
    s, e = span
    sentence = next((_clean(text[a:b]) for a, b in sentences(text) if a <= s and e <= b), _clean(text[s:e]))
    return QA(question, text[s:e], s, e, sentence, "llm")


def parse_llm_reply(text: str, reply: str) -> QA | None:
    """A 'Question: ... Answer: ...' reply as a grounded QA (see grounded_pair); None otherwise."""
    m = _QA_REPLY.search(reply)
    return grounded_pair(text, m.group("q"), m.group("a")) if m else None


def llm_pairs(text: str, generate, max_pairs: int = 1) -> list[QA]:
    """Pairs written by an LLM: `generate(messages) -> str` writes a question about the chunk, then
    answers it from the chunk. A pair is kept only when its answer is found in the chunk (see
    grounded_pair); repeats of an earlier question are dropped, so fewer than `max_pairs` may come back.
    """
    out: list[QA] = []
    for i in range(max_pairs):
        hint = "" if i == 0 else "\nAsk about a different fact than: " + "; ".join(q.question for q in out)
        reply = generate([{"role": "user", "content": QUESTION_PROMPT.format(text=text) + hint}])
        qa = parse_llm_reply(text, reply)
        if qa is None:
            question = next((line.strip() for line in reply.splitlines() if line.strip().endswith("?")), "")
            if not question:
                continue
            answer = generate([{"role": "user", "content": ANSWER_PROMPT.format(text=text, question=question)}])
            qa = grounded_pair(text, question, answer)
        if qa and all(normalize(qa.question) != normalize(o.question) for o in out):
            out.append(qa)
    return out


def normalize(text: str) -> str:
    """Lower-case words joined by single spaces: the key duplicates are found by."""
    return " ".join(_WORD.findall(text.lower()))
