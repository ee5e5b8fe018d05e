"""Pseudo-relevance feedback for the dense side of hybrid search, tried on the TUNING splits only.

    python bench/prf.py [--corpus git,handbook,python]

Per tuning question with a relevant page: the hybrid search as served (dense and lexical top
`candidates`, `fusion.fuse`), then, for each variant (m, beta), the query vector moved towards the
mean stored vector of the fused top m (Rocchio: q' = q + beta x mean, normalized), the dense side
searched again with q' and fused with the same lexical side. Document-level hit@5 and MRR@10 as
`evaluate_retrieval` credits them, against the served hybrid, paired bootstrap. Held-out questions
are never loaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import answers  # noqa: E402
from common import log  # noqa: E402

VARIANTS = [(m, beta) for m in (1, 3, 5) for beta in (0.25, 0.5, 1.0)]


def orders(ws, emb, question: str, cids: list[int]) -> dict:
    """Variant -> ranked chunk ids (the served hybrid under "base")."""
    from archivist.retrieval.fusion import cosines, fuse, stored_vectors
    from archivist.retrieval.search import dense, lexical_ranking

    k = ws.settings.candidates
    q = emb.embed([question])[0].astype(np.float32)
    lex = lexical_ranking(ws, question, cids, k)

    def ranked(qv):
        d = dense(ws, qv, cids, k)
        scores = fuse(ws, qv, d, lex, cosines(ws, [c for c, _ in lex.hits], qv))
        return sorted(scores, key=lambda c: (-scores[c], c))

    base = ranked(q)
    out = {"base": base}
    vecs = stored_vectors(ws, base[:max(m for m, _ in VARIANTS)])
    for m, beta in VARIANTS:
        fb = [vecs[c] for c in base[:m] if c in vecs]
        qv = q + beta * np.mean(fb, axis=0)
        out[(m, beta)] = ranked((qv / np.linalg.norm(qv)).astype(np.float32))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="git,handbook,python")
    args = ap.parse_args(argv)

    from archivist.models import embedder_for
    from archivist.retrieval.evaluation import credit, ranking_metrics

    per: dict = {}
    for corpus in args.corpus.split(","):
        ws = answers.workspace(corpus)
        emb = embedder_for(ws.settings)
        cids = [r[0] for r in ws.db.execute("SELECT id FROM collections")]
        for q in answers.questions(corpus, "tuning"):
            if not q.relevant:
                continue
            ranked = orders(ws, emb, q.question, cids)
            names = dict(ws.db.execute("SELECT c.id, d.path FROM chunks c JOIN documents d ON d.id = c.document_id "
                                       f"WHERE c.id IN ({','.join(str(c) for o in ranked.values() for c in o[:10])})"))
            for variant, order in ranked.items():
                m = ranking_metrics(credit([(names[c], c) for c in order[:10]], q.relevant), len(q.relevant))
                per.setdefault(variant, []).append((corpus, m["hit@5"], m["mrr@10"]))
        ws.close()
        log(f"{corpus}: {len(per['base'])} questions so far")
    rng = np.random.default_rng(0)
    base = np.array([r[2] for r in per["base"]])
    n = len(base)
    print(f"tuning questions: {n}; served hybrid hit@5 {np.mean([r[1] for r in per['base']]):.3f} MRR@10 {base.mean():.4f}")
    for corpus in args.corpus.split(","):
        rows = [r for r in per["base"] if r[0] == corpus]
        print(f"  {corpus}: {len(rows)}, hit@5 {np.mean([r[1] for r in rows]):.3f}, MRR@10 {np.mean([r[2] for r in rows]):.4f}")
    for variant in VARIANTS:
        mrr = np.array([r[2] for r in per[variant]])
        diff = mrr - base
        boots = [diff[rng.integers(0, n, n)].mean() for _ in range(5000)]
        by = " ".join(f"{c} {np.mean([r[2] for r in per[variant] if r[0] == c]):.3f}" for c in args.corpus.split(","))
        print(f"m={variant[0]} beta={variant[1]}: hit@5 {np.mean([r[1] for r in per[variant]]):.3f} MRR@10 {mrr.mean():.4f} "
              f"diff {diff.mean():+.4f} [{np.percentile(boots, 2.5):+.4f}, {np.percentile(boots, 97.5):+.4f}] ({by})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
