"""Chunks cut at what the embedder reads, against the default, on the TUNING splits only.

    python bench/chunk_limit.py [--corpus handbook,python,git] [--sizes 256,254] [--root DIR]

all-MiniLM-L6-v2 reads 256 tokens, [CLS] and [SEP] included, and the chunker counts a chunk's
tokens without them: a full 256-token chunk loses its last 2 tokens to truncation (they stay in the
lexical index and, inside a section, in the next chunk's overlap). Each public corpus is ingested
fresh, with the current code, into ROOT/<corpus>-<base> (the first of `--sizes`, collection
"default"), then once more per other ARCHIVIST_CHUNK_TOKENS into collection "chunks-<size>" of the
same workspace: a chunk whose text is the same at both sizes (a section shorter than either) reuses
its stored vector, bit for bit, which makes the second ingest several times faster; BM25 counts over
the searched collection alone, so each size is scored as if it were alone. An ingested one is reused.
Its tuning questions are scored by `evaluate_retrieval` in each collection (dense, lexical, hybrid;
document-level hit@5 and MRR@10), each other size against the base by `evaluation.paired_difference`,
questions drawn by their relevant document (the split is drawn by document). Held-out questions are
never scored.
Writes bench/data/results/chunk-limit.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import log, machine, open_ws, save_result  # noqa: E402

import answers  # noqa: E402

MODES = ["dense", "lexical", "hybrid"]


def ingested(home: Path, corpus: str, size: int, collection: str):
    """The workspace at `home` with the corpus ingested into `collection` with chunks of `size`
    tokens (once: a marker says it finished)."""
    from archivist.ingest.pipeline import ingest_paths

    ws = open_ws(home, chunk_tokens=size)
    done = home / f"ingested-{collection}"
    if not done.exists():
        t0 = time.perf_counter()
        ingest_paths(ws, [answers.build_corpus(corpus)], collection=collection, progress=False)
        done.write_text(f"{time.perf_counter() - t0:.0f} s\n")
        log(f"{corpus} at {size} tokens: ingested in {time.perf_counter() - t0:.0f} s")
    return ws


def run(corpus: str, sizes: list[int], root: Path) -> dict:
    from archivist.retrieval.evaluate import evaluate_retrieval

    qs = [q for q in answers.questions(corpus, "tuning") if q.relevant]
    scored = {}
    for size in sizes:
        collection = "default" if size == sizes[0] else f"chunks-{size}"
        ws = ingested(root / f"{corpus}-{sizes[0]}", corpus, size, collection)
        chunks, full = ws.db.execute(
            "SELECT COUNT(*), SUM(c.n_tokens >= ?) FROM chunks c JOIN documents d ON d.id = c.document_id "
            "WHERE d.collection_id = ?", (size - 1, ws.collection_id(collection))).fetchone()
        r = evaluate_retrieval(ws, qs, modes=MODES, k=10, collections=[collection])
        scored[size] = {"chunks": chunks, "chunks within 1 token of the size": full, "modes": r["modes"],
                        "per_query": r["per_query"]}
        ws.close()
    per_query = {s: r.pop("per_query") for s, r in scored.items()}
    groups = [(corpus, *sorted(q.relevant)) for q in qs]
    return {"questions": len(qs), "sizes": scored, "differences": differences(per_query, groups, sizes),
            "per_query": per_query, "groups": groups}


def differences(per_query: dict, groups: list, sizes: list[int]) -> dict:
    """Each size's hit@5 and MRR@10 against the base's (the first size), per mode, questions drawn by
    their relevant documents."""
    from archivist.retrieval.evaluation import paired_difference

    out = {}
    for size in sizes[1:]:
        for mode in MODES:
            for m in ("hit@5", "mrr@10"):
                a = [q[mode][m] for q in per_query[size]]
                b = [q[mode][m] for q in per_query[sizes[0]]]
                out[f"{size}-{sizes[0]}/{mode}/{m}"] = paired_difference(a, b, groups=groups)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="handbook,python,git")
    p.add_argument("--sizes", default="256,254", help="chunk sizes in tokens; the first is the base")
    p.add_argument("--root", default=str(Path(__file__).resolve().parent / "data" / "ws" / "chunk-limit"))
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {"machine": machine(), "sizes": sizes, "corpora": {}}
    for corpus in args.corpus.split(","):
        r = results["corpora"][corpus] = run(corpus, sizes, Path(args.root))
        for s, v in r["sizes"].items():
            log(f"{corpus} {s}: {v['chunks']} chunks ({v['chunks within 1 token of the size']} full); " + "; ".join(
                f"{m} hit@5 {v['modes'][m]['hit@5']:.3f} mrr@10 {v['modes'][m]['mrr@10']:.3f}" for m in MODES))
        show(corpus, r["differences"])
        save_result("chunk-limit", results)
    corpora = results["corpora"].values()
    results["all"] = differences({s: [q for r in corpora for q in r["per_query"][s]] for s in sizes},
                                 [g for r in corpora for g in r["groups"]], sizes)
    show("all corpora", results["all"])
    save_result("chunk-limit", results)


def show(what: str, diffs: dict) -> None:
    for key, d in diffs.items():
        log(f"{what} {key}: {d['diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] better {d['better']} worse {d['worse']}")


if __name__ == "__main__":
    main()
