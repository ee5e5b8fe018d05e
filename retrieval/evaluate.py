"""Quality measured, not claimed: run JSONL question sets through a workspace's search and ask.

The runners (`evaluate_retrieval`, `evaluate_answers`) search or ask a real workspace, turn what
came back into plain data, and score it with archivist.retrieval.evaluation, the one home of the
metrics and of stored evaluations (as in sentence-transformers' InformationRetrievalEvaluator:
pure metric functions that tests check against hand-computed values, runners around them).

Retrieval ranks are passage ranks: the passages a prompt would receive, best first. A passage is
relevant when it matches an entry of the question's `relevant` list (a document name, matched
exactly or by its last path part, or a chunk id); each relevant entry is credited once, at its
first passage, so five passages of one relevant document do not count as five finds.

Question sets are JSONL:
  retrieval: {"question": str, "relevant": [document name or chunk id, ...]}
  answers:   {"question": str, "answer": str | null}   (null: the documents do not answer it)
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from archivist.retrieval.evaluation import (DEFAULT_KS, AnswerOutcome, answer_metrics, credit, distinct,
                                            hybrid_comparisons, key_right, mean_metrics, ranking_metrics, score_answer, supports)

MODES = ("dense", "lexical", "hybrid", "hybrid+rerank")


class EvalSetError(ValueError):
    """A question set that cannot be used: missing file, bad JSON, missing fields (names the line)."""


@dataclass
class Question:
    question: str
    relevant: list[str] = field(default_factory=list)
    answer: str | None = None  # the gold key answer (the first spelling)
    answers: list[str] = field(default_factory=list)  # every accepted spelling; any one counts as right
    answerable: bool = True
    line: int = 0
    extra: dict = field(default_factory=dict)


# -- question sets -------------------------------------------------------------------------------


def load_set(path: str | Path, kind: str) -> list[Question]:
    """Read a JSONL question set. kind: "retrieval" (needs `relevant`) or "answers" (needs `answer`,
    which may be null for an unanswerable question). Blank lines and lines starting with # are skipped.
    A UTF-8 byte order mark (as Windows editors save) is skipped. Every row's fields are checked
    whatever the kind (`relevant`/`document`: a name or chunk id or a list of them; `answer`; `split`: a
    string), so a run never starts on a set it would crash on or score 0 silently. Raises EvalSetError
    naming the file, the line and the field."""
    p = Path(path)
    if not p.is_file():
        raise EvalSetError(f"{p}: no such question set")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1
        raise EvalSetError(f"{p}:{line}: not UTF-8 text (byte 0x{e.object[e.start]:02x}); save it as UTF-8") from None
    out = []
    # lines end at \n (\r\n's \r is stripped below), not at every break splitlines() knows: a JSON
    # string may hold U+2028 or U+0085 as they are
    for n, raw in enumerate(text.split("\n"), start=1):
        raw = raw.strip()
        if not raw or raw.startswith("#"):
            continue
        try:
            obj = json.loads(raw)
        except ValueError as e:
            raise EvalSetError(f"{p}:{n}: not JSON ({e})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("question"), str) or not obj["question"].strip():
            raise EvalSetError(f"{p}:{n}: needs a non-empty \"question\" string")
        where = f"{p}:{n}"
        q = Question(question=obj["question"].strip(), line=n,
                     extra={k: v for k, v in obj.items() if k not in ("question", "relevant", "answer")})
        # every field is checked whatever the kind, before anything runs: a set is often shared by
        # both runs, and a wrong value ("relevant": 1.5, true, a dict) crashed or silently scored 0
        if "split" in obj and not isinstance(obj["split"], str):
            raise EvalSetError(f"{where}: \"split\" must be a string (--split picks the questions by it), "
                               f"got {_shown(obj['split'])}")
        rel = _entries(obj, where)
        ans = obj.get("answer")
        spellings = ans if isinstance(ans, list) else [] if ans is None else [ans]
        if ans == [] or not all(_spelling(a) for a in spellings):
            raise EvalSetError(f"{where}: \"answer\" must be a string, a non-empty list of strings (any one "
                               f"counts as right) or null, got {_shown(ans)}")
        if kind == "retrieval":
            if not rel and "answer" in obj and ans is None:
                continue  # an unanswerable question (of an answers set): nothing to retrieve
            if not rel:
                raise EvalSetError(f"{where}: needs \"relevant\": a non-empty list of document names or chunk ids")
            q.relevant = rel
        elif kind == "answers":
            if "answer" not in obj:
                raise EvalSetError(f"{where}: needs \"answer\" (a string, or null when the documents do not answer it)")
            q.answers = [str(a) for a in spellings]
            q.answer = q.answers[0] if q.answers else None
            q.answerable = ans is not None
            q.relevant = rel
        else:
            raise ValueError(f"kind must be retrieval or answers, got {kind!r}")
        out.append(q)
    if not out:
        raise EvalSetError(f"{p}: no questions in the set")
    return out


def _entries(obj: dict, where: str) -> list[str]:
    """A row's relevant entries: `relevant` (one entry or a list), else `document` (one name, as in
    samples/QUESTIONS.jsonl); null or absent is none. An entry is a document name (a non-blank
    string) or a chunk id (an integer, not a boolean). Raises EvalSetError naming the field."""
    field_name = "relevant" if obj.get("relevant") is not None else "document"
    value = obj.get(field_name)
    items = [] if value is None else value if isinstance(value, list) else [value]
    for x in items:
        if isinstance(x, bool) or not isinstance(x, (str, int)) or (isinstance(x, str) and not x.strip()):
            raise EvalSetError(f"{where}: \"{field_name}\" must be a document name or chunk id, or a list of them, "
                               f"got {_shown(value)}")
    return [str(x) for x in items]


def _spelling(a) -> bool:
    """Whether `a` can be one spelling of a gold answer: a non-blank string, or a number as written
    ("18950.00" may be given as 18950); not a boolean, a list or an object."""
    return not isinstance(a, bool) and isinstance(a, (str, int, float)) and bool(str(a).strip())


def _shown(value) -> str:
    """A field's value as the set holds it, shortened for an error message."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


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
    "comparisons": `hybrid_comparisons`}. latency_ms is the median search time (the mean of the two
    middle ones for an even number of questions).
    Raises ValueError for an unknown mode, a rerank mode without a reranker, or `k` below the
    largest of `ks` (the metrics at 10 need 10 passages; a smaller k was silently raised to 10).
    """
    from archivist.models import embedder_for
    from archivist.retrieval.search import search

    for m in modes:
        if m not in MODES:
            raise ValueError(f"unknown mode {m!r}; choose from {', '.join(MODES)}")
    if "hybrid+rerank" in modes and reranker is None:
        raise ValueError("mode hybrid+rerank needs a reranker")
    if k < max(ks):
        raise ValueError(f"k={k}: the metrics are taken at {', '.join(map(str, ks))} passages, so each question "
                         f"needs at least {max(ks)} (hit@5 and recall@5 say how the first 5 do)")
    embedder = embedder or embedder_for(ws.settings)
    cached = embedder if isinstance(embedder, QueryCache) else QueryCache(embedder)
    unknown = unsearchable(ws, questions, user, collections)
    partly = unknown_entries(ws, questions, user, collections)
    per_query = [{"question": q.question, "relevant": q.relevant} for q in questions]
    summary, drawn = {}, set()  # drawn: the collections of the documents the stored run names
    for mode in modes:
        rows, seconds = [], []
        for i, q in enumerate(questions):
            cached.embed([q.question])  # the embedding is shared by all modes; time the search itself
            t0 = time.perf_counter()
            hits = search(ws, q.question, k=k, user=user, collections=collections,
                          mode="hybrid" if mode == "hybrid+rerank" else mode,
                          reranker=reranker if mode == "hybrid+rerank" else None, embedder=cached)
            seconds.append(time.perf_counter() - t0)
            relevant = distinct(q.relevant)  # "a.txt" beside "docs/a.txt" is one document, found once
            credited = credit([(h.document, h.chunk_id) for h in hits], relevant)
            metrics = ranking_metrics(credited, len(relevant), ks)
            rows.append(metrics)
            per_query[i][mode] = {**{key: round(v, 4) for key, v in metrics.items()},
                                  "top": [h.document for h in hits[:max(ks)]]}
            drawn.update(h.collection for h in hits[:max(ks)])
            if progress:
                progress(i + 1, len(questions))
        summary[mode] = {**mean_metrics(rows), "latency_ms": round(1000 * statistics.median(seconds), 2)}
    return {"questions": len(questions), "k": k, "modes": summary, "per_query": per_query,
            "reranker": getattr(reranker, "name", None), "comparisons": hybrid_comparisons(per_query, modes),
            "unsearchable": unknown, "unknown_entries": partly, "collections": sorted(c for c in drawn if c)}


def unsearchable(ws, questions: Sequence[Question], user: str | None = None,
                 collections: Sequence[str] | None = None) -> list[dict]:
    """The questions none of whose `relevant` entries names a document `user` may search in
    `collections` (a name, its last part, or a chunk id of one): they can only count as misses, so
    the run says which (a typo, a document not ingested, or one the user may not read: the same
    words for each). [{"line", "question", "relevant"}]."""
    known = _searchable(ws, user, collections)
    return [{"line": q.line, "question": q.question, "relevant": q.relevant}
            for q in questions if not any(known(e) for e in q.relevant)]


def unknown_entries(ws, questions: Sequence[Question], user: str | None = None,
                    collections: Sequence[str] | None = None) -> list[dict]:
    """The questions some (not all) of whose `relevant` entries name no document `user` may search:
    those entries are never found, so the question's recall and nDCG cannot reach 1 while its hit@k
    and MRR still can. [{"line", "question", "entries": the entries that name nothing}]."""
    known = _searchable(ws, user, collections)
    out = []
    for q in questions:
        missing = [e for e in distinct(q.relevant) if not known(e)]
        if missing and len(missing) < len(distinct(q.relevant)):
            out.append({"line": q.line, "question": q.question, "entries": missing})
    return out


def _searchable(ws, user: str | None, collections: Sequence[str] | None) -> Callable[[str], bool]:
    """known(entry): does a relevant entry name a document `user` may search in `collections`?"""
    from archivist.ingest.pipeline import list_documents

    docs = [d for c in (collections or [None]) for d in list_documents(ws, user, c)]
    names = {d["name"] for d in docs} | {d["name"].rsplit("/", 1)[-1] for d in docs}
    ids = {d["id"] for d in docs}

    def known(entry: str) -> bool:
        if entry in names:
            return True
        if not entry.isdigit():
            return False
        row = ws.db.execute("SELECT document_id FROM chunks WHERE id = ?", (int(entry),)).fetchone()
        return row is not None and row[0] in ids

    return known


def outcome_of(q: Question, answer) -> AnswerOutcome:
    """An archivist Answer record as plain data for scoring. The text scored is what the answer shows
    under its notice (`Answer.body`): the notice ("The closest passage in the documents, not confirmed
    to answer the question:") is no part of the answer; scored with it, it diluted an uncertain
    quote's token F1 and "contained" a gold such as "documents" in every such answer."""
    return AnswerOutcome(question=q.question, gold=q.answer, answer=answer.body, not_found=bool(answer.not_found),
                         cited=[c.text for c in answer.citations], cited_documents=[c.document for c in answer.citations],
                         seconds=answer.seconds, alternatives=list(q.answers[1:]),
                         status=getattr(answer, "status", "not_found" if answer.not_found else "answered"),
                         mode=answer.mode, confidence=getattr(answer, "confidence", 0.0), key=getattr(answer, "key", ""))


def evaluate_answers(ws, questions: Sequence[Question], user: str | None = None, adapter: str | None = "active",
                     k: int | None = None, llm=None, embedder=None, mode: str | None = None,
                     progress: Callable[[int, int], None] | None = None) -> dict:
    """Ask every question through `archivist.retrieval.answer.ask` (in answer `mode`, default the
    settings') and score the answers.

    Returns {"metrics": answer_metrics(...), "per_question": [...], "adapter": the adapter's name
    (None: the base model), "mode": ...}. "active" is resolved once, before the first question: every
    question is answered by the same model, and the stored run names it (two runs of "active" before
    and after an activation are runs of two models).
    """
    from archivist import adapters
    from archivist.retrieval.answer import ask

    chosen = adapters.resolve(ws, user, adapter)
    adapter = chosen.name if chosen else None
    outcomes, drawn = [], set()  # drawn: the collections the stored answers quote (evaluation.get_evaluation)
    sources = set()  # the documents' ids: storing the run checks none was erased while it ran (store_evaluation)
    for i, q in enumerate(questions):
        a = ask(ws, q.question, user=user, k=k, adapter=adapter, llm=llm, embedder=embedder, mode=mode)
        outcomes.append(outcome_of(q, a))
        drawn.update(x.collection for x in [*a.citations, *a.passages])
        sources.update(p.document_id for p in a.passages)
        if progress:
            progress(i + 1, len(questions))
    return {"metrics": answer_metrics(outcomes), "per_question": [_answer_row(o) for o in outcomes], "adapter": adapter,
            "mode": mode or ws.settings.answer_mode, "collections": sorted(c for c in drawn if c),
            "documents": sorted(sources)}


def _answer_row(o: AnswerOutcome) -> dict:
    """One question's row of the stored results: the answer and how it scored."""
    score = score_answer(o.gold, o.answer, o.alternatives) if o.gold is not None else None
    return {"question": o.question, "gold": o.gold, "answer": o.answer, "not_found": o.not_found,
            "status": o.status, "mode": o.mode, "confidence": o.confidence,
            "contains_gold": score.contained if score else None,
            "key": o.key, "key_right": key_right(o, score) if score else None,
            "token_f1": round(score.f1, 4) if score else None,
            "cited_documents": o.cited_documents,
            "citations_supporting": [supports(o.gold, c) for c in o.cited] if o.gold is not None else [],
            "seconds": round(o.seconds, 3)}
