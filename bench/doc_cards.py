"""Document cards: one vector per document (its title and opening), tried on the TUNING splits only.

    python bench/doc_cards.py [--corpus git,handbook,python] [--card-chars 1000]

A manual's page often says what it is for in its first lines ("git-worktree - Manage multiple
working trees"), while a paraphrased question ("a second branch checked out in another folder")
matches none of its chunks well enough to reach the candidates. Per document, a card (title, then
the first `card-chars` characters of its text) is embedded once. Per tuning question: the served
hybrid (`fusion.fuse` over the dense and lexical top `candidates`); each variant (M, lam) adds the
best chunk (by cosine) of each of the M documents whose cards are nearest the query to the dense
candidates, fuses again, and adds lam x the card cosine of each candidate's document. Document-level
hit@5 and MRR@10 as `evaluate_retrieval` credits them, paired bootstrap against the served hybrid.
Held-out questions are never loaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import answers  # noqa: E402
from common import log  # noqa: E402

VARIANTS = [(m, lam) for m in (0, 5, 10) for lam in (0.05, 0.1, 0.2, 0.3)] + [(5, 0.0), (10, 0.0)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="git,handbook,python")
    ap.add_argument("--card-chars", type=int, default=1000)
    args = ap.parse_args(argv)

    from archivist.models import embedder_for
    from archivist.retrieval.evaluation import credit, ranking_metrics
    from archivist.retrieval.fusion import cosines, fuse, stored_vectors
    from archivist.retrieval.search import dense, lexical_ranking

    per: dict = {}
    corpora = args.corpus.split(",")
    for corpus in corpora:
        ws = answers.workspace(corpus)
        emb = embedder_for(ws.settings)
        cids = [r[0] for r in ws.db.execute("SELECT id FROM collections")]
        docs = ws.db.execute("SELECT id, path, title, text FROM documents").fetchall()
        doc_ids = [r[0] for r in docs]
        cards = np.asarray(emb.embed([f"{r[2] or ''}\n{(r[3] or '')[: args.card_chars]}" for r in docs]), np.float32)
        chunk_rows = ws.db.execute("SELECT c.id, c.document_id, d.path FROM chunks c JOIN documents d ON d.id = c.document_id").fetchall()
        doc_of = {r[0]: r[1] for r in chunk_rows}
        page = {r[0]: r[2] for r in chunk_rows}
        chunks_of: dict[int, list[int]] = {}
        for r in chunk_rows:
            chunks_of.setdefault(r[1], []).append(r[0])
        log(f"{corpus}: {len(docs)} cards embedded")
        k = ws.settings.candidates
        for q in answers.questions(corpus, "tuning"):
            if not q.relevant:
                continue
            qv = emb.embed([q.question])[0].astype(np.float32)
            card_cos = dict(zip(doc_ids, (cards @ qv).tolist()))
            near = sorted(doc_ids, key=lambda d: -card_cos[d])
            lex = lexical_ranking(ws, q.question, cids, k)
            d = dense(ws, qv, cids, k)
            lex_cos = cosines(ws, [c for c, _ in lex.hits], qv)
            orders = {"base": fuse(ws, qv, d, lex, lex_cos)}
            for m in sorted({m for m, _ in VARIANTS}):
                have = {c for c, _ in d}
                extra = []
                for doc in near[:m]:
                    vecs = stored_vectors(ws, chunks_of[doc])
                    best = max(vecs, key=lambda c: float(vecs[c] @ qv))
                    if best not in have:
                        extra.append((best, float(vecs[best] @ qv)))
                fused = fuse(ws, qv, sorted(d + extra, key=lambda x: -x[1]), lex, lex_cos)
                for mm, lam in VARIANTS:
                    if mm == m:
                        orders[(m, lam)] = {c: s + lam * card_cos[doc_of[c]] for c, s in fused.items()}
            for variant, scores in orders.items():
                order = sorted(scores, key=lambda c: (-scores[c], c))[:10]
                mt = ranking_metrics(credit([(page[c], c) for c in order], q.relevant), len(q.relevant))
                per.setdefault(variant, []).append((corpus, mt["hit@5"], mt["mrr@10"]))
        ws.close()
    rng = np.random.default_rng(0)
    base = np.array([r[2] for r in per["base"]])
    n = len(base)
    print(f"tuning questions: {n}; served hybrid hit@5 {np.mean([r[1] for r in per['base']]):.3f} MRR@10 {base.mean():.4f} ("
          + " ".join(f"{c} {np.mean([r[1] for r in per['base'] if r[0] == c]):.3f}/{np.mean([r[2] for r in per['base'] if r[0] == c]):.3f}"
                     for c in corpora) + ")")
    for variant in VARIANTS:
        mrr = np.array([r[2] for r in per[variant]])
        diff = mrr - base
        boots = [diff[rng.integers(0, n, n)].mean() for _ in range(5000)]
        by = " ".join(f"{c} {np.mean([r[1] for r in per[variant] if r[0] == c]):.3f}/{np.mean([r[2] for r in per[variant] if r[0] == c]):.3f}"
                      for c in corpora)
        print(f"M={variant[0]} lam={variant[1]}: hit@5 {np.mean([r[1] for r in per[variant]]):.3f} MRR@10 {mrr.mean():.4f} "
              f"diff {diff.mean():+.4f} [{np.percentile(boots, 2.5):+.4f}, {np.percentile(boots, 97.5):+.4f}] (hit@5/MRR {by})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
