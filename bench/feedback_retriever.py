"""Would the retriever learn from people's questions? Tuning splits only, two folds (finding 42).

    python bench/feedback_retriever.py [--corpus git] [--max-chunks 1000] [--repeat 4]

`archivist finetune --target retriever` learns from synthetic questions only, and on people's
questions it is not ahead of the base (findings 25, 30, 33, 41). A workspace in use also holds
people's questions with feedback: the passage a helpful answer cited. This simulates that with the
corpus's tuning questions: they are cut in two halves by a hash of the question; for each half, the
recipe (seeded synthetic questions from `--max-chunks` chunks, hard negatives, the default training)
runs with the other half's questions added as training pairs (`--repeat` times each), each paired
with the chunk of its relevant page that holds its gold answer (else the page's chunk nearest the
question by the base embedder): the chunk a helpful answer would have cited. The adapted model is
switched to and the half it never saw is scored. Against it, on the same copy: the base, and the
recipe without feedback. Every tuning question is scored once by a model that did not see it;
paired bootstrap over all of them. Held-out questions are never loaded.
Writes bench/data/results/feedback-retriever-<corpus>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import log, machine, open_ws, save_result  # noqa: E402

import answers  # noqa: E402

MODES = ["dense", "hybrid"]


def half(question: str) -> int:
    return int(hashlib.sha256(question.encode()).hexdigest(), 16) % 2


def feedback_pairs(ws, qs, embedder) -> list:
    """One training pair per question: its question and the chunk of a relevant page a helpful
    answer would cite (the one holding a gold answer, else the nearest to the question)."""
    from archivist.finetune.retriever import Pair

    by_name = {}
    for r in ws.db.execute("SELECT c.id, c.document_id, c.text, c.heading, d.path FROM chunks c "
                           "JOIN documents d ON d.id = c.document_id").fetchall():
        by_name.setdefault(Path(r["path"]).name, []).append(r)
    out = []
    for q in qs:
        rows = [r for name in q.relevant for r in by_name.get(name, [])]
        if not rows:
            continue
        golds = [a.lower() for a in q.answers]
        holding = [r for r in rows if any(g in r["text"].lower() for g in golds)]
        pool = holding or rows
        vecs = embedder.embed([q.question] + [f"{r['heading']}\n{r['text']}" for r in pool])
        best = pool[int(np.argmax(vecs[1:] @ vecs[0]))]
        out.append(Pair(q.question, best["text"], best["heading"], best["id"], best["document_id"], "feedback"))
    return out


def scored(ws, corpus: str, qs) -> list[dict]:
    from archivist.retrieval.evaluate import evaluate_retrieval

    return evaluate_retrieval(ws, qs, modes=MODES, k=10)["per_query"]


def adapted(corpus: str, label: str, max_chunks: int, extra: list) -> tuple[Path, dict]:
    """A copy of the public workspace with the recipe's model (plus `extra` training pairs) switched to."""
    import archivist.finetune.retriever as recipe
    from archivist.finetune.retriever import RetrieverConfig, finetune_retriever

    home = answers.workspace_copy(corpus, f"feedback-{label}")
    cfg = RetrieverConfig(max_chunks=max_chunks, activate="always")
    plain = recipe.make_pairs

    def with_feedback(ws, doc_ids, kinds, limit, seed):
        pairs = plain(ws, doc_ids, kinds, limit, seed)
        return pairs + list(extra) if seed == cfg.seed else pairs  # training pairs only, not the recipe's evaluation

    recipe.make_pairs = with_feedback
    try:
        with open_ws(home) as ws:
            report = finetune_retriever(ws, cfg, progress=False)
    finally:
        recipe.make_pairs = plain
    log(f"{corpus}/{label}: trained on {report['questions']['train']} pairs in {report['seconds']['train']} s")
    return home, report


def run(corpus: str, max_chunks: int, repeat: int) -> dict:
    from archivist.models import embedder_for
    from archivist.retrieval.evaluation import paired_difference

    qs = [q for q in answers.questions(corpus, "tuning") if q.relevant]
    halves = [[q for q in qs if half(q.question) == h] for h in (0, 1)]
    with answers.workspace(corpus) as ws:
        base = {r["question"]: r for r in scored(ws, corpus, qs)}
        pairs = [feedback_pairs(ws, part, embedder_for(ws.settings)) for part in halves]
    home, _ = adapted(corpus, "synthetic", max_chunks, [])
    with open_ws(home) as ws:
        synthetic = {r["question"]: r for r in scored(ws, corpus, qs)}
    fed = {}
    for h in (0, 1):
        home, _ = adapted(corpus, f"feedback{1 - h}", max_chunks, pairs[1 - h] * repeat)  # learns the other half
        with open_ws(home) as ws:
            fed.update({r["question"]: r for r in scored(ws, corpus, halves[h])})
    result = {"corpus": corpus, "machine": machine(), "questions": len(qs), "max_chunks": max_chunks, "repeat": repeat,
              "feedback_pairs": [len(p) for p in pairs], "runs": {}}
    for mode in MODES:
        for m in ("hit@5", "mrr@10"):
            b = [base[q.question][mode][m] for q in qs]
            s = [synthetic[q.question][mode][m] for q in qs]
            f = [fed[q.question][mode][m] for q in qs]
            result["runs"][f"{mode}/{m}"] = {"base": float(np.mean(b)), "synthetic": float(np.mean(s)),
                                            "feedback": float(np.mean(f)),
                                            "feedback - base": paired_difference(f, b),
                                            "feedback - synthetic": paired_difference(f, s),
                                            "synthetic - base": paired_difference(s, b)}
            r = result["runs"][f"{mode}/{m}"]
            log(f"{corpus} {mode}/{m}: base {r['base']:.3f} synthetic {r['synthetic']:.3f} feedback {r['feedback']:.3f}; "
                + "; ".join(f"{k} {r[k]['diff']:+.3f} [{r[k]['low']:+.3f}, {r[k]['high']:+.3f}]"
                            for k in ("feedback - base", "feedback - synthetic", "synthetic - base")))
    save_result(f"feedback-retriever-{corpus}", result)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="git")
    ap.add_argument("--max-chunks", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=4, help="times each feedback pair is in the training set")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    for corpus in args.corpus.split(","):
        run(corpus, args.max_chunks, args.repeat)
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
