"""Quality measured, not claimed: retrieval metrics and answer metrics over JSONL question sets.

Two layers, as in sentence-transformers' InformationRetrievalEvaluator:
  - pure functions over plain data (`ranking_metrics`, `token_f1`, ...) that tests check against
    hand-computed values;
  - runners (`evaluate_retrieval`, `evaluate_answers`) that search or ask a real workspace, turn
    what came back into plain data, and call the pure functions.

Retrieval ranks are passage ranks: the passages a prompt would receive, best first. A passage is
relevant when it matches an entry of the question's `relevant` list (a document name, matched
exactly or by its last path part, or a chunk id); each relevant entry is credited once, at its
first passage, so five passages of one relevant document do not count as five finds.

Question sets are JSONL:
  retrieval: {"question": str, "relevant": [document name or chunk id, ...]}
  answers:   {"question": str, "answer": str | null}   (null: the documents do not answer it)
Results are stored in the workspace's `evaluations` table for the UI's evaluation page.
"""

from __future__ import annotations

import json
import math
import re
import string
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_KS = (1, 5, 10)
MODES = ("dense", "lexical", "hybrid", "hybrid+rerank")


class EvalSetError(ValueError):
    """A question set that cannot be used: missing file, bad JSON, missing fields (names the line)."""


@dataclass
class Question:
    question: str
    relevant: list[str] = field(default_factory=list)
    answer: str | None = None
    answerable: bool = True
    line: int = 0
    extra: dict = field(default_factory=dict)


# -- question sets -------------------------------------------------------------------------------


