"""Tune the quote scorer (retrieval/quote.py) on the TUNING splits of the public sets, fast.

    python bench/tune_quote.py --collect          # search once per tuning question, keep its passages
    python bench/tune_quote.py                    # score quotes offline: gold in the quote, and by confidence

Retrieval does not change while the quote scorer is tuned, so the passages of every tuning question
are searched once (bench/data/results/tune-quote-passages.json) and each scorer variant is scored
offline against them. Held-out questions are never loaded here.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from answers import CORPORA, questions, workspace  # noqa: E402
from common import RESULTS  # noqa: E402

CACHE = RESULTS / "tune-quote-passages.json"


def collect() -> None:
    from archivist.models import embedder_for
    from archivist.retrieval.search import search

    out = []
    for name in CORPORA:
        ws = workspace(name)
        emb = embedder_for(ws.settings)
        for q in questions(name, "tuning"):
            hits = search(ws, q.question, k=ws.settings.top_k, embedder=emb)
            out.append({"corpus": name, "question": q.question, "answers": q.answers, "kind": q.extra.get("kind"),
                        "relevant": q.relevant, "hits": [{**asdict(h), "heading": list(h.heading)} for h in hits]})
        ws.close()
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_text(json.dumps(out))


class CachedEmbedder:
    def __init__(self, inner):
        self.inner, self.memo = inner, {}

    def embed(self, texts):
        import numpy as np

        todo = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if todo:
            for t, v in zip(todo, self.inner.embed(todo)):
                self.memo[t] = v
        return np.stack([self.memo[t] for t in texts])


def evaluate(rows, embedder, module=None, **weights) -> dict:
    from archivist.records import Hit
    from archivist.retrieval import quote as current
    from archivist.retrieval.evaluation import contains_answer, strip_citations

    DEFAULT, Weights, quote = (module or current).DEFAULT, (module or current).Weights, (module or current).quote

    w = Weights(**{**asdict(DEFAULT), **weights})
    scored = []
    for r in rows:
        if not r["answers"]:
            continue
        hits = [Hit(**{**h, "heading": tuple(h["heading"])}) for h in r["hits"]]
        q = quote(r["question"], hits, embedder, weights=w)
        text = strip_citations(q.text) if q else ""
        scored.append((q.confidence if q else 0.0, any(contains_answer(g, text) for g in r["answers"]), r))
    n = len(scored)
    right = sum(ok for _, ok, _ in scored)
    scored.sort(key=lambda x: -x[0])
    # key accuracy at the threshold that keeps confident misses <= 4%
    best, misses, hits_, cut = 0, 0, 0, float("inf")
    for conf, ok, _ in scored:
        hits_ += ok
        misses += not ok
        if misses <= 0.04 * n:
            best, cut = hits_, conf
    low = sorted(c for c, _, _ in scored)
    return {"n": n, "gold_in_quote": round(right / n, 3), "key_accuracy_at_4pct_miss": round(best / n, 3),
            "answered_threshold": round(cut, 4), "confidence_p1": round(low[max(0, int(0.01 * n) - 1)], 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--collect", action="store_true")
    ap.add_argument("--set", action="append", default=[], help="weight=value (repeatable)")
    ap.add_argument("--grid", action="store_true", help="search the weights on a small grid (tuning split only)")
    ap.add_argument("--against", help="also score this file's quote module (e.g. the committed version) for comparison")
    args = ap.parse_args(argv)
    if args.collect or not CACHE.exists():
        collect()
    from archivist.models import embedder_for
    from archivist.settings import Settings

    rows = json.loads(CACHE.read_text())
    emb = CachedEmbedder(embedder_for(Settings.from_env()))
    weights = {k: float(v) for k, v in (s.split("=") for s in args.set)}
    if args.grid:
        import itertools

        grid = {"cosine": [0.5, 1.0], "overlap": [0.25, 0.5, 1.0], "heading": [0.0, 0.3], "kind": [0.1, 0.25, 0.5],
                "rank": [0.05, 0.15, 0.3]}
        results = []
        for combo in itertools.product(*grid.values()):
            w = dict(zip(grid, combo))
            m = evaluate(rows, emb, None, **w)
            results.append((m["gold_in_quote"], m["key_accuracy_at_4pct_miss"], w))
            print(m, w, flush=True)
        results.sort(key=lambda x: (-x[0], -x[1]))
        print("best:", results[:5])
        return 0
    modules = {"current": None}
    if args.against:
        import importlib.util

        spec = importlib.util.spec_from_file_location("quote_against", args.against)
        modules["against"] = sys.modules["quote_against"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules["against"])
    for label, module in modules.items():
        for corpus in CORPORA:
            print(label, corpus, evaluate([r for r in rows if r["corpus"] == corpus], emb, module, **weights), flush=True)
        print(label, "all", evaluate(rows, emb, module, **weights), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
