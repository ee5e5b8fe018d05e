"""Answers without generation: quote the sentence of the passages that answers the question.

A small model cannot be trusted to write the answer, but the passages usually hold it in one
sentence, a table row, a heading ("TRUNCATE — empty a table or set of tables") or a code line. Each
candidate is scored by how close it is to the question (embedding cosine and the share of the
question's content words it holds), by how well its passage's heading matches the question, and by
whether it has what the question asks for:

    which command / option / function / file / how do I  → something code-like
    what default                                           → the word "default" (or "by default")
    how many / how much / how long / when / which port     → a number
    what is X / what does X mean                           → a definition of X ("X is ...")

The weights are chosen on the tuning splits of the public answer sets (bench/answers.py), never on
the held-out splits. `confidence` is the winning candidate's score; the threshold between an
*answered* and an *uncertain* quote is Settings.quote_confidence, calibrated the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from archivist.records import Hit
from archivist.retrieval import verify
from archivist.retrieval.folding import cjk_count


@dataclass(frozen=True)
class Weights:
    # chosen by bench/tune_quote.py --grid on the tuning splits of the public sets (gold in the quote
    # 0.432 with the first guesses, 1/0.5/0.3/0.25/0.05, to 0.516 over 277 answerable questions)
    cosine: float = 0.5  # embedding similarity of question and candidate
    overlap: float = 0.5  # share of the question's content words in the candidate
    heading: float = 0.3  # share of the question's content words in the passage's heading path
    kind: float = 0.1  # the candidate has what the question type asks for
    rank: float = 0.05  # per place the passage stands below the first
    second: float = 0.9  # a second sentence is quoted when it scores this share of the first


DEFAULT = Weights()

_CODE_Q = re.compile(r"\b(command|commands|option|options|flag|flags|function|functions|method|methods|class|module|"
                     r"setting|settings|variable|parameter|argument|syntax|file|directory|path|key|configure|"
                     r"how (do|can|would|should) (i|you|we|one)|how to|which tool|what tool|run|invoke|call)\b", re.I)
_DEFAULT_Q = re.compile(r"\bdefault(s|ed)?\b|\bby default\b|\bunless\b", re.I)
_NUMBER_Q = re.compile(r"\b(how (many|much|long|often|big|large|old)|when|what (year|date|time|port|size|version|limit)|"
                       r"which (year|port|version)|maximum|minimum|limit|number of)\b", re.I)
_DEFINE_Q = re.compile(r"^\W*(what|who)\s+(is|are|was|were)\s+(an?\s+|the\s+)?(?P<x>[^?]{2,60}?)\s*\??$|"
                       r"what does (?P<y>[^?]{2,60}?) (mean|stand for|do)\s*\??$", re.I)


@dataclass
class Quote:
    text: str  # the quote with its citation marks, "sentence [n] sentence [m]"
    confidence: float
    picked: list[tuple[int, str]]  # (passage number, sentence)


def question_kind(question: str) -> str:
    """"define", "number", "default", "code" or "other": what the question asks for."""
    if _DEFINE_Q.search(question.strip()):
        return "define"
    if _DEFAULT_Q.search(question):
        return "default"
    if _NUMBER_Q.search(question):
        return "number"
    if _CODE_Q.search(question):
        return "code"
    return "other"


def _has_kind(kind: str, sentence: str, question: str) -> bool:
    if kind == "code":  # something code-like the question does not already name: the answer, likely
        asked = set(re.findall(r"\w+", question.lower()))
        return any(k == "identifier" and not set(re.findall(r"\w+", t.lower())) <= asked
                   for k, t in verify.asserted_terms(sentence))
    if kind == "default":
        return bool(re.search(r"\bdefault", sentence, re.I))
    if kind == "number":
        return bool(re.search(r"\d", sentence))
    if kind == "define":
        m = _DEFINE_Q.search(question.strip())
        x = (m.group("x") or m.group("y") or "").strip().lower()
        s = sentence.lower()
        return bool(x) and (s.startswith(x) or f"{x} is" in s or f"{x} are" in s or f"{x} means" in s
                            or f"{x} —" in s or f"{x} -" in s)
    return False


TERM_WORDS = 8  # a definition's term ("--aggressive", "os.path.join(path, *paths)") is a short line
JOIN = " — "  # between a definition's term and a sentence of its description, in a quote


def quoted(sentence: str) -> str:
    """A passage's sentence as an answer quotes it, before its own [n] is added: without the bracketed
    numbers the document itself wrote ("52 weeks [2].", "weeks.[2]"), which in the answer would read as
    citations of other passages (a document could make its claim look backed by another reader's
    document). A bracket glued to code is an index, not a citation, and stays: `sys.argv[0]`, `a[1]`
