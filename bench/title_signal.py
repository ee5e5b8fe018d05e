"""Two more signals over hybrid search's candidates, tried on the TUNING splits only.

    python bench/title_signal.py [--corpus git,handbook,python]

Per tuning question with a relevant page: the hybrid search as served (`fusion.fuse` over the dense
and lexical top `candidates`), then each candidate's fused score plus
  heading  lam x the cosine of the query with the embedding of the chunk's document title and
           heading path (a dense title field, beside BM25F's lexical one), or
  page     gam x the best fused score of another candidate chunk of the same page (a page that
           holds two good chunks rises).
Document-level hit@5 and MRR@10 as `evaluate_retrieval` credits them, against the served hybrid,
paired bootstrap. Held-out questions are never loaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import answers  # noqa: E402
from common import log  # noqa: E402

VARIANTS = [("heading", lam) for lam in (0.05, 0.1, 0.2, 0.3)] + [("page", gam) for gam in (0.1, 0.25, 0.5)]


def label(title: str, heading: str) -> str:
    return heading if heading.startswith(title) else f"{title} > {heading}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="git,handbook,python")
    args = ap.parse_args(argv)

    from archivist.models import embedder_for
    from archivist.retrieval.evaluation import credit, ranking_metrics
    from archivist.retrieval.fusion import cosines, fuse
    from archivist.retrieval.search import dense, lexical_ranking

    per: dict = {}
    for corpus in args.corpus.split(","):
        ws = answers.workspace(corpus)
        emb = embedder_for(ws.settings)
        cids = [r[0] for r in ws.db.execute("SELECT id FROM collections")]
        rows = ws.db.execute("SELECT c.id, d.path, d.title, c.heading FROM chunks c JOIN documents d ON d.id = c.document_id").fetchall()
        page = {r[0]: r[1] for r in rows}
        labels = {r[0]: label(r[2] or "", r[3] or "") for r in rows}
        unique = sorted(set(labels.values()))
        vec = dict(zip(unique, emb.embed(unique)))
        log(f"{corpus}: {len(unique)} heading labels embedded")
        k = ws.settings.candidates
        for q in answers.questions(corpus, "tuning"):
            if not q.relevant:
                continue
            qv = emb.embed([q.question])[0].astype(np.float32)
            lex = lexical_ranking(ws, q.question, cids, k)
            d = dense(ws, qv, cids, k)
            fused = fuse(ws, qv, d, lex, cosines(ws, [c for c, _ in lex.hits], qv))
            orders = {"base": fused}
            tcos = {c: float(vec[labels[c]] @ qv) for c in fused}
            best: dict[str, list[float]] = {}
            for c, s in fused.items():
                best.setdefault(page[c], []).append(s)
            second = {p: sorted(v, reverse=True) for p, v in best.items()}
            for kind, w in VARIANTS:
                if kind == "heading":
                    orders[(kind, w)] = {c: s + w * tcos[c] for c, s in fused.items()}
                else:  # the best score of another chunk of its page: the page's best, or its second for the best chunk
                    orders[(kind, w)] = {c: s + w * (second[page[c]][1] if second[page[c]][0] == s and len(second[page[c]]) > 1
                                                     else (second[page[c]][0] if second[page[c]][0] != s else 0.0))
                                         for c, s in fused.items()}
            for variant, scores in orders.items():
                order = sorted(scores, key=lambda c: (-scores[c], c))[:10]
                m = ranking_metrics(credit([(page[c], c) for c in order], q.relevant), len(q.relevant))
                per.setdefault(variant, []).append((corpus, m["hit@5"], m["mrr@10"]))
        ws.close()
    rng = np.random.default_rng(0)
    base = np.array([r[2] for r in per["base"]])
    n = len(base)
    corpora = args.corpus.split(",")
    print(f"tuning questions: {n}; served hybrid hit@5 {np.mean([r[1] for r in per['base']]):.3f} MRR@10 {base.mean():.4f} ("
          + " ".join(f"{c} {np.mean([r[2] for r in per['base'] if r[0] == c]):.3f}" for c in corpora) + ")")
    for variant in VARIANTS:
        mrr = np.array([r[2] for r in per[variant]])
        diff = mrr - base
        boots = [diff[rng.integers(0, n, n)].mean() for _ in range(5000)]
        by = " ".join(f"{c} {np.mean([r[2] for r in per[variant] if r[0] == c]):.3f}" for c in corpora)
        print(f"{variant[0]} {variant[1]}: hit@5 {np.mean([r[1] for r in per[variant]]):.3f} MRR@10 {mrr.mean():.4f} "
              f"diff {diff.mean():+.4f} [{np.percentile(boots, 2.5):+.4f}, {np.percentile(boots, 97.5):+.4f}] ({by})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
