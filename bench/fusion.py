"""Fusion of the dense and lexical rankings, chosen on the tuning splits of the public sets.

    python bench/fusion.py [--corpus git,handbook,python] [--depth 100]
    python bench/fusion.py --heldout CONFIG     # run ONE chosen configuration on the held-out splits
    python bench/fusion.py --product            # the settings' fusion against the earlier one, through `search`
    python bench/fusion.py --product --split tuning --earlier '{"lexical_weight": 0.3}'
                                                # a settings change against the settings, tuning splits only

Per corpus (bench/answers.py ingests bench/data/ws/public-<corpus>) and per question, the dense top
`depth` (cosines, FAISS) and the lexical top `depth` (BM25, the query's ceiling) are read once, with
the exact cosine and BM25 of every chunk of their union (as `fusion.linear_fusion` has them). Every
fusion variant is then a function of those numbers, so a grid costs no more searches. The tuning
table ranks the variants by MRR@10 over the three tuning splits pooled; the held-out splits are
scored only with `--heldout`, for the configuration chosen on tuning, never searched over.

Simplification against `search`: near-duplicate chunks are not collapsed (`duplicates`), which
`search` does before cutting to k; the `default` row is printed next to `evaluate_retrieval`'s
hybrid numbers so the gap is visible.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, log, md_table  # noqa: E402

import answers  # noqa: E402

CACHE = DATA / "results" / "fusion-cache-{}.json"
_IDENT = re.compile(r"\S*[._/:()-]\S*[a-zA-Z]|[a-z]+[A-Z]\w*|\b[A-Z]{2,}\b|--?\w")


def collect(corpus: str, depth: int) -> list[dict]:
    """Per answerable question: its split and relevant pages, and per candidate chunk of the dense or
    lexical top `depth`: [chunk id, page name, cosine, BM25, dense rank, lexical rank] (ranks from 1, 0 = absent)."""
    from archivist.models import embedder_for
    from archivist.retrieval.fusion import cosines
    from archivist.retrieval.search import dense, lexical_ranking

    path = Path(str(CACHE).format(corpus))
    if path.exists():
        return json.loads(path.read_text())
    ws = answers.workspace(corpus)
    cids = [r[0] for r in ws.db.execute("SELECT id FROM collections")]
    emb = embedder_for(ws.settings)
    out = []
    for q in answers.questions(corpus, None):
        if not q.relevant:
            continue
        qvec = emb.embed([q.question])[0]
        d = dense(ws, qvec, cids, depth)
        lex = lexical_ranking(ws, q.question, cids, depth)
        ids = list(dict.fromkeys([c for c, _ in d] + [c for c, _ in lex.hits]))
        cos = {**cosines(ws, ids, qvec), **dict(d)}
        bm = lex.scores_of(ids)
        d_rank = {c: r for r, (c, _) in enumerate(d, 1)}
        l_rank = {c: r for r, (c, _) in enumerate(lex.hits, 1)}
        names = dict(ws.db.execute(f"SELECT c.id, d.path FROM chunks c JOIN documents d ON d.id = c.document_id "
                                   f"WHERE c.id IN ({','.join(map(str, ids))})").fetchall()) if ids else {}
        out.append({"id": q.extra["id"], "split": q.extra["split"], "kind": q.extra["kind"], "question": q.question,
                    "relevant": q.relevant, "ceiling": lex.ceiling,
                    "cands": [[c, names[c].rsplit("/", 1)[-1], round(cos.get(c, 0.0), 6), round(bm.get(c, 0.0), 5),
                               d_rank.get(c, 0), l_rank.get(c, 0)] for c in ids]})
    ws.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


# -- fusion variants: (question record, params) -> candidate rows best first -----------------------------


def fused_order(q: dict, p: dict) -> list:
    """The candidates ranked by the variant `p`:
    kind linear: (1 - w) x cosine + w x BM25 / norm, over the dense and lexical top `c`;
        norm "ceiling" (the default), "max" (the best BM25 found), cosine also min-max scaled when
        p["cos_minmax"]; w = p["w_ident"] instead of p["w"] for a query with an identifier.
    kind rrf: sum of 1 / (k + rank) over the two rankings cut at `c`."""
    c = p.get("c", 30)
    rows = [r for r in q["cands"] if 0 < r[4] <= c or 0 < r[5] <= c]
    if not rows:
        return []
    if p["kind"] == "rrf":
        k = p.get("k", 60)
        score = [(1 / (k + r[4]) if 0 < r[4] <= c else 0) + (1 / (k + r[5]) if 0 < r[5] <= c else 0) for r in rows]
    else:
        w = p["w"]
        if "w_ident" in p and _IDENT.search(q["question"]):
            w = p["w_ident"]
        if "w_strong" in p and q["ceiling"] > 0 and max(r[3] for r in rows) / q["ceiling"] >= p.get("strong_at", 0.5):
            w = p["w_strong"]
        norm = q["ceiling"] if p.get("norm", "ceiling") == "ceiling" else max(r[3] for r in rows)
        bm = np.array([r[3] for r in rows]) / (norm or 1.0)
        cos = np.array([r[2] for r in rows])
        if p.get("cos_minmax"):
            cos = (cos - cos.min()) / ((cos.max() - cos.min()) or 1.0)
            bm = (bm - bm.min()) / ((bm.max() - bm.min()) or 1.0)
        score = ((1 - w) * cos + w * bm).tolist()
    order = sorted(range(len(rows)), key=lambda i: (-score[i], rows[i][0]))
    return [rows[i] for i in order]


def single_order(q: dict, side: int) -> list:
    """Dense (side 4) or lexical (side 5) alone."""
    return sorted([r for r in q["cands"] if r[side]], key=lambda r: r[side])


def metrics_of(q: dict, order: list) -> dict:
    from archivist.retrieval.evaluation import credit, ranking_metrics

    return ranking_metrics(credit([(r[1], r[0]) for r in order[:10]], q["relevant"]), len(q["relevant"]))


def table(qs: list[dict], order_of) -> tuple[dict, list[dict]]:
    from archivist.retrieval.evaluation import mean_metrics

    per = [metrics_of(q, order_of(q)) for q in qs]
    return mean_metrics(per), per


def grid() -> dict[str, dict]:
    out = {"default": {"kind": "linear", "w": 0.3}}
    for c in (20, 30, 50, 100):
        for w in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
            out[f"linear c{c} w{w}"] = {"kind": "linear", "w": w, "c": c}
            out[f"linear max c{c} w{w}"] = {"kind": "linear", "w": w, "c": c, "norm": "max"}
            out[f"linear minmax c{c} w{w}"] = {"kind": "linear", "w": w, "c": c, "norm": "max", "cos_minmax": True}
        for k in (5, 10, 20, 60):
            out[f"rrf c{c} k{k}"] = {"kind": "rrf", "k": k, "c": c}
    for w in (0.2, 0.3):
        for wi in (0.3, 0.4, 0.5, 0.6):
            out[f"linear w{w} ident{wi}"] = {"kind": "linear", "w": w, "w_ident": wi}
        for ws_ in (0.4, 0.5, 0.6):
            for at in (0.4, 0.5, 0.6):
                out[f"linear w{w} strong{ws_}@{at}"] = {"kind": "linear", "w": w, "w_strong": ws_, "strong_at": at}
    return out


EARLIER = {"fusion_norm": "ceiling", "lexical_weight": 0.3}  # the default before finding 19


def product(corpora: list[str], earlier: dict = EARLIER, splits: tuple[str, ...] = ("tuning", "heldout")) -> None:
    """Both splits through the real pipeline (`evaluate_retrieval`: `search`, duplicates collapsed):
    dense, lexical, hybrid with the settings' fusion, hybrid with EARLIER; paired bootstrap of
    hybrid now - earlier and now - the better single method."""
    from dataclasses import replace

    from archivist.models import embedder_for
    from archivist.retrieval.evaluate import QueryCache, evaluate_retrieval
    from archivist.retrieval.evaluation import paired_difference

    rows = []
    for c in corpora:
        ws = answers.workspace(c)
        embedder = QueryCache(embedder_for(ws.settings))
        now = (ws.settings.fusion_norm, ws.settings.lexical_weight)
        for split in splits:
            qs = [q for q in answers.questions(c, split) if q.relevant]
            r = evaluate_retrieval(ws, qs, modes=["dense", "lexical", "hybrid"], k=10, embedder=embedder)
            current = ws.settings
            ws.settings = replace(current, **earlier)
            try:
                old = evaluate_retrieval(ws, qs, modes=["hybrid"], k=10, embedder=embedder)
            finally:
                ws.settings = current
            m = r["modes"]
            mrr = lambda res, mode: [q[mode]["mrr@10"] for q in res["per_query"]]  # noqa: E731
            best = max(("dense", "lexical"), key=lambda k: m[k]["mrr@10"])
            d_old = paired_difference(mrr(r, "hybrid"), mrr(old, "hybrid"))
            d_best = paired_difference(mrr(r, "hybrid"), mrr(r, best))
            rows.append([c, split, len(qs), f"{m['dense']['mrr@10']:.3f}", f"{m['lexical']['mrr@10']:.3f}",
                         f"{old['modes']['hybrid']['hit@5']:.3f}", f"{old['modes']['hybrid']['mrr@10']:.3f}",
                         f"{m['hybrid']['hit@5']:.3f}", f"{m['hybrid']['mrr@10']:.3f}",
                         f"{d_old['diff']:+.3f} [{d_old['low']:+.3f}, {d_old['high']:+.3f}]",
                         f"{best} {d_best['diff']:+.3f} [{d_best['low']:+.3f}, {d_best['high']:+.3f}]"])
        ws.close()
    print(f"settings now: fusion_norm {now[0]}, lexical_weight {now[1]}; earlier: {earlier}")
    print(md_table(["corpus", "split", "questions", "dense MRR@10", "lexical MRR@10", "earlier hit@5", "earlier MRR@10",
                    "now hit@5", "now MRR@10", "now - earlier MRR@10", "now - better single"], rows))


def main(argv: list[str] | None = None) -> int:
    from archivist.retrieval.evaluation import paired_difference

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="git,handbook,python")
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--heldout", help="a JSON configuration to score on both splits (chosen on tuning beforehand)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--product", action="store_true", help="the settings' fusion against the earlier default, both splits")
    ap.add_argument("--earlier", help="--product: the settings to compare with, as JSON (default: finding 19's earlier fusion)")
    ap.add_argument("--split", default="tuning,heldout", help="--product: the splits to run")
    args = ap.parse_args(argv)
    if args.product:
        product(args.corpus.split(","), json.loads(args.earlier) if args.earlier else EARLIER, tuple(args.split.split(",")))
        return 0
    data = {c: collect(c, args.depth) for c in args.corpus.split(",")}
    if args.heldout:
        chosen = json.loads(args.heldout)
        rows = []
        for split in ("tuning", "heldout"):
            for c, qs in data.items():
                qs = [q for q in qs if q["split"] == split]
                mine, per_new = table(qs, lambda q: fused_order(q, chosen))
                base, per_old = table(qs, lambda q: fused_order(q, {"kind": "linear", "w": 0.3}))
                d, _ = table(qs, lambda q: single_order(q, 4))
                lx, _ = table(qs, lambda q: single_order(q, 5))
                diff = paired_difference([r["mrr@10"] for r in per_new], [r["mrr@10"] for r in per_old])
                best = max(("dense", d), ("lexical", lx), key=lambda t: t[1]["mrr@10"])
                _, per_best = table(qs, lambda q: single_order(q, 4 if best[0] == "dense" else 5))
                vs = paired_difference([r["mrr@10"] for r in per_new], [r["mrr@10"] for r in per_best])
                rows.append([c, split, len(qs), *[f"{v:.3f}" for v in (d["mrr@10"], lx["mrr@10"], base["hit@5"], base["mrr@10"],
                                                                          mine["hit@5"], mine["mrr@10"])],
                             f"{diff['diff']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]",
                             f"{best[0]} {vs['diff']:+.3f} [{vs['low']:+.3f}, {vs['high']:+.3f}]"])
        print(md_table(["corpus", "split", "questions", "dense MRR@10", "lexical MRR@10", "default hit@5", "default MRR@10",
                        "chosen hit@5", "chosen MRR@10", "chosen - default MRR@10", "chosen - better single"], rows))
        return 0
    tuning = {c: [q for q in qs if q["split"] == "tuning"] for c, qs in data.items()}
    pooled = [q for qs in tuning.values() for q in qs]
    single = {c: {"dense": table(qs, lambda q: single_order(q, 4))[0]["mrr@10"],
                  "lexical": table(qs, lambda q: single_order(q, 5))[0]["mrr@10"]} for c, qs in tuning.items()}
    log("tuning singles: " + json.dumps(single))
    results = []
    for name, p in grid().items():
        m, _ = table(pooled, lambda q: fused_order(q, p))
        per = {c: table(qs, lambda q: fused_order(q, p))[0]["mrr@10"] for c, qs in tuning.items()}
        worst = min(per[c] - max(single[c].values()) for c in per)
        results.append([name, f"{m['hit@5']:.3f}", f"{m['mrr@10']:.4f}", *[f"{per[c]:.3f}" for c in tuning], f"{worst:+.3f}"])
    results.sort(key=lambda r: -float(r[2]))
    print(md_table(["variant (tuning only)", "hit@5 pooled", "MRR@10 pooled", *[f"{c} MRR@10" for c in tuning],
                    "worst margin over better single"], results[:args.top] + [r for r in results if r[0] == "default"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