def load_set(path: str | Path, kind: str) -> list[Question]:
    """Read a JSONL question set. kind: "retrieval" (needs `relevant`) or "answers" (needs `answer`,
    which may be null for an unanswerable question). Blank lines and lines starting with # are skipped.
    Raises EvalSetError naming the file and line."""
    p = Path(path)
    if not p.is_file():
        raise EvalSetError(f"{p}: no such question set")
    out = []
    for n, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        raw = raw.strip()
        if not raw or raw.startswith("#"):
            continue
        try:
            obj = json.loads(raw)
        except ValueError as e:
            raise EvalSetError(f"{p}:{n}: not JSON ({e})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("question"), str) or not obj["question"].strip():
            raise EvalSetError(f"{p}:{n}: needs a non-empty \"question\" string")
        q = Question(question=obj["question"].strip(), line=n,
                     extra={k: v for k, v in obj.items() if k not in ("question", "relevant", "answer")})
        if kind == "retrieval":
            rel = obj.get("relevant")
            if rel is None and isinstance(obj.get("document"), str):  # samples/QUESTIONS.jsonl style
                rel = [obj["document"]]
            if isinstance(rel, (str, int)):
                rel = [rel]
            if not rel and "answer" in obj and obj["answer"] is None:
                continue  # an unanswerable question (of an answers set): nothing to retrieve
            if not rel or not all(isinstance(r, (str, int)) for r in rel):
                raise EvalSetError(f"{p}:{n}: needs \"relevant\": a non-empty list of document names or chunk ids")
            q.relevant = [str(r) for r in rel]
        elif kind == "answers":
            if "answer" not in obj:
                raise EvalSetError(f"{p}:{n}: needs \"answer\" (a string, or null when the documents do not answer it)")
            ans = obj["answer"]
            if ans is not None and not isinstance(ans, (str, int, float)):
                raise EvalSetError(f"{p}:{n}: \"answer\" must be a string or null")
            q.answer = None if ans is None else str(ans)
            q.answerable = ans is not None
            rel = obj.get("relevant", obj.get("document"))
            q.relevant = [str(r) for r in ([rel] if isinstance(rel, (str, int)) else rel or [])]
        else:
            raise ValueError(f"kind must be retrieval or answers, got {kind!r}")
        out.append(q)
    if not out:
        raise EvalSetError(f"{p}: no questions in the set")
    return out


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


def ranking_metrics(credited: Sequence[str | None], n_relevant: int, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Metrics of one ranked list. `credited[i]` is the relevant entry first found at rank i+1 (or None).

    hit@k: 1 if any relevant entry is in the top k.   recall@k: share of relevant entries in the top k.
    mrr@K: 1/rank of the first relevant passage within the largest k K, else 0.
    ndcg@K: binary gains, DCG = sum 1/log2(rank+1), over the ideal DCG of min(n_relevant, K) finds.
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


def paired_difference(a: Sequence[float], b: Sequence[float], resamples: int = 10_000, seed: int = 0,
                      level: float = 0.95) -> dict[str, float | int]:
    """How much better `a` is than `b` on the same questions (one value of a metric per question each):
    the mean of a - b, a paired bootstrap confidence interval of that mean (questions drawn with
    replacement, `resamples` times; percentile interval at `level`), and on how many questions `a`
    is better and worse. An interval whose low end is above 0 says the lead is not the luck of
    which questions were asked."""
    import numpy as np

    if len(a) != len(b):
        raise ValueError(f"paired values differ in length: {len(a)} and {len(b)}")
    if not len(a):
        raise ValueError("no questions to compare")
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):  # 1,000 resamples at a time: memory stays small on big sets
        n = min(1000, resamples - start)
        means[start:start + n] = d[rng.integers(0, len(d), size=(n, len(d)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"diff": round(float(d.mean()), 4), "low": round(float(low), 4), "high": round(float(high), 4),
            "better": int((d > 0).sum()), "worse": int((d < 0).sum()), "questions": len(d)}


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


def format_comparison(name: str, comparison: dict[str, dict]) -> str:
    """One line: `hybrid vs dense: hit@5 +0.0080 (95% CI +0.0000..+0.0180; better on 5, worse on 1), ...`."""
    return f"{name}: " + ", ".join(
        f"{m} {c['diff']:+.4f} (95% CI {c['low']:+.4f}..{c['high']:+.4f}; better on {c['better']}, worse on {c['worse']})"
        for m, c in comparison.items())


def evaluate_rankings(rankings: dict[str, list[str]], relevant: dict[str, Sequence[str]],
                      ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """The sentence-transformers-style entry point over plain dicts: query id -> ranked ids
    (document names or chunk ids), query id -> relevant ids. Returns the mean metrics."""
    per = []
    for qid, rel in relevant.items():
        ranked = rankings.get(qid, [])
        per.append(ranking_metrics(credit([(r, r) for r in ranked], list(rel)), len(set(rel)), ks))
    return mean_metrics(per)


# -- answer metrics (pure) -----------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalize(text: str) -> str:
    """Lower case, punctuation and articles removed, whitespace collapsed (SQuAD's normalization,
    except that punctuation becomes a space so "10:00" and "10 00" agree)."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


def contains_answer(gold: str, text: str) -> bool:
    """The normalized gold answer appears in the normalized text as whole words."""
    g, t = normalize(gold), normalize(text)
    return bool(g) and f" {g} " in f" {t} "


def token_f1(gold: str, text: str) -> float:
    """SQuAD token F1 between a gold answer and a prediction (0..1)."""
    g, p = normalize(gold).split(), normalize(text).split()
    if not g or not p:
        return float(g == p)
    common: dict[str, int] = {}
    for w in g:
        common[w] = common.get(w, 0) + 1
    same = 0
    for w in p:
        if common.get(w, 0) > 0:
            same += 1
            common[w] -= 1
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def supports(gold: str, passage: str, min_recall: float = 0.8) -> bool:
    """A passage supports a gold answer when it contains it, or holds at least `min_recall` of its
    words (so "EUR 1,500" is supported by "1,500 EUR per year")."""
    if contains_answer(gold, passage):
        return True
    g = normalize(gold).split()
    have = set(normalize(passage).split())
    return bool(g) and sum(w in have for w in g) / len(g) >= min_recall


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


def answer_metrics(outcomes: Sequence[AnswerOutcome]) -> dict[str, float | int]:
    """Aggregate answer quality.

    accuracy: share of answerable questions whose answer contains the gold answer.
    token_f1: mean SQuAD F1 over answerable questions.
    citation_precision: share of citations (on answerable questions) whose passage supports the gold.
    refusal_rate: share of unanswerable questions answered with "not in the documents".
    false_refusal_rate: share of answerable questions refused.
    """
    answerable = [o for o in outcomes if o.gold is not None]
    unanswerable = [o for o in outcomes if o.gold is None]
    cites = [(o.gold, c) for o in answerable for c in o.cited]
    out: dict[str, float | int] = {"questions": len(outcomes), "answerable": len(answerable),
                                   "unanswerable": len(unanswerable)}
    if answerable:
        out["accuracy"] = round(sum(contains_answer(o.gold, o.answer) for o in answerable) / len(answerable), 4)
        out["token_f1"] = round(sum(token_f1(o.gold, o.answer) for o in answerable) / len(answerable), 4)
        out["false_refusal_rate"] = round(sum(o.not_found for o in answerable) / len(answerable), 4)
        out["citations"] = len(cites)
        out["citation_precision"] = round(sum(supports(g, c) for g, c in cites) / len(cites), 4) if cites else 0.0
    if unanswerable:
        out["refusal_rate"] = round(sum(o.not_found for o in unanswerable) / len(unanswerable), 4)
    if outcomes:
        out["seconds_per_question"] = round(sum(o.seconds for o in outcomes) / len(outcomes), 3)
    return out


# -- runners over a workspace ----------------------------------------------------------------------


class QueryCache:
    """Wraps an embedder so a query embedded for one mode is not embedded again for the next."""

    def __init__(self, embedder):
        self.inner = embedder
        self.name, self.dim = embedder.name, embedder.dim
        self.model_id = getattr(embedder, "model_id", f"{embedder.name}:{embedder.dim}")
        self._memo: dict[str, object] = {}

    def embed(self, texts, batch_size: int = 32):
        import numpy as np

        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            for t, v in zip(missing, self.inner.embed(missing, batch_size=batch_size)):
                self._memo[t] = v
        if len(self._memo) > 4096:  # a long run: keep memory flat
            self._memo = {t: self._memo[t] for t in texts}
        return np.stack([self._memo[t] for t in texts]) if texts else self.inner.embed([], batch_size)


def evaluate_retrieval(ws, questions: Sequence[Question], modes: Sequence[str] = MODES, k: int = 10,
                       ks: Sequence[int] = DEFAULT_KS, reranker=None, embedder=None, user: str | None = None,
                       collections: Sequence[str] | None = None,
                       progress: Callable[[int, int], None] | None = None) -> dict:
    """Search every question in every mode and score the rankings.

    modes: any of dense, lexical, hybrid, hybrid+rerank (the last needs `reranker`, an object with
    `.name` and `.rerank(query, hits)`). Returns {"modes": {mode: mean metrics + latency_ms},
    "per_query": [{question, relevant, <mode>: {metrics, top: [documents]}}], "k", "questions",
    "comparisons": `hybrid_comparisons`}.
    Raises ValueError for an unknown mode or a rerank mode without a reranker.
    """
    from archivist.models import embedder_for
    from archivist.retrieval.search import search

    for m in modes:
        if m not in MODES:
            raise ValueError(f"unknown mode {m!r}; choose from {', '.join(MODES)}")
    if "hybrid+rerank" in modes and reranker is None:
        raise ValueError("mode hybrid+rerank needs a reranker")
    k = max(k, max(ks))
    embedder = embedder or embedder_for(ws.settings)
    cached = embedder if isinstance(embedder, QueryCache) else QueryCache(embedder)
    per_query = [{"question": q.question, "relevant": q.relevant} for q in questions]
    summary = {}
    for mode in modes:
        rows, seconds = [], []
        for i, q in enumerate(questions):
            cached.embed([q.question])  # the embedding is shared by all modes; time the search itself
            t0 = time.perf_counter()
            hits = search(ws, q.question, k=k, user=user, collections=collections,
                          mode="hybrid" if mode == "hybrid+rerank" else mode,
                          reranker=reranker if mode == "hybrid+rerank" else None, embedder=cached)
            seconds.append(time.perf_counter() - t0)
            credited = credit([(h.document, h.chunk_id) for h in hits], q.relevant)
            metrics = ranking_metrics(credited, len(set(q.relevant)), ks)
            rows.append(metrics)
            per_query[i][mode] = {**{key: round(v, 4) for key, v in metrics.items()},
                                  "top": [h.document for h in hits[:max(ks)]]}
            if progress:
                progress(i + 1, len(questions))
        summary[mode] = {**mean_metrics(rows), "latency_ms": round(1000 * sorted(seconds)[len(seconds) // 2], 2)}
    return {"questions": len(questions), "k": k, "modes": summary, "per_query": per_query,
            "reranker": getattr(reranker, "name", None), "comparisons": hybrid_comparisons(per_query, modes)}


def outcome_of(q: Question, answer) -> AnswerOutcome:
    """An archivist Answer record as plain data for scoring."""
    return AnswerOutcome(question=q.question, gold=q.answer, answer=answer.answer, not_found=bool(answer.not_found),
                         cited=[c.text for c in answer.citations], cited_documents=[c.document for c in answer.citations],
                         seconds=answer.seconds)


def evaluate_answers(ws, questions: Sequence[Question], user: str | None = None, adapter: str | None = "active",
                     k: int | None = None, llm=None, embedder=None,
                     progress: Callable[[int, int], None] | None = None) -> dict:
    """Ask every question through `archivist.retrieval.answer.ask` and score the answers.

    Returns {"metrics": answer_metrics(...), "per_question": [...], "adapter": ...}.
    """
    from archivist.retrieval.answer import ask

    outcomes = []
    for i, q in enumerate(questions):
        a = ask(ws, q.question, user=user, k=k, adapter=adapter, llm=llm, embedder=embedder)
        outcomes.append(outcome_of(q, a))
        if progress:
            progress(i + 1, len(questions))
    per = [{"question": o.question, "gold": o.gold, "answer": o.answer, "not_found": o.not_found,
            "contains_gold": contains_answer(o.gold, o.answer) if o.gold is not None else None,
            "token_f1": round(token_f1(o.gold, o.answer), 4) if o.gold is not None else None,
            "cited_documents": o.cited_documents,
            "citations_supporting": [supports(o.gold, c) for c in o.cited] if o.gold is not None else [],
            "seconds": round(o.seconds, 3)} for o in outcomes]
    return {"metrics": answer_metrics(outcomes), "per_question": per,
            "adapter": adapter}


# -- storage and display ---------------------------------------------------------------------------


def store_evaluation(ws, kind: str, set_name: str, results: dict) -> int:
    """Save results in the workspace's `evaluations` table; returns the new row id."""
    from archivist.workspace import transaction

    if kind not in ("retrieval", "answers"):
        raise ValueError(f"kind must be retrieval or answers, got {kind!r}")
    with transaction(ws.db):
        return ws.db.execute("INSERT INTO evaluations(kind, set_name, results) VALUES (?, ?, ?)",
                             (kind, set_name, json.dumps(results, ensure_ascii=False, default=str))).lastrowid


def list_evaluations(ws, kind: str | None = None, limit: int = 50) -> list[dict]:
    """Stored evaluations, newest first: [{id, kind, set_name, created_at, results}] (results parsed)."""
    sql = "SELECT id, kind, set_name, created_at, results FROM evaluations"
    args: list = []
    if kind:
        sql += " WHERE kind = ?"
        args.append(kind)
    rows = ws.db.execute(sql + " ORDER BY id DESC LIMIT ?", [*args, limit]).fetchall()
    return [{"id": r[0], "kind": r[1], "set_name": r[2], "created_at": r[3], "results": json.loads(r[4])} for r in rows]


def format_table(rows: dict[str, dict], columns: Sequence[str] | None = None, first: str = "mode") -> str:
    """A fixed-width text table: one row per key of `rows`, one column per metric."""
    if not rows:
        return "(no results)"
    columns = list(columns or next(iter(rows.values())).keys())
    width = max(len(first), *(len(r) for r in rows))
    head = f"{first:<{width}}  " + "  ".join(f"{c:>10}" for c in columns)
    lines = [head, "-" * len(head)]
    for name, values in rows.items():
        cells = []
        for c in columns:
            v = values.get(c)
            cells.append(f"{v:>10.4f}" if isinstance(v, float) else f"{'' if v is None else v:>10}")
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)