(`verify.citation_marks`)."""
    return verify.replace_marks(sentence)  # the marks the answer's parser would read, no other


def _term(line: str) -> bool:
    """A line that names what the lines after it describe: short, not a sentence, code-like, not a
    link (the handbook's "→ https://kde.org/" closes the paragraph before it), not a clause of prose
    that leads into a code line ("So, typically, your ~/.bash_profile contains the line" before
    "if [ -f ~/.bashrc ]; then . ~/.bashrc; fi" in the GNU Bash manual: a capital first, then mostly
    common English words; a comment "# Create a new branch" or an option "--long always use long
    format" stays a term)."""
    words = line.split()
    return 0 < len(words) <= TERM_WORDS and not line.rstrip().endswith((".", "?", "!")) \
        and not line.lstrip("→ ").startswith(("http://", "https://")) \
        and not (line[0].isupper() and _mostly_english(words)) \
        and any(k == "identifier" for k, _ in verify.asserted_terms(line))


# A command as typed at a prompt ("$ git restore --staged --worktree :/", "alice$ git pull", ">>> pair.match(s)",
# the Debian Handbook's root prompt "# journalctl -u ssh.service"), or an example's or a figure's caption
# ("Example 7.1. Finding cp with apropos", "Figure 13.1. The GNOME desktop")
_PROMPT = re.compile(r"^(?:[\w.@-]*[$%]|>>>|#(?= [a-z][\w.+-]* [-/]))\s")
_CAPTION = re.compile(r"^(?:Example|Figure|Table|Listing)\s+\d+(?:\.\d+)*\.?\s")
# words that end no sentence: a line of prose that ends in one goes on into the next line (`_runs_on`)
_LEADS_IN = frozenset("a an and as at by for from in into like of on or than the to via with".split())


def _example(line: str, before: str) -> bool:
    """Whether a term-like line (`_term`) is an example that the text shows, not a term that the lines
    after it define: a command at a prompt or a caption (the lines after it are its output or the
    text going on), or a line that the prose line `before` it runs into (`_runs_on`). Taken as a
    term, it labelled every sentence after it ("$ git restore --staged --worktree :/ — You can
    create a new commit ...", git's user manual)."""
    return bool(_PROMPT.match(line) or _CAPTION.match(line)) or _runs_on(before)


def _runs_on(line: str) -> bool:
    """Whether a line of prose goes on into the line after it: it ends in a word such as "with", "to",
    "the" ("... you can return the entire working tree to the last committed state with", before
    "$ git restore --staged --worktree :/"). A description without a final mark ("Show the whole
    commit history, but skip any merges") ends where it stops."""
    last = re.search(r"(\w+)$", line)
    return last is not None and last.group(1).lower() in _LEADS_IN and _mostly_english(line.split())


def _mostly_english(words: list[str]) -> bool:
    """At least four common English words, and more than half: prose, not a term (`_term`)."""
    plain = (w.strip(",;()").lower() for w in words)
    english = sum(1 for w in plain if w.isascii() and w.isalpha() and verify.zipf(w) >= 4)
    return english >= 4 and 2 * english > len(words)


# A boxed sidebar's or admonition's title: a label in capitals, then the title ("BACK TO BASICS Quota",
# "VOCABULARY Blocks and inodes", "TIP whatis", "CULTURE DNSSEC" in DocBook books such as the Debian Handbook).
_CAPITALS = re.compile(r"[A-Z]{2,}[A-Z'’-]*")
_NOT_TITLE = re.compile(r"[;{}=]| :|\w\(|\S{24}")  # table rows ("IDL Type: int; ..."), code, values ("MAC Address : 00:16")


def _english_capitals(word: str) -> bool:
    return _CAPITALS.fullmatch(word) is not None and verify.zipf(word.lower()) >= 2.5


def _box_title(line: str) -> bool:
    """A line that titles a box of text: short, not a sentence, a label of English words in
    capitals ("GOING FURTHER", not a file's keyword such as "MAILADDR root"), then a title. It is
    neither a definition's term (its capitals read as code to verify.asserted_terms) nor an answer,
    and the text after it does not describe a term before it."""
    words = line.split()
    if len(words) > 2 * TERM_WORDS or line.rstrip().endswith((".", "!", ":")):
        return False
    n = 0
    while n < len(words) and _english_capitals(words[n]):
        n += 1
    if any(len(w) >= 3 for w in words[:n]) and _title(words[n:]):
        return True
    # a shorter label when the title starts with an acronym that reads as English: "NOTE" + "NSS and DNS",
    # "BACK TO BASICS" + "RFC — Internet standards"; not SQL ("INSERT" + "INTO movie VALUES")
    for k in range(n - 1, 0, -1):
        if any(len(w) >= 3 for w in words[:k]) and verify.zipf(words[k].lower()) < 4.0 \
                and re.search(r"[a-z]", " ".join(words[k:])) and _title(words[k:]):
            return True
    return False


def _title(words: list[str]) -> bool:
    """Whether the words after a label read as a box's title, not as code, a table row or a value."""
    title = " ".join(words)
    if not title or _NOT_TITLE.search(title) or not (title[0].isalpha() or (title[0] == "/" and len(words) > 1)):
        return False
    if all(_english_capitals(w) for w in words):  # "PORT STATE SERVICE", "SEE ALSO": no label to tell apart
        return False
    # "TIP whatis", but not a line of code: "SELECT name FROM users"
    return not title[0].islower() or not re.search(r"\b[A-Z]{2,}\b", title)


def _units(text: str, headings: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(term, sentence) for every sentence of a passage; term is the definition it belongs to
    (manual pages and API references: a term line, then its description) or "". A line that is
    one of the passage's `headings` or a box's title (see _box_title) ends a definition and is no
    sentence of its own: the heading is the source's label (and its own candidate, see candidates).
    A sentence that the passage's start or end cuts (`_cut_start`, `_cut`) is marked with CUT there;
    one that runs on into a code line (`_runs_on`) ends with it."""
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n|\n", text) if p.strip()]
    titles = {" ".join(h.split()) for h in headings}
    out, term = [], ""
    for i, para in enumerate(paras):
        if para in titles or _box_title(para):
            term = ""
            continue
        nxt = paras[i + 1] if i + 1 < len(paras) else ""
        if _term(para) and len(nxt.split()) >= 5 and not _term(nxt) and not _example(para, paras[i - 1] if i else ""):
            term = para
            continue
        if _term(para):
            term = ""
        spans = verify.sentences(para)
        for a, b in spans:
            out.append((term, para[a:b].strip()))
        if i == 0 and out and not term and _cut_start(out[0][1]):  # the first line, not one after the heading
            out[0] = ("", CUT + out[0][1])
        if spans and _term(nxt) and _runs_on(para):  # the sentence ends in the code line: quoted with it
            out[-1] = (out[-1][0], f"{out[-1][1]} {nxt}")
        if i == len(paras) - 1 and _cut([para[a:b].strip() for a, b in spans]):
            out[-1] = (term, out[-1][1] + CUT)
    return out


CUT = "…"  # where a passage's start or end cuts a sentence: what the user reads is not the whole sentence
_OPEN_END = re.compile(r"(?<![\w'’./$=@-])[A-Za-z][\w'’-]*,?$")  # a plain word last: no closing mark, no code


def _cut(sents: list[str]) -> bool:
    """Whether the last sentence of a passage's last line is cut by the chunk's end (a page's foot, or
    a chunk cut at a word: ingest/chunking.py), so that it must be shown with CUT: a later sentence of
    a prose line (after one of at least three words) that ends in a plain word. A line that is one
    sentence (a title, a list item, a code line) ends as written; the GNU Bash manual's PDF cuts "If a
    compound command or shell function sets -e while executing" at a page's foot."""
    return len(sents) > 1 and len(sents[-2].split()) >= 3 and len(sents[-1].split()) >= 3 \
        and _OPEN_END.search(sents[-1]) is not None


_OPEN_START = re.compile(r"([a-z]+),? [^A-Z]")  # not a term and its description: "case The syntax of ..."


def _cut_start(sentence: str) -> bool:
    """Whether a passage's first sentence starts inside a sentence: a chunk overlaps the one before it
    by stepping back to a word, or starts on the page after the sentence's start (ingest/chunking.py).
    Prose of at least five words that starts with a common lowercase word and ends as a sentence does
    ("in a context where -e is ignored, that setting will not have any effect until ... completes.",
    the GNU Bash manual's PDF); a code line ("for i in range(3): print(i)") ends otherwise."""
    m = _OPEN_START.match(sentence)
    return m is not None and verify.zipf(m.group(1)) >= 3 and len(sentence.split()) >= 5 \
        and re.search(r"[.?!][\"'”’)]?$", sentence) is not None and not _defined_inline(sentence)


# A term and its description on one line, as a PDF's definition list reads: the term, then its
# synopsis starting with the same word, or a few lowercase words, then a capital that opens the
# description (the GNU Bash manual: "break break [n] Exit from a for, while, until, or select loop.",
# "process group A collection of related processes ...", "set variable value Here, for example, ...")
_REPEATED = re.compile(r"([a-z][\w-]*) \1\b")
_OPENS = re.compile(r"((?:[a-z][\w-]* ){1,3})(A|[A-Z][a-z]+),? [a-z]")


def _defined_inline(sentence: str) -> bool:
    """Whether a sentence that starts with a lowercase word is a term and its description (see
    _REPEATED, _OPENS), whole, not the end of a sentence that the passage's start cuts: the term has
    no function word ("most one of A and B" goes on) and the capital is a common word ("A", "Here";
    not "Git" in "files in Git are"), so a sentence starts there."""
    m = _OPENS.match(sentence)
    return _REPEATED.match(sentence) is not None or m is not None and verify.zipf(m.group(2).lower()) >= 5 \
        and not any(w in verify.FUNCTION_WORDS for w in m.group(1).split())


# A name and what it is, in a title: "git-stash - Stash the changes", "os.path — Common pathname manipulations".
_DESCRIBED = re.compile(r"\s[—–-]\s")


def _names(heading: str) -> bool:
    """Whether a heading can answer a question by itself: it names something code-like (a command, a
    file, a module: "8.4.1. User List: /etc/passwd") or a name and what it is ("TRUNCATE — empty a
    table"). A section's title in words ("9.8. Scheduling Asynchronous Tasks: anacron") opens its
    passage and shares the question's words, so it outscored the sentence under it that answers;
    it is the source's label, shown as such, and no answer. On the tuning splits (extractive) this
    changed one quote of 310, from such a title to the sentence naming the answer, and no status."""
    return bool(_DESCRIBED.search(heading)) or any(k == "identifier" for k, _ in verify.asserted_terms(heading))


def words(text: str) -> int:
    """How many words `text` has: its whitespace-separated pieces, and one more for every two Chinese or
    Japanese characters (written without spaces, a sentence of them is one piece)."""
    return len(text.split()) + cjk_count(text) // 2


def candidates(passages: Sequence[Hit]) -> list[tuple[int, str, str]]:
    """(passage number, quotable text, heading text) for every quotable unit: the last heading of
    each passage when it names something (`_names`, e.g. "git-stash - Stash the changes"), every sentence of
    at least three words, and every line of a table or code block. A sentence of a definition's
    description comes with its term: "--aggressive — This option will cause git gc to ..." (both
    parts are the passage's own words)."""
    out = []
    for n, h in enumerate(passages, start=1):
        head = " > ".join(h.heading)
        if h.heading and words(h.heading[-1]) >= 3 and _names(h.heading[-1]):
            out.append((n, h.heading[-1].strip(), head))
        for term, sent in _units(h.text, h.heading):
            if words(sent) >= 3 or verify.asserted_terms(sent):
                out.append((n, f"{term}{JOIN}{sent}" if term else sent, head))
    return out


def _is_heading(cand: tuple[int, str, str], passages: Sequence[Hit]) -> bool:
    heading = passages[cand[0] - 1].heading
    return bool(heading) and cand[1] == heading[-1].strip()


def score(question: str, cands: Sequence[tuple[int, str, str]], embedder, weights: Weights = DEFAULT) -> np.ndarray:
    """How well each candidate (passage number, sentence, heading path) answers the question."""
    vecs = embedder.embed([question] + [c[1] for c in cands])
    cos = vecs[1:] @ vecs[0]
    qstems = set(verify.content_stems(question))
    kind = question_kind(question)

    def share(text: str) -> float:
        return len(qstems & set(verify.content_stems(text))) / len(qstems) if qstems else 0.0

    heads = {h: share(h) for _, _, h in cands}
    return np.array([
        weights.cosine * float(cos[i]) + weights.overlap * share(s) + weights.heading * heads[h]
        + weights.kind * _has_kind(kind, s, question) - weights.rank * (n - 1)
        for i, (n, s, h) in enumerate(cands)])


def quote(question: str, passages: Sequence[Hit], embedder, *, weights: Weights = DEFAULT,
          max_sentences: int = 2, follow_up: str | None = None) -> Quote | None:
    """The best-answering sentence(s) of `passages`, cited [n], with the score of the first; None
    when the passages have nothing quotable.

    follow_up: the question as the user asked it, when `question` is its standalone form (words of
    the previous turn added for retrieval); candidates are then scored by the mean over both, so the
    added words do not pull the quote back to what the previous answer already said."""
    cands = candidates(passages)
    if not cands:
        return None
    scores = score(question, cands, embedder, weights)
    if follow_up and follow_up != question:
        scores = (scores + score(follow_up, cands, embedder, weights)) / 2
    order = np.argsort(-scores, kind="stable")
    first = int(order[0])
    picked = [first]
    for i in order[1:max_sentences * 4]:
        i = int(i)
        if len(picked) >= max_sentences or scores[i] < weights.second * scores[first]:
            break
        if cands[i][1] != cands[first][1] and cands[i][0] == cands[first][0] \
                and not _is_heading(cands[i], passages) and not _is_heading(cands[first], passages):
            picked.append(i)  # a second sentence of the same passage; a heading only ever answers alone
    picked.sort()
    text = " ".join(f"{quoted(cands[i][1])} [{cands[i][0]}]" for i in picked)
    return Quote(text=text, confidence=round(float(scores[first]), 4), picked=[(cands[i][0], cands[i][1]) for i in picked])
