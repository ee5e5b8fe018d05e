"""Learn the reranker from the workspace's own documents: `archivist finetune --target reranker`.

One recipe, top to bottom:

    data        the documents the acting user may read, split by document into train and held-out
                (as for the retriever, finetune/retriever.py), and the same synthetic questions
                (`retriever.make_pairs`: the extractive generator's, and sentences out of passages)
    candidates  each question's hybrid search as the user would run it (`candidates` deep), within its
                side of the split; a candidate is relevant when it belongs to the question's document
                but is not the chunk the question was taken from: a sentence question stands verbatim
                in that chunk, which would teach only "match the words", and people's questions name
                a page (bench/evalsets/PUBLIC.md), not a chunk
    train       a linear model over retrieval/rerank.py's FEATURES (cosine, BM25 over its ceiling, IDF
                coverage of text and heading), softmax cross-entropy over each question's candidates,
                L2, full-batch gradient descent in numpy from the fusion's own weights (a second)
    evaluate    the held-out documents' questions: MRR@10 and hit@5 of the document, fused order
                against reranked, with a paired bootstrap interval that draws whole held-out
                documents (retrieval/evaluation.py)
    save        rerankers/<name>/archivist.json: weights, lineage (collections, documents), evaluation

Access: the questions come only from collections the acting user may read, and the reranker is
used only for the queries of users who may read every one of them (`rerank.load_learned`).
It is never switched on by itself: `archivist eval retrieval --reranker NAME` uses it (`archivist search`
and the API have no reranker option).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from archivist import access, audit
from archivist.api.errors import without_paths
from archivist.finetune.retriever import SyntheticSplit
from archivist.settings import _f
from archivist.workspace import Workspace


@dataclass
class RerankerConfig(SyntheticSplit):
    max_questions: int = _f(400, "most training questions")
    max_eval: int = _f(200, "most held-out questions")
    candidates: int = _f(30, "candidates reranked per question (a search for k=10 reranks 30)")
    l2: float = _f(1e-3, "L2 penalty on the weights")
    steps: int = _f(500, "gradient steps (full batch)")
    lr: float = _f(2.0, "step size")
    name: str | None = _f(None, "name of the reranker (default: reranker-<n>)")

    def __post_init__(self):
        super().__post_init__()
        for name in ("max_questions", "candidates", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.name is not None:
            access.check_name(self.name, "reranker name")


# -- data ----------------------------------------------------------------------------------------------


def candidate_sets(ws: Workspace, pairs, doc_ids: list[int], k: int, user: str | None, embedder):
    """Per question with at least one relevant candidate: (features [n, F], relevant mask [n], the
    question's document id). Candidates: its hybrid search within `doc_ids`, its own chunk left out."""
    from archivist.retrieval.rerank import features
    from archivist.retrieval.search import search

    out = []
    for p in pairs:
        hits = [h for h in search(ws, p.query, k=k, user=user, documents=doc_ids, embedder=embedder)
                if h.chunk_id != p.chunk_id]
        relevant = np.array([h.document_id == p.document_id for h in hits])
        if relevant.any():
            out.append((features(ws, p.query, hits, embedder.embed([p.query])[0]), relevant, p.document_id))
    return out


# -- train ---------------------------------------------------------------------------------------------


def fit(sets: list[tuple], start: np.ndarray, l2: float, steps: int, lr: float) -> np.ndarray:
    """Weights minimizing the mean over questions of -log(softmax mass on the relevant candidates)
    + l2 |w|^2, by gradient descent from `start`."""
    w = start.astype(np.float64).copy()
    for _ in range(steps):
        grad = 2 * l2 * w
        for x, rel, *_ in sets:
            z = x @ w
            p = np.exp(z - z.max())
            p /= p.sum()
            q = np.where(rel, p, 0.0)
            q /= q.sum()
            grad += x.T @ (p - q) / len(sets)
        w -= lr * grad
    return w


def loss(sets, w: np.ndarray) -> float:
    total = 0.0
    for x, rel, *_ in sets:
        z = x @ w
        z = z - z.max()
        total -= np.log(np.exp(z[rel]).sum() / np.exp(z).sum())
    return total / max(len(sets), 1)


# -- evaluate ------------------------------------------------------------------------------------------


def order_metrics(scores: np.ndarray, rel: np.ndarray) -> dict[str, float]:
    """hit@5 and MRR@10 of the first relevant candidate when ranked by `scores` (ties keep the fused order)."""
    order = np.argsort(-scores, kind="stable")[:10]
    ranks = [i + 1 for i, j in enumerate(order) if rel[j]]
    return {"hit@5": float(bool(ranks) and ranks[0] <= 5), "mrr@10": 1.0 / ranks[0] if ranks else 0.0}


def compare(sets, w: np.ndarray) -> dict:
    """{"questions", "base": fused order's metrics, "adapted": reranked, "difference": paired bootstrap}.
    Sets that carry their question's document (`candidate_sets`) are drawn a document at a time
    (the held-out split is by document, and one document's questions rise and fall together;
    "groups" in each difference says how many); (features, relevant) pairs one by one."""
    from archivist.retrieval.evaluation import mean_metrics, paired_difference

    before = [order_metrics(-np.arange(len(rel), dtype=float), rel) for _, rel, *_ in sets]
    after = [order_metrics(x @ w, rel) for x, rel, *_ in sets]
    groups = [s[2] for s in sets] if sets and all(len(s) > 2 for s in sets) else None
    return {"questions": len(sets), "base": mean_metrics(before), "adapted": mean_metrics(after),
            "difference": {m: paired_difference([a[m] for a in after], [b[m] for b in before], groups=groups)
                           for m in ("hit@5", "mrr@10")}}


# -- the whole run -------------------------------------------------------------------------------------


def finetune_reranker(ws: Workspace, cfg: RerankerConfig, user: str | None = None) -> dict:
    """The recipe (see the module doc). Returns a report: name, weights, data sizes, the held-out
    evaluation and timings. Raises ValueError when the readable documents give too few questions,
    AccessDenied when `cfg.collections` names one the user may not read, FileExistsError when a
    reranker has `cfg.name` (before any work when the user may use it: `rerank.check_free`)."""
    from archivist.finetune.embedders import fresh_name
    from archivist.finetune.retriever import make_pairs, readable_split
    from archivist.retrieval.rerank import FOLDER
    from archivist.models import embedder_for
    from archivist.retrieval.evaluate import QueryCache
    from archivist.retrieval.rerank import FEATURES, check_free, save_learned

    t0 = time.perf_counter()
    if cfg.name:
        check_free(ws, cfg.name, user)
    user, documents, train_docs, held_docs = readable_split(ws, user, cfg.collections, cfg.eval_fraction, cfg.seed)
    kinds = tuple(k.strip() for k in cfg.questions.split(","))
    embedder = QueryCache(embedder_for(ws.settings))  # each question is embedded once, for search and features
    train_sets = candidate_sets(ws, make_pairs(ws, train_docs, kinds, cfg.max_questions, cfg.seed), train_docs,
                                cfg.candidates, user, embedder)
    eval_sets = candidate_sets(ws, make_pairs(ws, held_docs, kinds, cfg.max_eval, cfg.seed + 1), held_docs,
                               cfg.candidates, user, embedder)
    if len(train_sets) < 10 or not eval_sets:
        raise ValueError(f"too few synthetic questions with a relevant candidate: {len(train_sets)} to train (need 10), "
                         f"{len(eval_sets)} held out; add documents")
    t_data = time.perf_counter() - t0
    # start from the fusion itself: (1 - w) x cosine + w x BM25 / ceiling
    start = np.array([1 - ws.settings.lexical_weight, ws.settings.lexical_weight] + [0.0] * (len(FEATURES) - 2))
    w = fit(train_sets, start, cfg.l2, cfg.steps, cfg.lr)
    evaluation = compare(eval_sets, w)
    name = cfg.name or fresh_name(ws.home / FOLDER, "reranker")
    collections = sorted({d["collection"] for d in documents})
    manifest = {
        "kind": "reranker", "features": list(FEATURES), "weights": dict(zip(FEATURES, map(float, w))),
        "embedder": ws.settings.embedder, "collections": collections,
        "documents": {"train": sorted(train_docs), "held_out": sorted(held_docs),
                      "hashes": {str(d["id"]): d["content_hash"] for d in documents}},
        "questions": {"train": len(train_sets), "held_out": len(eval_sets)},
        "loss": {"start": loss(train_sets, start), "end": loss(train_sets, w)},
        "config": asdict(cfg), "evaluation": evaluation, "user": user,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": {"data": round(t_data, 1), "total": round(time.perf_counter() - t0, 1)},
    }
    try:
        path = save_learned(ws, name, manifest)
    except FileExistsError as e:  # a name hidden from a member (`check_free`): the folder's path is the server's
        raise FileExistsError(str(e) if access.is_admin(ws, user) else without_paths(str(e), ws.settings)) from None
    audit.record(ws, "reranker.registered", user=user, target=name,
                 detail={"collections": collections, "evaluation": evaluation["difference"]})
    return {"name": name, "path": str(path), **{k: manifest[k] for k in ("weights", "questions", "loss", "evaluation", "seconds")},
            "better": evaluation["difference"]["mrr@10"]["low"] > 0}
