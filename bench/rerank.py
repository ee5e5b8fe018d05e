"""Rerankers on the public sets: does one pay for its latency? (issue 19, item 3)

    python bench/rerank.py [--corpus git,handbook,python] [--split tuning|heldout]

Per corpus (bench/answers.py ingests bench/data/ws/public-<corpus>): a learned reranker is trained
on the workspace's own synthetic questions (finetune/reranker.py; no public question is used), then
hybrid, hybrid + coverage reranker and hybrid + learned reranker are scored on the frozen questions
of one split (default tuning; the held-out split is run once, after the choice), with the paired
bootstrap of each reranker against plain hybrid, and the CPU time each adds per query (the rerank
call alone on the 30 candidates a k=10 search reranks, median over the questions) against a whole
hybrid search's (query embedding included). CPU time, not wall time: on the shared 2-core box
(load average 20-40 while this ran) wall time measures the other sessions. The cost of a
cross-encoder is measured too, without training one: all-MiniLM-L6-v2's weights under a fresh
one-logit head (sentence-transformers CrossEncoder) scoring the same 30 candidates; its quality is
not measured (an untrained head ranks at random), only what it would add to a search.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import log, machine, md_table, save_result  # noqa: E402

import answers  # noqa: E402


def timed_reranker(inner, times: list[float]):
    """`inner` with the CPU time of each rerank call appended to `times` (ms)."""

    class Timed:
        name = inner.name

        def rerank(self, query, hits, collections=None):
            t = time.process_time()
            out = inner.rerank(query, hits, collections)
            times.append((time.process_time() - t) * 1000)
            return out

    return Timed()


def search_ms(ws, qs, n: int = 40) -> float:
    """Median CPU ms of a default hybrid search (k=10), the query embedded each time."""
    from archivist.models import embedder_for
    from archivist.retrieval.search import search

    embedder = embedder_for(ws.settings)
    out = []
    for q in qs[:n]:
        t = time.process_time()
        search(ws, q.question, k=10, embedder=embedder)
        out.append((time.process_time() - t) * 1000)
    return statistics.median(out)


def cross_encoder_ms(ws, qs, embedder, n: int = 20) -> float:
    """Median CPU ms for a MiniLM-L6 cross-encoder to score the 30 candidates of a search (no training)."""
    from sentence_transformers import CrossEncoder

    from archivist.catalog import resolve_embedder
    from archivist.retrieval.search import search

    model = CrossEncoder(resolve_embedder(ws.settings.embedder), num_labels=1, device="cpu", max_length=256)
    out = []
    for q in qs[:n]:
        hits = search(ws, q.question, k=30, embedder=embedder)
        t = time.process_time()
        model.predict([(q.question, h.text) for h in hits], batch_size=32, show_progress_bar=False)
        out.append((time.process_time() - t) * 1000)
    return statistics.median(out)


def run(corpus: str, split: str, name: str, cross: bool = True) -> dict:
    from archivist.finetune.reranker import RerankerConfig, finetune_reranker
    from archivist.models import embedder_for
    from archivist.retrieval.evaluate import QueryCache, evaluate_retrieval
    from archivist.retrieval.evaluation import paired_difference
    from archivist.retrieval.rerank import CoverageReranker, learned_manifest, load_learned

    ws = answers.workspace(corpus)
    try:
        report = {"weights": learned_manifest(ws, name)["weights"], "evaluation": learned_manifest(ws, name)["evaluation"]}
    except LookupError:
        report = finetune_reranker(ws, RerankerConfig(name=name))
    log(f"{corpus}: reranker {name} {json.dumps(report['weights'])}; synthetic held-out "
        f"{json.dumps(report['evaluation']['difference']['mrr@10'])}")
    embedder = QueryCache(embedder_for(ws.settings))
    qs = [q for q in answers.questions(corpus, split) if q.relevant]
    rows, diffs, latency = {}, {}, {}
    plain = evaluate_retrieval(ws, qs, modes=["hybrid"], k=10, embedder=embedder)
    rows["hybrid"] = plain["modes"]["hybrid"]
    for label, inner in (("coverage", CoverageReranker(ws, embedder)), ("learned", load_learned(ws, name, None, embedder))):
        times: list[float] = []
        r = evaluate_retrieval(ws, qs, modes=["hybrid+rerank"], k=10, reranker=timed_reranker(inner, times), embedder=embedder)
        rows[f"hybrid + {label}"] = r["modes"]["hybrid+rerank"]
        latency[label] = statistics.median(times)
        for m in ("hit@5", "mrr@10"):
            diffs[f"{label}/{m}"] = paired_difference([q["hybrid+rerank"][m] for q in r["per_query"]],
                                                      [q["hybrid"][m] for q in plain["per_query"]])
    latency["search"] = search_ms(ws, qs)
    latency["cross-encoder (untrained)"] = cross_encoder_ms(ws, qs, embedder) if cross else float("nan")
    ws.close()
    return {"corpus": corpus, "split": split, "questions": len(qs), "weights": report["weights"],
            "synthetic": report["evaluation"], "modes": rows, "differences": diffs, "latency_ms": latency}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="git,handbook,python")
    ap.add_argument("--split", default="tuning", choices=["tuning", "heldout"])
    ap.add_argument("--no-cross-encoder", action="store_true", help="skip timing the cross-encoder")
    ap.add_argument("--name", default="bench-learned", help="the reranker's name in each workspace (trained once, then reused)")
    args = ap.parse_args(argv)
    results = [run(c, args.split, args.name, not args.no_cross_encoder) for c in args.corpus.split(",")]
    rows = []
    for r in results:
        for mode, m in r["modes"].items():
            label = mode.split(" + ")[-1] if "+" in mode else None
            d = r["differences"].get(f"{label}/mrr@10") if label else None
            rows.append([r["corpus"], r["split"], r["questions"], mode, f"{m['hit@5']:.3f}", f"{m['mrr@10']:.3f}",
                         f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" if d else "-",
                         f"{r['latency_ms'][label]:.1f} ({r['latency_ms'][label] / r['latency_ms']['search']:.2f}x)" if label
                         else f"{r['latency_ms']['search']:.1f} (the search)"])
        rows.append([r["corpus"], r["split"], r["questions"], "cross-encoder MiniLM-L6, 30 candidates", "-", "-", "-",
                     f"{r['latency_ms']['cross-encoder (untrained)']:.1f} "
                     f"({r['latency_ms']['cross-encoder (untrained)'] / r['latency_ms']['search']:.2f}x)"])
    print(md_table(["corpus", "split", "questions", "mode", "hit@5", "MRR@10", "MRR@10 - hybrid [95% CI]",
                    "CPU ms per query (rerank alone; x the search)"], rows))
    save_result(f"rerank-{args.split}-{args.corpus.replace(',', '-')}", {"machine": machine(), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
