"""Evaluation's one home: the metrics every evaluation scores with, and the stored evaluations.

Everything that measures quality calls this module, and nothing else touches the `evaluations`
table:
  - retrieval metrics over ranked passages (`credit`, `ranking_metrics`, `mean_metrics`) and the
    paired comparison of two search modes (`paired_difference`, `compare_modes`);
  - answer metrics over answer texts (`normalize`, `contains_answer`, `token_f1`, `supports`,
    `score_answer`, `answer_metrics`), shared by `archivist eval answers`
    (archivist.retrieval.evaluate) and the fine-tuning's base-against-adapter check
    (archivist.finetune.evaluate). Citation marks are read with retrieval.answer's
    `parse_citations`, the parser the answers themselves are checked with;
  - stored evaluations (`store_evaluation`, `list_evaluations`, `get_evaluation`, `erase_text`) as
    `Evaluation` records, kept in retrieval/evaluation_store.py (the part that holds workspace state
    and access rules; the metrics here are pure functions) and imported here, so callers import one
    module. Each belongs to the user who ran it: a member reads only their own, an admin all
    (the questions, gold answers and cited documents of a set can be as secret as the documents).

The runners that produce results stay with their stage: retrieval/evaluate.py searches and asks a
workspace, finetune/evaluate.py generates with a base and an adapter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from archivist.retrieval.evaluation_store import (KINDS, WITHHELD_ADAPTER, Evaluation, erase_text,  # noqa: F401
                                                   get_evaluation, list_evaluations, store_evaluation)
from archivist.retrieval.verify import parse_citations

DEFAULT_KS = (1, 5, 10)


# -- retrieval metrics (pure) --------------------------------------------------------------------


def matches(entry: str, document: str, chunk_id: int | str) -> bool:
    """Does a relevant entry name this passage? By chunk id, the full document name or its last part."""
    return entry == str(chunk_id) or entry == document or entry == document.rsplit("/", 1)[-1]


def credit(passages: Sequence[tuple[str, int | str]], relevant: Sequence[str]) -> list[str | None]:
    """For each ranked passage (document name, chunk id): the relevant entry it is the first find
    of, else None. A relevant entry is credited once, at its first passage."""
    found: set[str] = set()
    out: list[str | None] = []
    for document, chunk_id in passages:
        hit = next((e for e in relevant if e not in found and matches(e, document, chunk_id)), None)
        if hit is not None:
            found.add(hit)
        out.append(hit)
    return out


def distinct(relevant: Sequence[str]) -> list[str]:
    """The relevant entries, each item once: an entry repeated, or a document's last path part
    beside its full name ("gzip.txt" beside "man/gzip.txt"), names an item already listed. Counted
    twice, one document would need two passages to be found whole (recall 0.5 at its first passage)
    and a perfect ranking would score an nDCG below 1."""
    entries = list(dict.fromkeys(str(e) for e in relevant))
    return [e for e in entries if not any(f != e and f.rsplit("/", 1)[-1] == e for f in entries)]


def ranking_metrics(credited: Sequence[str | None], n_relevant: int, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Metrics of one ranked list. `credited[i]` is the relevant entry first found at rank i+1 (or None).

    hit@k: 1 if any relevant entry is in the top k.   recall@k: share of relevant entries in the top k.
    mrr@K: 1/rank of the first relevant passage within the largest k K, else 0.
    ndcg@K: binary gains, DCG = sum 1/log2(rank+1), over the ideal DCG of min(n_relevant, K) finds.
    Raises ValueError when n_relevant < 1.
    """
    if n_relevant <= 0:
        raise ValueError("a question needs at least one relevant entry")
    K = max(ks)
    ranks = [i + 1 for i, c in enumerate(credited[:K]) if c is not None]
    out: dict[str, float] = {}
    for k in ks:
        out[f"hit@{k}"] = 1.0 if any(r <= k for r in ranks) else 0.0
    out[f"mrr@{K}"] = 1.0 / ranks[0] if ranks else 0.0
    dcg = sum(1.0 / math.log2(r + 1) for r in ranks)
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(n_relevant, K) + 1))
    out[f"ndcg@{K}"] = dcg / ideal
    for k in ks:
        if k > 1:
            out[f"recall@{k}"] = sum(1 for r in ranks if r <= k) / n_relevant
    return out


