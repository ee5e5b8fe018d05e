"""Audit overhead at 100,000 chunks: `search` and `ask` with their audit record against the same
calls without it, alternated query by query (in rotating order) in the same run.

    python bench/audit.py --size small|full

The workspace is bench/query.py's (100,000 synthetic chunks). What is audited: every question
(`ask` writes its `question` record) and every search a user runs from the CLI or the API (the
surfaces write a `search` record after `search()`; the chat's own retrieval is part of its
question's record). "Without" runs the same call with the record skipped. Each record is one small
SQLite write transaction on the workspace (WAL, synchronous=NORMAL) holding the hash of the one
before it. Targets: at most 5% of search time and 3% of ask time.
"""

from __future__ import annotations

import time

from common import log, md_table, median, percentile, report, size, size_parser, timed
from query import build_workspace, questions


def main(argv=None) -> int:
    ap = size_parser(__doc__)
    ap.add_argument("--ask-queries", type=int, default=None, help="questions for ask (default 30 small, 100 full)")
    args = ap.parse_args(argv)
    s = size(args.size)
    from archivist import audit
    from archivist.models import embedder_for
    from archivist.retrieval.answer import ask
    from archivist.retrieval.llm import llm_for
    from archivist.retrieval.search import search

    ws = build_workspace(s["query_chunks"])
    # The synthetic build inserts 100,000 chunks in one transaction, leaving a WAL as large as the
    # database that every later commit would try to checkpoint (ingestion commits in small batches
    # and never leaves one). Start where a running workspace is: the WAL checkpointed.
    busy, wal_pages, _ = ws.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    log(f"WAL checkpoint: {wal_pages} pages, busy={busy}")
    embedder, llm = embedder_for(ws.settings), llm_for(ws.settings)
    qs = questions(s["query_queries"])
    n_ask = args.ask_queries or (30 if args.size == "small" else 100)
    record_question = audit.question
    for q in qs[:5]:  # warm up: page the indexes in, load the models
        search(ws, q, k=10)
        ask(ws, q, llm=llm, embedder=embedder)

    def search_plain(q):
        t0 = time.perf_counter()
        search(ws, q, k=10)
        return time.perf_counter() - t0

    def search_audited(q):  # what `archivist search` and POST /v1/search do
        t0 = time.perf_counter()
        hits = search(ws, q, k=10)
        audit.searched(ws, None, "cli", q, hits, None)
        return time.perf_counter() - t0

    def ask_audited(q):
        t0 = time.perf_counter()
        ask(ws, q, llm=llm, embedder=embedder)
        return time.perf_counter() - t0

    def ask_plain(q):
        audit.question = lambda *a, **k: 0  # the same ask, its record skipped
        try:
            t0 = time.perf_counter()
            ask(ws, q, llm=llm, embedder=embedder)
            return time.perf_counter() - t0
        finally:
            audit.question = record_question

    results = {}
    for label, runners, queries in (("search", [("plain", search_plain), ("audited", search_audited)], qs),
                                    ("ask", [("plain", ask_plain), ("audited", ask_audited)], qs[:n_ask])):
        per_repeat = {name: [] for name, _ in runners}
        for r in range(s["repeats"]):
            times = {name: [] for name, _ in runners}
            for i, q in enumerate(queries):
                for name, fn in runners[i % 2:] + runners[:i % 2]:  # rotate which goes first
                    times[name].append(fn(q))
            for name, t in times.items():
                per_repeat[name].append((percentile(t, 50) * 1000, percentile(t, 95) * 1000, sum(t) / len(t) * 1000))
            log(f"{label} repeat {r + 1}: " + ", ".join(f"{n} p50 {v[-1][0]:.2f} ms" for n, v in per_repeat.items()))
        results[label] = per_repeat
    # the record alone, timed directly: the overhead without the noise of two whole calls
    hits = search(ws, qs[0], k=10)
    answer = ask(ws, qs[0], llm=llm, embedder=embedder)
    rec_search = median([timed(lambda: audit.searched(ws, None, "cli", qs[0], hits, None)) for _ in range(200)]) * 1000
    rec_ask = median([timed(lambda: audit.question(ws, answer, None, "cli", None)) for _ in range(200)]) * 1000

    rows, data = [], {"per_repeat": results, "record_ms": {"search": rec_search, "question": rec_ask}}
    for label, target, rec in (("search", 0.05, rec_search), ("ask", 0.03, rec_ask)):
        plain = median([p[0] for p in results[label]["plain"]])
        audited = median([p[0] for p in results[label]["audited"]])
        mean_plain = median([p[2] for p in results[label]["plain"]])
        mean_audited = median([p[2] for p in results[label]["audited"]])
        rows.append([label, plain, audited, audited / plain, mean_audited / mean_plain, rec, rec / plain, f"<= {1 + target:.2f}"])
        data[label] = {"p50_plain_ms": plain, "p50_audited_ms": audited, "p50_ratio": audited / plain,
                       "mean_ratio": mean_audited / mean_plain, "record_ms": rec, "record_share": rec / plain}
    body = (f"{s['query_chunks']:,} chunks (bench/query.py's synthetic workspace), {len(qs)} questions for search and "
            f"{n_ask} for ask x {s['repeats']} repeats, alternated; ask in the default answer mode with "
            f"{ws.settings.llm}. Audited: each question and each CLI/API search writes one hash-chained record.\n\n"
            + md_table(["", "p50 ms plain", "p50 ms audited", "p50 ratio", "mean ratio", "record alone ms",
                        "record / p50 plain", "target"], rows) + "\n")
    report("audit", f"Audit overhead ({args.size})", body, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
