"""Chunk vectors embedded with their document's lead: retrieval on the public tuning splits (finding 41).

    python bench/context.py [--corpus git,handbook,python] [--lead-words 30] [--split tuning]

A chunk deep in a manual page (git-worktree's OPTIONS) carries its heading path when embedded, but not
what the page is for ("Manage multiple working trees"), which is what people's paraphrased questions
describe (finding 37: git's misses). Here every chunk but a document's first is embedded as
"heading path, the first `--lead-words` words of the document, the chunk", on a copy of
bench/data/ws/public-<corpus> (bench/answers.py ingests it), and dense and hybrid search are scored
before and after on people's questions of one split, with the paired bootstrap difference of MRR@10
and hit@5. Nothing in the product changes; the copy is re-embedded in place.
Writes bench/data/results/context-<corpus>.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import log, machine, open_ws, save_result  # noqa: E402

import answers  # noqa: E402

MODES = ["dense", "hybrid"]


def reembed_with_leads(ws, words: int) -> int:
    """Embed every chunk but its document's first under its heading path, the first `words` words of
    that first chunk, then its text; rebuild the indexes. Returns the number of chunks."""
    from archivist.ingest.pipeline import reindex
    from archivist.ingest.writing import embed_text
    from archivist.models import embedder_for

    rows = ws.db.execute("SELECT id, document_id, text, heading FROM chunks ORDER BY document_id, seq").fetchall()
    inputs, lead = [], {}
    for r in rows:
        if r["document_id"] in lead:
            head = lead[r["document_id"]]
            inputs.append(embed_text(f"{head}\n{r['text']}" if head else r["text"], r["heading"]))
        else:  # the document's first chunk: its lead is its own beginning
            lead[r["document_id"]] = " ".join(r["text"].split()[:words])
            inputs.append(embed_text(r["text"], r["heading"]))
    vecs = np.asarray(embedder_for(ws.settings).embed(inputs, batch_size=ws.settings.embed_batch), np.float32)
    with ws.db:
        ws.db.executemany("UPDATE chunks SET embedding = ? WHERE id = ?", [(v.tobytes(), r["id"]) for r, v in zip(rows, vecs)])
    reindex(ws, progress=False)
    return len(rows)


def score(ws, corpus: str, split: str) -> dict:
    from archivist.retrieval.evaluate import evaluate_retrieval

    qs = [q for q in answers.questions(corpus, split) if q.relevant]
    return evaluate_retrieval(ws, qs, modes=MODES, k=10)


def run(corpus: str, words: int, split: str) -> dict:
    from archivist.retrieval.evaluation import paired_difference

    home = answers.workspace_copy(corpus, "context")
    with open_ws(home) as ws:
        base = score(ws, corpus, split)
        t0 = time.perf_counter()
        n = reembed_with_leads(ws, words)
        log(f"{corpus}: {n} chunks re-embedded with their document's lead in {time.perf_counter() - t0:.0f} s")
    with open_ws(home) as ws:
        after = score(ws, corpus, split)
    diffs = {}
    for mode in MODES:
        for m in ("hit@5", "mrr@10"):
            d = paired_difference([q[mode][m] for q in after["per_query"]], [q[mode][m] for q in base["per_query"]])
            diffs[f"{mode}/{m}"] = d
            log(f"{corpus}/{split}/{mode}/{m}: {base['modes'][mode][m]:.3f} -> {after['modes'][mode][m]:.3f}, "
                f"{d['diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]")
    result = {"corpus": corpus, "split": split, "lead_words": words, "machine": machine(),
              "base": base["modes"], "context": after["modes"], "differences": diffs,
              "per_query": [{"question": b["question"], "base": b["hybrid"]["mrr@10"], "context": a["hybrid"]["mrr@10"]}
                            for b, a in zip(base["per_query"], after["per_query"])]}
    save_result(f"context-{corpus}", result)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="git,handbook,python")
    ap.add_argument("--lead-words", type=int, default=30)
    ap.add_argument("--split", choices=("tuning", "heldout"), default="tuning")
    args = ap.parse_args(argv)
    for corpus in args.corpus.split(","):
        run(corpus, args.lead_words, args.split)
    return 0


if __name__ == "__main__":
    sys.exit(main())