def mean_metrics(per_query: Iterable[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over queries (keys of the first query), rounded to 4 places."""
    rows = list(per_query)
    if not rows:
        return {}
    return {key: round(sum(r[key] for r in rows) / len(rows), 4) for key in rows[0]}


def evaluate_rankings(rankings: dict[str, list[str]], relevant: dict[str, Sequence[str]],
                      ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """The sentence-transformers-style entry point over plain dicts: query id -> ranked ids
    (document names or chunk ids), query id -> relevant ids. Returns the mean metrics."""
    per = []
    for qid, rel in relevant.items():
        ranked, rel = rankings.get(qid, []), distinct(rel)
        per.append(ranking_metrics(credit([(r, r) for r in ranked], rel), len(rel), ks))
    return mean_metrics(per)


def paired_difference(a: Sequence[float], b: Sequence[float], resamples: int = 10_000, seed: int = 0,
                      level: float = 0.95, groups: Sequence | None = None) -> dict[str, float | int]:
    """How much better `a` is than `b` on the same questions (one value of a metric per question each):
    the mean of a - b, a paired bootstrap confidence interval of that mean (questions drawn with
    replacement, `resamples` times; percentile interval at `level`), and on how many questions `a`
    is better and worse. An interval whose low end is above 0 says the lead is not the luck of
    which questions were asked.

    groups: the group of each question (its document) when the questions were drawn by group, as a
    split by document draws them: then whole groups are drawn again (a cluster bootstrap), since
    questions of one document rise and fall together and drawing them one by one narrows the
    interval. The result then also has "groups", how many there were; with fewer than two the
    questions are drawn one by one (one group cannot show how much groups vary).
    Raises ValueError for lists of different or zero length."""
    import numpy as np

    if len(a) != len(b) or (groups is not None and len(groups) != len(a)):
        raise ValueError(f"paired values differ in length: {len(a)} and {len(b)}"
                         + (f" ({len(groups)} groups)" if groups is not None else ""))
    if not len(a):
        raise ValueError("no questions to compare")
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    keys = {g: i for i, g in enumerate(dict.fromkeys(groups))} if groups is not None else {}
    index = np.array([keys[g] for g in groups]) if len(keys) >= 2 else np.arange(len(d))
    sums, counts = np.bincount(index, weights=d), np.bincount(index).astype(np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):  # 1,000 resamples at a time: memory stays small on big sets
        n = min(1000, resamples - start)
        draw = rng.integers(0, len(sums), size=(n, len(sums)))
        means[start:start + n] = sums[draw].sum(axis=1) / counts[draw].sum(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"diff": round(float(d.mean()), 4), "low": round(float(low), 4), "high": round(float(high), 4),
            "better": int((d > 0).sum()), "worse": int((d < 0).sum()), "questions": len(d),
            **({"groups": len(keys)} if groups is not None else {})}


def compare_modes(per_query: Sequence[dict], a: str, b: str, metrics: Sequence[str] = ("hit@5", "mrr@10"),
                  **bootstrap) -> dict[str, dict]:
    """`paired_difference` of mode `a` over mode `b` for each metric, from `evaluate_retrieval`'s
    per-query rows (rows of several runs may be pooled)."""
    return {m: paired_difference([q[a][m] for q in per_query], [q[b][m] for q in per_query], **bootstrap)
            for m in metrics}


def hybrid_comparisons(per_query: Sequence[dict], modes: Iterable[str]) -> dict[str, dict]:
    """`compare_modes` of hybrid over dense and over lexical, for those of them in `modes`."""
    modes = set(modes)
    return {f"hybrid vs {other}": compare_modes(per_query, "hybrid", other)
            for other in ("dense", "lexical") if "hybrid" in modes and other in modes}


# -- answer metrics (pure) -----------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")  # letters and digits: any punctuation, ASCII or not, separates words
_ARTICLES = frozenset(("a", "an", "the"))


def normalize(text: str) -> str:
    """SQuAD's normalization: lower case, punctuation and articles removed, whitespace collapsed;
    punctuation separates words, so "10:00" and "10 00" agree."""
    return " ".join(w for w in _WORD.findall(text.lower()) if w not in _ARTICLES)


def strip_citations(text: str) -> str:
    """The answer without its citation marks ("20 weeks [1]." -> "20 weeks ."): a mark is not a word
    of the answer, and "[1]" must not match a gold answer of "1"."""
    spans = sorted({(start, end) for _, start, end in parse_citations(text)})
    out, pos = [], 0
    for start, end in spans:
        out.append(text[pos:start])
        pos = end
    return "".join(out) + text[pos:]


def cited_passages(text: str) -> frozenset[int]:
    """The passage numbers an answer cites: "[1, 3] ... [2]" gives {1, 2, 3}."""
    return frozenset(n for n, _, _ in parse_citations(text))


# A gold answer that is code is compared as written: normalizing "-n" to "n", "$0" to "0" or
# "./.valgrindrc" to "valgrindrc" would count any lone "n", "0 euros" or "~/.valgrindrc" as right,
# and "=" or "[...]" would normalize to nothing and never be right.
_LITERAL_START = ("-", "$", "%", "~", "./", "=")
_WRAPPING = "\"'`‘’“”«»()[]{}<>"
_TRAILING = ",;:!?."


def literal(gold: str) -> bool:
    """Whether a gold answer is code, compared token by token as written (`contains_answer`): one of
    its words starts with - $ % ~ ./ or =, or it has no word of two letters or digits."""
    return any(w.startswith(_LITERAL_START) for w in gold.split()) or not re.search(r"[^\W_]{2,}", gold)


def _token(word: str) -> str:
    """A whitespace-separated word without the quotes, brackets and sentence punctuation around it
    ("`--keep-index`." -> "--keep-index"); a word that is nothing else ("[...]", "...") stays whole."""
    t = word
    while True:
        u = t.strip(_WRAPPING).rstrip(_TRAILING)
        if u == t:
            return t or word
        t = u


def _same_token(word: str, gold: str) -> bool:
    """A text's token names a gold code token: the same, the option with a value ("--x=yes" for
    "--x"), or the value of an assignment ('CFLAGS="-mplt' for "-mplt")."""
    if word == gold or word.startswith(gold + "="):
        return True
    name, _, value = word.partition("=")
    return bool(name) and bool(value) and not gold.startswith(name) and _token(value) == gold


def contains_answer(gold: str, text: str) -> bool:
    """The gold answer appears in the text as whole words: normalized (`normalize`), or for a gold
    that is code (`literal`) as the same tokens in a row, case-sensitive ("-E" is not "-e"), an
    option's token also matching with a value after "=" ("--pages-as-heap" in "--pages-as-heap=yes"),
    and a value also as assigned ('-mips32r2 -mplt' in 'CFLAGS="-mips32r2 -mplt"')."""
    if literal(gold):
        g, t = [_token(w) for w in gold.split()], [_token(w) for w in text.split()]
        return bool(g) and any(all(_same_token(a, b) for a, b in zip(t[i:i + len(g)], g))
                               for i in range(len(t) - len(g) + 1))
    g, t = normalize(gold), normalize(text)
    return bool(g) and f" {g} " in f" {t} "


def token_f1(gold: str, text: str) -> float:
    """SQuAD token F1 between a gold answer and a prediction (0..1), over `normalize`d words."""
    g, p = normalize(gold).split(), normalize(text).split()
    if not g or not p:
        return float(g == p)
    left: dict[str, int] = {}
    for w in g:
        left[w] = left.get(w, 0) + 1
    same = 0
    for w in p:
        if left.get(w, 0) > 0:
            same += 1
            left[w] -= 1
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def supports(gold: str, passage: str, min_recall: float = 0.8) -> bool:
    """A passage supports a gold answer when it contains it, or holds at least `min_recall` of its
    words (so "EUR 1,500" is supported by "1,500 EUR per year")."""
    if contains_answer(gold, passage):
        return True
    if literal(gold):
        return False  # code is there as written, or not at all
    g = normalize(gold).split()
    have = set(normalize(passage).split())
    return bool(g) and sum(w in have for w in g) / len(g) >= min_recall


@dataclass(frozen=True)
class AnswerScore:
    """One generated answer against its gold answer. Citation marks are not part of the answer's words."""

    contained: bool  # the gold answer appears in the answer, as whole words
    f1: float  # token F1 of the answer against the gold
    cited: frozenset[int]  # the passage numbers the answer cites


def score_answer(gold: str, answer: str, alternatives: Sequence[str] = ()) -> AnswerScore:
    """Score one answer (citation marks removed) against its gold answer; it is contained when the
    gold or any of its alternative spellings is. F1 is against the best-matching spelling."""
    words = strip_citations(answer)
    golds = [gold, *alternatives]
    return AnswerScore(contained=any(contains_answer(g, words) for g in golds), f1=max(token_f1(g, words) for g in golds),
                       cited=cited_passages(answer))


@dataclass
class AnswerOutcome:
    """What one ask() gave, as plain data: the answer text, whether it refused, cited passage texts."""

    question: str
    gold: str | None
    answer: str
    not_found: bool
    cited: list[str] = field(default_factory=list)  # texts of the passages it cited
    cited_documents: list[str] = field(default_factory=list)
    seconds: float = 0.0
    alternatives: list[str] = field(default_factory=list)  # other spellings of the gold answer
    status: str = "answered"  # answered | uncertain | not_found, as the answer said
    mode: str = "generated"  # generated | extractive | not_found: what produced it
    confidence: float = 0.0
    key: str = ""  # the key span shown first, before the quote (Answer.key); "" when none is shown


def key_right(o: AnswerOutcome, score: AnswerScore | None = None) -> bool:
    """Whether what `o` shows first names the gold: its key span when it shows one (read strictly: a
    quote "aptitude — ... mark it with apt-mark auto ..." for gold "apt-mark auto" is wrong, though
    the sentence after the wrong span holds the gold), else its whole text (`score_answer`'s
    contained). False for an unanswerable question."""
    if o.gold is None:
        return False
    if o.key:
        return any(contains_answer(g, o.key) for g in [o.gold, *o.alternatives])
    return (score or score_answer(o.gold, o.answer, o.alternatives)).contained


def answer_metrics(outcomes: Sequence[AnswerOutcome]) -> dict[str, float | int]:
    """Aggregate answer quality.

    accuracy: share of answerable questions whose answer contains the gold answer.
    token_f1: mean SQuAD F1 over answerable questions (citation marks removed from the answers).
    citation_precision: share of citations (on answerable questions) whose passage supports the gold.
    refusal_rate: share of unanswerable questions answered with "not in the documents".
    false_refusal_rate: share of answerable questions refused.

    By the answer's status (what the user is told about how sure it is), over answerable questions:
    key_accuracy: status *answered* and what it shows first names the gold (a command, number,
    setting ...): its key span when it shows one, else its text (`key_right`).
    confident_miss_rate: status *answered* but wrong by the same reading: shown as an answer, and wrong.
    uncertain_rate / not_found_rate: status *uncertain* / *not_found*.
    And over unanswerable questions, unanswerable_not_found: status *not_found*.
    """
    answerable = [o for o in outcomes if o.gold is not None]
    unanswerable = [o for o in outcomes if o.gold is None]
    scores = [score_answer(o.gold, o.answer, o.alternatives) for o in answerable]
    cites = [(o.gold, c) for o in answerable for c in o.cited]
    out: dict[str, float | int] = {"questions": len(outcomes), "answerable": len(answerable),
                                   "unanswerable": len(unanswerable)}
    if answerable:
        out["accuracy"] = round(sum(s.contained for s in scores) / len(scores), 4)
        out["token_f1"] = round(sum(s.f1 for s in scores) / len(scores), 4)
        out["false_refusal_rate"] = round(sum(o.not_found for o in answerable) / len(answerable), 4)
        out["citations"] = len(cites)
        out["citation_precision"] = round(sum(supports(g, c) for g, c in cites) / len(cites), 4) if cites else 0.0
        answered = [key_right(o, s) for o, s in zip(answerable, scores) if o.status == "answered"]
        out["key_accuracy"] = round(sum(answered) / len(answerable), 4)
        out["confident_miss_rate"] = round(sum(not c for c in answered) / len(answerable), 4)
        out["uncertain_rate"] = round(sum(o.status == "uncertain" for o in answerable) / len(answerable), 4)
        out["not_found_rate"] = round(sum(o.status == "not_found" for o in answerable) / len(answerable), 4)
    if unanswerable:
        out["refusal_rate"] = round(sum(o.not_found for o in unanswerable) / len(unanswerable), 4)
        out["unanswerable_not_found"] = round(sum(o.status == "not_found" for o in unanswerable) / len(unanswerable), 4)
    if outcomes:
        out["seconds_per_question"] = round(sum(o.seconds for o in outcomes) / len(outcomes), 3)
    return out


ANSWER_SCORES = ("accuracy", "key_accuracy", "token_f1")


def answer_scores(rows: Sequence[dict]) -> dict[str, list[float]]:
    """Each answerable question's score, from an answers run's `per_question` rows (as stored):
    accuracy (1 when the answer holds the gold), key_accuracy (1 when it has the status *answered*
    and what it shows first names the gold: `key_right`, stored as "key_right"; a run stored before
    that, by its text) and token_f1, in the rows' order; `answer_metrics`' means are their means. A
    run stored before answers had a status gives no key_accuracy."""
    rows = [r for r in rows if r.get("gold") is not None]
    out = {"accuracy": [float(bool(r.get("contains_gold"))) for r in rows],
           "key_accuracy": [float(r.get("status") == "answered" and bool(r.get("key_right", r.get("contains_gold"))))
                            for r in rows],
           "token_f1": [float(r.get("token_f1") or 0.0) for r in rows]}
    if not all("status" in r for r in rows):
        del out["key_accuracy"]
    return out


def answer_intervals(rows: Sequence[dict], **bootstrap) -> dict[str, dict]:
    """{metric: {"low", "high", "questions"}} for `answer_scores`: the bootstrap interval of the mean
    over the answerable questions (drawn again with replacement, as in `paired_difference`, seed 0);
    the mean itself is `answer_metrics`' (from unrounded F1s, where the rows' are rounded). {} without
    answerable questions."""
    out = {}
    for metric, values in answer_scores(rows).items():
        if values:
            d = paired_difference(values, [0.0] * len(values), **bootstrap)
            out[metric] = {"low": d["low"], "high": d["high"], "questions": d["questions"]}
    return out


def different_questions(rows: Sequence[dict], earlier: Sequence[dict]) -> str | None:
    """Why two answers runs cannot be compared question by question (None when they can): they must
    ask the same questions with the same gold answers, in the same order."""
    now = [(r.get("question"), r.get("gold")) for r in rows]
    then = [(r.get("question"), r.get("gold")) for r in earlier]
    if len(now) != len(then):
        return f"{len(now)} questions against {len(then)}"
    for i, (a, b) in enumerate(zip(now, then), start=1):
        if a != b:
            what = "gold answer" if a[0] == b[0] else "question"
            return f"question {i} differs in its {what} ({a[0]!r}, gold {a[1]!r} against {b[0]!r}, gold {b[1]!r})"
    return None


def compare_answer_runs(rows: Sequence[dict], earlier: Sequence[dict], **bootstrap) -> dict[str, dict]:
    """`paired_difference` of each of `answer_scores` of one answers run over an earlier run of the
    same questions (base against an adapter, before against after a change): the per-question
    scores are paired, so the interval says whether the change is more than which questions were
    asked. {} when no question is answerable. Raises ValueError naming how the runs' questions differ."""
    why = different_questions(rows, earlier)
    if why:
        raise ValueError(f"the runs asked different questions: {why}")
    now, then = answer_scores(rows), answer_scores(earlier)
    return {m: paired_difference(now[m], then[m], **bootstrap) for m in ANSWER_SCORES
            if m in now and m in then and now[m]}


# -- text output -----------------------------------------------------------------------------------


def format_comparison(name: str, comparison: dict[str, dict]) -> str:
    """One line: `hybrid vs dense: hit@5 +0.0080 (95% CI +0.0000..+0.0180; better on 5, worse on 1), ...`."""
    return f"{name}: " + ", ".join(
        f"{m} {c['diff']:+.4f} (95% CI {c['low']:+.4f}..{c['high']:+.4f}; better on {c['better']}, worse on {c['worse']})"
        for m, c in comparison.items())


def format_intervals(intervals: dict[str, dict]) -> str:
    """One line: `95% CI over the questions: accuracy 0.2500..1.0000, ...` (`answer_intervals`)."""
    return "95% CI over the questions: " + ", ".join(f"{m} {c['low']:.4f}..{c['high']:.4f}" for m, c in intervals.items())


def format_table(rows: dict[str, dict], columns: Sequence[str] | None = None, first: str = "mode") -> str:
    """A fixed-width text table: one row per key of `rows`, one column per metric."""
    if not rows:
        return "(no results)"
    columns = list(columns or next(iter(rows.values())).keys())
    width = max(len(first), *(len(r) for r in rows))
    wide = {c: max(10, len(c)) for c in columns}  # a long name widens its column: values stay under their names
    head = f"{first:<{width}}  " + "  ".join(f"{c:>{wide[c]}}" for c in columns)
    lines = [head, "-" * len(head)]
    for name, values in rows.items():
        cells = []
        for c in columns:
            v = values.get(c)
            cells.append(f"{v:>{wide[c]}.4f}" if isinstance(v, float) else f"{'' if v is None else v:>{wide[c]}}")
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)
