"""Chunks that hold only a heading, and a chunker without them, on the TUNING splits only.

    python bench/heading_chunks.py [--corpus git,handbook,python] [--before REV] [--root DIR] [--answers]
    python bench/heading_chunks.py --count git,handbook,python,valgrind   # stored workspaces only

A heading with no text of its own under it (a page's title before its first subsection, a chapter's,
a heading over a table) was a chunk of its own: it took top-k places and was quoted as the answer.
`--count` says how many the corpora's stored workspaces (bench/data/ws/public-<corpus>, built by
bench/answers.py) hold, opened read-only. Otherwise, per corpus, a copy of that workspace at
ROOT/<corpus> gets the corpus ingested twice more: into collection "before" with the chunker of git
revision REV (its ingest/chunking.py; default HEAD) and into "after" with the working tree's. A
chunk whose heading and text are the same in both reuses its stored vector, so only the chunks that
changed are embedded; BM25 counts over the searched collection alone, so each is scored as if it
were alone. Its tuning questions are scored in each (dense, lexical, hybrid; document-level hit@5
and MRR@10, `evaluate_retrieval`), after against before by `evaluation.paired_difference`
(questions drawn by their relevant document), per corpus and pooled; the heading-only chunks among
each question's top 5 are counted, and "text hit@5" and "text mrr@10" credit a question only with a
passage that is not heading-only (one a quote can come from). With `--answers` each question is also
asked in extractive mode on both sides: headings shown as the answer, key accuracy. Held-out
questions are never scored. Once the change is committed, name the commit before it as REV.
Writes bench/data/results/heading-chunks.json.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, log, machine, module_at, open_ws, save_result  # noqa: E402

import answers  # noqa: E402

MODES = ["dense", "lexical", "hybrid"]


def heading_only(text: str, heading: str) -> bool:
    """Whether a stored chunk holds nothing but headings: each of its blocks is a name on its heading
    path (joined by ' > ' in the chunks table)."""
    names = {h.strip() for h in heading.split(" > ")} if heading else set()
    return all(part.strip() in names for part in text.split("\n\n"))


def count(corpus: str) -> dict:
    """Chunks and heading-only chunks of the corpus's stored workspace, and what follows each of those."""
    db = sqlite3.connect(f"file:{DATA / 'ws' / f'public-{corpus}' / 'archivist.db'}?mode=ro", uri=True)
    rows = db.execute("SELECT document_id, text, heading, page FROM chunks ORDER BY document_id, seq").fetchall()
    out = {"chunks": len(rows), "heading-only": 0, "next under it": 0, "next same heading": 0, "other": 0}
    for k, (doc, text, heading, page) in enumerate(rows):
        if not heading_only(text, heading):
            continue
        out["heading-only"] += 1
        nxt = rows[k + 1] if k + 1 < len(rows) and rows[k + 1][0] == doc and rows[k + 1][3] == page else None
        key = ("other" if nxt is None else "next same heading" if nxt[2] == heading
               else "next under it" if nxt[2].startswith(heading + " > ") else "other")
        out[key] += 1
    db.close()
    return out


def chunker(rev: str):
    """ingest/chunking.py as it was at git revision `rev`, loaded as a module of its own."""
    return module_at(rev, "ingest/chunking.py", "chunking_before")


def ingested(home: Path, corpus: str, collection: str, module) -> None:
    """The corpus ingested into `collection` of the workspace at `home` with the chunker `module`
    (once: a marker says it finished). Ingestion reads chunking through `reading.chunking`."""
    from archivist.ingest import reading
    from archivist.ingest.pipeline import ingest_paths

    done = home / f"ingested-{collection}"
    if done.exists():
        return
    own, reading.chunking = reading.chunking, module
    try:
        with open_ws(home) as ws:
            t0 = time.perf_counter()
            ingest_paths(ws, [answers.build_corpus(corpus)], collection=collection, progress=False)
            done.write_text(f"{time.perf_counter() - t0:.0f} s\n")
            log(f"{corpus} {collection}: ingested in {time.perf_counter() - t0:.0f} s")
    finally:
        reading.chunking = own


def quotes(ws, qs, side: str, per_query: list[dict]) -> dict:
    """Each question asked in extractive mode in collection `side`: how many answers show a heading
    as their quote (the shown text, citation marks left out, is a name on a passage's heading path),
    and key accuracy (`answer_metrics`); each question's key_right goes into its per_query row."""
    import re

    from archivist.retrieval.answer import ask
    from archivist.retrieval.evaluate import outcome_of
    from archivist.retrieval.evaluation import answer_metrics, key_right

    outcomes, headings = [], 0
    for q, row in zip(qs, per_query):
        a = ask(ws, q.question, collections=[side], adapter=None, mode="extractive")
        shown = re.sub(r"\s*\[\d+\]", "", a.body).strip()
        headings += bool(shown) and any(shown == h.strip() for p in a.passages for h in p.heading)
        o = outcome_of(q, a)
        outcomes.append(o)
        row["answer"] = {"key_right": float(key_right(o)), "shown": shown[:200], "status": o.status}
    m = answer_metrics(outcomes)
    return {"heading shown as the answer": headings, "key_accuracy": m["key_accuracy"],
            "confident_miss_rate": m["confident_miss_rate"]}


