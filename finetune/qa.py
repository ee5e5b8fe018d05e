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
and cite. A question is only written where it reads as one and singles out its chunk: "who" asks
only for a person, not for a title, an acronym's expansion or a product (`_person`); a boilerplate
label ("Changed in version 3.7: ...") and a question whose other words are all common English give
none (`_specific`): on Python's manual labels gave 904 of its 1,653 questions, each answered by any of
hundreds of chunks, poor pairs for `archivist finetune --target retriever`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from archivist.retrieval.folding import cjk_count
from archivist.retrieval.query import STOPWORDS
from archivist.retrieval.verify import sentences  # the rule answers are checked by: one home for sentence ends
from archivist.retrieval.verify import zipf

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
_CAPITALIZED_BEFORE = re.compile(r"\b[A-Z][a-z]+(?:,? (?:of|for|and)|,)? $")  # "Redundant Array of Independent Disks"
# Where a text names a person: "written by", "thanks to", "the head is", a list of names; or "Ingo Molnar (a
# kernel developer)", "Randy Dunlap’s presentation". "see", "in", "on", "called", "for" name sections and products.
_PERSON_BEFORE = re.compile(r"(?:\b(?:by|to|after|from|thank|thanks|and|is|was|contact|ask|call|email)|,) $", re.I)
_PERSON_AFTER = re.compile(r"^(?: \((?:a|an|the|of)\b|,? who\b|[’']s?(?!\w))")
_TITLE_GOES_ON = re.compile(r"^,? (?:(?:of|for|and) )?[A-Z]")  # "Distributed Version Control", "Types, Functions, and Other Objects"
_POSSESSIVE = re.compile(r"^(?:[’']s\b|(?<=s)[’'](?!\w))")
_SURNAME_ZIPF = 4.0  # a surname is rare as an English word: "Torvalds" 2.2, "Armstrong" 3.9; "Saying" 5.4, "Software" 4.8
_LABEL = re.compile(r"^[^:]{0,60}$")  # the fact sits in a short label at the start of the sentence...
_LABEL_END = re.compile(r"^[^:]{0,60}: ")  # ...that ends in a colon: "Changed in version 3.7: ", "New in version 3.2: "
_DETERMINERS = frozenset("a an the this that these those its their our your my his her each every any some all "
                         "no one two three both other same such".split())
# _PREPOSITION's words but "to" and the times, and others after which a noun follows, not a verb ("to use UTF-8")
_NOUN_FOLLOWS = re.compile(r"\b(?:in|from|of|for|with|by|under|per|at|on|into|via|see)\s+$", re.I)
_INSIDE_A_TOKEN = re.compile(r"[<\w=:/@!-]$")
_PRODUCT_BEFORE = re.compile(r"(?:\b(?:a|an|the) )?\b(?P<name>[A-Z][\w.+-]*) $")
_TERM = re.compile(r"[^\W\d_][\w.'-]*\w|\d[\w.-]*")  # any script: "Ältere", "сервер", "gitfile", "3.8"
_SPECIFIC_ZIPF = 5.0  # not common English: "hostname" 2.1, "Monday" 4.8; "step" 5.1, "working" 5.5 are
_COMMON_NOUN = re.compile(r"(?:tion|sion|ing|ment|ness|ity|ive|ful|able|ance|ence|ism|ware|ics|ers|ors|ies)$")


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
            if kind == "name" and not _person(sentence, s, e):
                continue  # "Free Software Foundation" is not a person called "Software Foundation"
            unit = m.groupdict().get("unit")
            if kind == "name" and _POSSESSIVE.match(sentence[e:]):
                wh = "whose"  # "Tim Peters’ introduction" -> "whose introduction"
            found.append((kind, s, e, wh.format(unit=unit) if unit else wh))
            taken.append((s, e))
    return found


def _cuts_a_token(sentence: str, s: int, e: int) -> bool:
    """Whether sentence[s:e] is only part of a token: "0.9" of version "0.9.0", "70%" of "60-70%",
    "10:00" of "10:00:30", "1.0" of "1.0rc2". Asked about, the rest would stay in the question
    ("by bzip2 which version.0 or later?") and the gold would be a wrong answer."""
    return bool(re.search(r"\w[.:/-]?$", sentence[:s]) or re.match(r"\w|[.:/-]\w", sentence[e:]))