def run(corpus: str, rev: str, root: Path, with_answers: bool = False) -> dict:
    from archivist.ingest import chunking
    from archivist.retrieval.evaluate import evaluate_retrieval
    from archivist.retrieval.evaluation import credit, distinct, ranking_metrics
    from archivist.retrieval.search import search

    home = root / corpus
    if not home.exists():
        shutil.copytree(DATA / "ws" / f"public-{corpus}", home)
    ingested(home, corpus, "before", chunker(rev))
    ingested(home, corpus, "after", chunking)
    qs = [q for q in answers.questions(corpus, "tuning") if q.relevant]
    scored = {}
    with open_ws(home) as ws:
        for side in ("before", "after"):
            cid = ws.collection_id(side)
            stored = ws.db.execute("SELECT c.text, c.heading FROM chunks c JOIN documents d ON d.id = c.document_id "
                                   "WHERE d.collection_id = ?", (cid,)).fetchall()
            r = evaluate_retrieval(ws, qs, modes=MODES, k=10, collections=[side])
            top5 = {}
            for mode in MODES:
                top5[mode] = 0
                for q, row in zip(qs, r["per_query"]):
                    hits = search(ws, q.question, k=10, collections=[side], mode=mode)
                    junk = [heading_only(h.text, " > ".join(h.heading)) for h in hits]
                    top5[mode] += sum(junk[:5])
                    # Found by a passage that can be quoted: heading-only passages earn no credit.
                    credited = credit([(h.document, h.chunk_id) for h, j in zip(hits, junk) if not j], distinct(q.relevant))
                    m = ranking_metrics(credited, len(distinct(q.relevant)))
                    row[mode].update({"text hit@5": m["hit@5"], "text mrr@10": m["mrr@10"]})
            scored[side] = {"chunks": len(stored), "heading-only": sum(heading_only(t, h) for t, h in stored),
                            "heading-only in top 5": top5, "modes": r["modes"], "per_query": r["per_query"]}
            if with_answers:
                scored[side]["answers"] = quotes(ws, qs, side, r["per_query"])
    per_query = {s: v.pop("per_query") for s, v in scored.items()}
    groups = [(corpus, *sorted(q.relevant)) for q in qs]
    return {"questions": len(qs), "sides": scored, "differences": differences(per_query, groups),
            "per_query": per_query, "groups": groups}


def differences(per_query: dict, groups: list) -> dict:
    """After against before, per mode, questions drawn by their relevant documents."""
    from archivist.retrieval.evaluation import paired_difference

    out = {f"{mode}/{m}": paired_difference([q[mode][m] for q in per_query["after"]],
                                            [q[mode][m] for q in per_query["before"]], groups=groups)
           for mode in MODES for m in ("hit@5", "mrr@10", "text hit@5", "text mrr@10")}
    if "answer" in per_query["after"][0]:
        out["extractive/key_right"] = paired_difference([q["answer"]["key_right"] for q in per_query["after"]],
                                                        [q["answer"]["key_right"] for q in per_query["before"]], groups=groups)
    return out


def show(what: str, diffs: dict) -> None:
    for key, d in diffs.items():
        log(f"{what} after-before {key}: {d['diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] "
            f"better {d['better']} worse {d['worse']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="git,handbook,python", help="corpora with a tuning split")
    p.add_argument("--count", help="only count heading-only chunks in these corpora's stored workspaces")
    p.add_argument("--before", default="HEAD", help="git revision whose ingest/chunking.py is the baseline (the commit before the change once it is committed)")
    p.add_argument("--root", default=str(DATA / "ws" / "heading-chunks"))
    p.add_argument("--answers", action="store_true", help="also ask each question in extractive mode on both sides")
    args = p.parse_args()
    if args.count:
        for corpus in args.count.split(","):
            log(f"{corpus}: {count(corpus)}")
        return
    results = {"machine": machine(), "before": args.before, "corpora": {}}
    for corpus in args.corpus.split(","):
        r = results["corpora"][corpus] = run(corpus, args.before, Path(args.root), args.answers)
        for side, v in r["sides"].items():
            log(f"{corpus} {side}: {v['chunks']} chunks, {v['heading-only']} heading-only, in top 5 "
                f"{v['heading-only in top 5']} of {5 * r['questions']}; " + "; ".join(
                    f"{m} hit@5 {v['modes'][m]['hit@5']:.3f} mrr@10 {v['modes'][m]['mrr@10']:.3f}" for m in MODES)
                + (f"; extractive answers {v['answers']}" if "answers" in v else ""))
        show(corpus, r["differences"])
        save_result("heading-chunks", results)
    corpora = results["corpora"].values()
    results["all"] = differences({s: [q for r in corpora for q in r["per_query"][s]] for s in ("before", "after")},
                                 [g for r in corpora for g in r["groups"]])
    show("all corpora", results["all"])
    save_result("heading-chunks", results)


if __name__ == "__main__":
    main()