def _person(sentence: str, s: int, e: int) -> bool:
    """Whether the capitalized phrase sentence[s:e] reads as a person's name, the only thing "who" may ask
    for. Manuals are full of capitalized phrases that are not: a quoted title ("GNU is Not Unix"), an
    acronym's expansion ("Redundant Array of Independent Disks", "Personal Information Manager" of
    KDE-PIM, "Marek Jansen (COO)" stays a person), part of a longer title ("Distributed Version Control
    system"), a product or a section ("picked Debian Bullseye", "see Debugger Commands", "Pony Saying").
    So a person is named where manuals name people (_PERSON_BEFORE, _PERSON_AFTER), and a surname is a
    word rare in English and no common noun; a given name may be common ("Jeff", "Christian")."""
    phrase, before, after = sentence[s:e], sentence[:s], sentence[e:]
    words = phrase.split()
    if (_NOT_NAMES.match(phrase) or _CAPITALIZED_BEFORE.search(before) or _TITLE_GOES_ON.match(after)
            or _quoted(before)):
        return False
    initials = "".join(w[0] for w in words)
    if any(t.startswith(initials) for t in re.findall(r"[A-Z][A-Z0-9]+", sentence)):
        return False  # the expansion of an acronym the sentence uses
    if not (_PERSON_BEFORE.search(before) or _PERSON_AFTER.match(after)):
        return False
    return all(zipf(w.lower()) < _SURNAME_ZIPF and not _COMMON_NOUN.search(w) for w in words[1:])


def _quoted(before: str) -> bool:
    """Whether a quotation opened in `before` is still open: “GNU is Not Unix”, "Pony Saying 'Um, Hello'"."""
    return before.count("“") > before.count("”") or before.count('"') % 2 == 1


def _question(sentence: str, s: int, e: int, kind: str, wh: str) -> str | None:
    """The sentence with the fact replaced by its wh-phrase, as a question; None when it would read badly."""
    before, after = sentence[:s], sentence[e:]
    if _LABEL.match(before) and _LABEL_END.match(after):
        return None  # "Changed in version 3.7: ...": a boilerplate label that hundreds of chunks share
    if kind == "email" and _INSIDE_A_TOKEN.search(before):
        return None  # "A U Thor <author@example.com>", "--author=you@example.com": a form or a command, not prose
    if kind == "code":
        # "under policy HR-17" -> "under which policy", "encoded in UTF-8" -> "encoded in which code"; but
        # "the git SHA-1 for", "an extended SHA-1 syntax", "such as SHA-256" give "the which git for", "such which as"
        m = re.search(r"(?:^|(?<=[\s(]))([A-Za-z][a-z-]+) $", before)
        label = m.group(1) if m else ""
        if (label and label.lower() not in STOPWORDS | _DETERMINERS and not re.search(r"(?:ly|ed|ing|[^s]s)$", label)
                and (_NOUN_FOLLOWS.search(before[: m.start()]) or not before[: m.start()].strip())):
            before, wh = before[: m.start()], f"which {label.lower()}"
        elif not _after_a_function_word(before):
            return None
    if kind == "number":
        # "extension 4417" -> "which extension"
        m = re.search(r"(\b[A-Za-z][a-z-]+) $", before)
        if m and m.group(1).lower() not in ("of", "to", "and", "or", "the", "a", "an", "by", "in", "at", "on", "for", "with"):
            before, wh = before[: m.start()], f"which {m.group(1).lower()}"
            # "cloned with a Git version 1.7.8 or newer" -> "cloned with which Git version or newer"
            product = _PRODUCT_BEFORE.search(before)
            if product and zipf(product["name"].lower()) < _SPECIFIC_ZIPF:  # "If version 1 is set" names no product
                before, wh = before[: product.start()], f"which {product['name']} {wh.removeprefix('which ')}"
    if _PREPOSITION.search(before) and wh.split(" ", 1)[0] in ("at", "on"):
        wh = wh.split(" ", 1)[1]  # "from at what time" -> "from what time"
    if wh == "whose":
        after = _POSSESSIVE.sub("", after)
    if kind == "quantity":
        wh_unit = wh.split(" ", 2)[-1]
        after = re.sub(rf"^\s*of\s+{re.escape(wh_unit)}\b", "", after)  # "how many days of days" never happens
    q = _clean(before + wh + after).rstrip(" .;:!")
    if q.startswith(wh):
        q = q[0].upper() + q[1:]
    words = _WORD.findall(q)
    if not 5 <= len(words) <= 45 or not _specific(sentence[:s] + sentence[e:]):
        return None
    return q + "?"


def _after_a_function_word(before: str) -> bool:
    """Whether a wh-phrase may follow `before`: at the start, after punctuation ("charset=", "(") or after
    a function word that is no determiner ("in", "to", "is"); not after "the", "every" or an adjective."""
    m = re.search(r"([A-Za-z]+)\s+$", before)
    return not m or (m.group(1).lower() in STOPWORDS and m.group(1).lower() not in _DETERMINERS)


def _specific(rest: str) -> bool:
    """Whether the words a question keeps besides its wh-phrase can single out one chunk: three content
    words, one of them not common English (a term, a name, an identifier). "Go back to which step and
    continue working?" or "Here is an illustration, by who?" fit any of hundreds of chunks, which
    makes them a poor training pair for the retriever and a vague one for the LLM. Judged by English
    word frequencies: a word of another language counts as rare, and CJK text (runs, not words) passes."""
    if cjk_count(rest):
        return True
    content = [w.lower() for w in _TERM.findall(rest) if w.lower() not in STOPWORDS]
    return len(content) >= 3 and any(zipf(w) < _SPECIFIC_ZIPF for w in content)


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
