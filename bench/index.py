"""The vector index at scale: flat (exact) against IVF-PQ, with and without OPQ, re-scored with the
exact vectors, on real chunk embeddings.

    python bench/index.py embed [--limit 200000]     embed the corpus once, cached (resumable)
    python bench/index.py run [--n 200000]           flat vs IVF-PQ (± OPQ): memory, recall@10, latency

`embed` chunks and embeds public Debian documentation exactly as ingestion does (the readers,
256-token chunks with 32 overlap, the heading path before the text, the default embedder) and
appends the vectors to bench/data/index-vectors/ in shards of SHARD chunks; run it again and it goes
on from the last shard. Sources, in order: the git manual (git-doc), the Debian Administrator's
Handbook (en-US), the whole Python 3.11 documentation (its reST sources), the Linux kernel's
documentation (linux-doc) and Rust's (rust-doc: its books first, then the standard library's API
pages, `core` last); the Debian packages are installed with apt-get when missing. A chunk whose text
was embedded already (API pages repeat: `std` re-exports `core`) is skipped, so the index holds no
exact duplicates, whose ties would blur recall. Never PostgreSQL's documentation.

`run` takes the first --n vectors, holds out --queries of them (a seeded sample spread over the
sources) as queries (real chunk embeddings, so each query has near neighbours, as a question about
the corpus has), and builds each index the
way retrieval/vectors.py does, timing the build. Recall@10 is against the flat index's exact top
10; memory is the serialized index's bytes per vector; latency is one query at a time (as a search
is), p50 and p95, the indexes alternated in rounds. The compressed indexes' re-scoring reads the
candidates' exact vectors from a SQLite table as retrieval does (chunks.embedding), so its cost is in
the latency.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import time
from pathlib import Path

import numpy as np

from common import DATA, log, machine, md_table, report

CACHE = DATA / "index-vectors"
SHARD = 2000
SOURCES = [
    Path("/usr/share/doc/git-doc"),
    Path("/usr/share/doc/debian-handbook/html/en-US"),
    Path("/usr/share/doc/python3.11/html/_sources"),
    Path("/usr/share/doc/linux-doc-6.1/html/_sources"),
    Path("/usr/share/doc/rust-doc/html"),
]
PACKAGES = ["git-doc", "debian-handbook", "python3.11-doc", "linux-doc-6.1", "rust-doc"]
RUST_FIRST = ("book", "reference", "rust-by-example", "nomicon", "edition-guide", "embedded-book", "rustc",
              "rustdoc", "unstable-book", "std", "alloc", "proc_macro", "test")  # then core: thousands of SIMD intrinsics
RUST_SKIP = ("src", "implementors")  # source listings and generated implementor lists, not documentation


# -- embed once ------------------------------------------------------------------------------------


def source_files() -> list[Path]:
    """Every readable page of the sources, in a fixed order (so shards mean the same chunks)."""
    out = []
    for root in SOURCES:
        if root.exists():
            files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".html", ".txt")
                           and "_static" not in p.parts and "_images" not in p.parts)
            out += _rust_order(root, files) if root.parts[-2] == "rust-doc" else files
    return out


def _rust_order(root: Path, files: list[Path]) -> list[Path]:
    """rust-doc's pages without source listings, books before API pages, `core` last."""
    def top(p: Path) -> str:
        rel = p.relative_to(root).parts
        return rel[0] if len(rel) > 1 else ""
    rank = {name: i for i, name in enumerate(("",) + RUST_FIRST)}
    kept = [p for p in files if top(p) not in RUST_SKIP]
    return sorted(kept, key=lambda p: (rank.get(top(p), len(rank)), str(p)))


def _state() -> dict:
    path = CACHE / "state.json"
    return json.loads(path.read_text()) if path.exists() else {"files_done": 0, "shards": 0, "chunks": 0}


def embed(limit: int) -> int:
    """Embed source files from where the cache stopped until `limit` chunks; returns the count."""
    from archivist.ingest import chunking
    from archivist.ingest.writing import embed_text
    from archivist.ingest.readers import read
    from archivist.models import load_embedder
    from archivist.settings import Settings

    from corpus import ensure_packages

    ensure_packages(PACKAGES)
    settings = Settings()
    CACHE.mkdir(parents=True, exist_ok=True)
    seen_path = CACHE / "seen.txt"  # digests of the texts embedded, shard by shard (dedup across a resume)
    seen = set(seen_path.read_text().split()) if seen_path.exists() else set()
    model = load_embedder(device="cpu", backend=settings.embed_backend)
    spans = chunking.hf_token_spans(model.tokenizer)
    files, state = source_files(), _state()
    pending: list[str] = []
    digests: list[str] = []
    start, chunks0 = time.time(), state["chunks"]
    i = state["files_done"]
    while i < len(files) and state["chunks"] < limit:
        try:
            _, chunks = chunking.chunk_blocks(read(files[i]).blocks, spans, settings.chunk_tokens, settings.chunk_overlap)
            for c in chunks:
                text = embed_text(c.text, c.heading)
                digest = hashlib.sha1(text.encode()).hexdigest()[:16]
                if digest not in seen:
                    seen.add(digest)
                    pending.append(text)
                    digests.append(digest)
        except Exception as e:  # one unreadable page never stops the corpus
            log(f"skip {files[i]}: {e}")
        i += 1
        if len(pending) >= SHARD or i == len(files):
            vecs = model.embed(pending, batch_size=settings.embed_batch).astype(np.float32)
            np.save(CACHE / f"shard-{state['shards']:05d}.npy", vecs)
            with seen_path.open("a") as f:
                f.write("".join(d + "\n" for d in digests))
            state = {"files_done": i, "shards": state["shards"] + 1, "chunks": state["chunks"] + len(vecs)}
            (CACHE / "state.json").write_text(json.dumps(state))  # after the shard: a kill loses one shard at most
            rate = (state["chunks"] - chunks0) / max(time.time() - start, 1e-9)
            log(f"{state['chunks']} chunks cached ({i}/{len(files)} files, {rate:.1f} chunks/s this run)")
            pending, digests = [], []
    return state["chunks"]


def cached_vectors(n: int) -> np.ndarray:
    """The first `n` cached vectors (fewer when fewer are cached)."""
    out, have = [], 0
    for path in sorted(CACHE.glob("shard-*.npy")):
        if have >= n:
            break
        part = np.load(path)
        out.append(part)
        have += len(part)
    if not out:
        raise SystemExit(f"no cached vectors in {CACHE}: run `python bench/index.py embed` first")
    return np.ascontiguousarray(np.concatenate(out)[:n], dtype=np.float32)


# -- flat vs compressed ---------------------------------------------------------------------------


class _Store:
    """What re-scoring reads: a SQLite file with the exact vectors in `chunks(id, embedding)`, as
    the workspace keeps them (retrieval/vectors.py reads `ws.db` only)."""

    def __init__(self, path: Path, ids: np.ndarray, vecs: np.ndarray):
        path.unlink(missing_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE chunks(id INTEGER PRIMARY KEY, embedding BLOB)")
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO chunks VALUES (?, ?)", ((int(i), v.tobytes()) for i, v in zip(ids, vecs)))
        self.db.execute("COMMIT")


def jittered(real: np.ndarray, n: int, cosine: float, seed: int = 0) -> np.ndarray:
    """`n` vectors made from `real` ones when fewer real ones are cached: each a real vector turned
    by random noise to about `cosine` from it (labelled as such wherever reported)."""
    rng = np.random.default_rng(seed)
    base = real[rng.integers(0, len(real), n)]
    noise = rng.standard_normal(base.shape).astype(np.float32)
    noise -= (noise * base).sum(axis=1, keepdims=True) * base  # orthogonal to the vector it turns
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    out = cosine * base + np.sqrt(1 - cosine ** 2) * noise
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def build(kind: str, ids: np.ndarray, vecs: np.ndarray) -> tuple[object, float]:
    """An index of `kind` holding `vecs` under `ids`, built as retrieval/vectors.py builds it
    (retrieval/index_kinds.py); returns it and the build time (training included) in seconds."""
    import faiss

    from archivist.retrieval import index_kinds

    t0 = time.perf_counter()
    train = vecs[np.random.default_rng(0).permutation(len(vecs))[:index_kinds.train_size(kind.split("+")[0], len(vecs))]]
    nlist = max(16, int(4 * np.sqrt(len(vecs))))
    if kind in ("ivfpq", "ivfpq+opq"):
        index = index_kinds.compressed_index(vecs.shape[1], nlist, train, opq=kind == "ivfpq+opq")
    else:
        index, got = index_kinds.new_index(vecs.shape[1], len(vecs), kind, train)
        assert got == kind, (kind, got)
    index.add_with_ids(vecs, ids)
    seconds = time.perf_counter() - t0
    if kind != "flat":
        log(f"{kind}: nlist {faiss.extract_index_ivf(index).nlist}, nprobe {faiss.extract_index_ivf(index).nprobe}, "
            f"built in {seconds:.1f} s")
    return index, seconds


def searcher(kind: str, index, store: _Store, depth: int | None = None):
    """One query's search as retrieval/vectors.search does it for `kind`: (ids best first, seconds)."""
    from archivist.retrieval import vectors

    def run(q: np.ndarray, k: int):
        t0 = time.perf_counter()
        if kind.startswith("ivfpq"):
            _, cand = index.search(q[None, :], depth or vectors.rescore_depth(k))
            got = [i for i, _ in vectors._rescore(store, q, cand[0][cand[0] != -1], k)]
        else:
            _, ids = index.search(q[None, :], k)
            got = [int(i) for i in ids[0] if i != -1]
        return got, time.perf_counter() - t0
    return run


def compare(n: int, queries: int, kinds: list[str], rounds: int, name: str) -> dict:
    """Build every kind over the same `n` vectors and measure memory, recall@10 and latency."""
    import faiss

    from common import percentile

    held = cached_vectors(n + queries if n > 0 else 10**9)
    if len(held) < queries + 1000:
        raise SystemExit(f"only {len(held)} vectors cached: too few to measure")
    pick = np.zeros(len(held), dtype=bool)
    pick[np.random.default_rng(1).choice(len(held), queries, replace=False)] = True
    qvecs, pool = held[pick], held[~pick]  # queries: real chunks the index does not hold, from every source
    n = n if n > 0 else len(pool)
    source = f"{min(n, len(pool)):,} real chunk embeddings"
    if n > len(pool):
        vecs = np.concatenate([pool, jittered(pool, n - len(pool), 0.9)])
        source = f"{len(pool):,} real chunk embeddings and {n - len(pool):,} copies of them turned to cosine 0.9"
    else:
        vecs = pool[:n]
    ids = np.arange(1, len(vecs) + 1, dtype=np.int64) * 7  # chunk ids are not 0..n-1 in a workspace
    store = _Store(DATA / f"{name}.db", ids, vecs)  # one per run name: two runs at once must not share it
    log(f"{source}; {queries} queries")
    indexes, rows = {}, {}
    for kind in kinds:
        index, seconds = build(kind, ids, vecs)
        indexes[kind] = index
        rows[kind] = {"build_s": seconds, "bytes_per_vector": len(faiss.serialize_index(index)) / len(vecs)}
    exact = [searcher("flat", indexes["flat"], store)(q, 10)[0] for q in qvecs]
    runs = {kind: searcher(kind, indexes[kind], store) for kind in kinds}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    recall: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(rounds):
        for j, q in enumerate(qvecs):
            order = kinds[(j + r) % len(kinds):] + kinds[:(j + r) % len(kinds)]  # rotate who goes first
            for kind in order:
                got, t = runs[kind](q, 10)
                times[kind].append(t)
                if r == 0:
                    recall[kind].append(len(set(got) & set(exact[j])) / 10)
    depth = {}
    for kind in [k for k in kinds if k.startswith("ivfpq")]:
        for d in (20, 50, 100, 200):
            run = searcher(kind, indexes[kind], store, depth=d)
            depth[f"{kind}@{d}"] = float(np.mean([len(set(run(q, 10)[0]) & set(exact[j])) / 10 for j, q in enumerate(qvecs)]))
        _, raw = indexes[kind].search(qvecs, 10)  # what the codes alone give, no re-scoring
        depth[f"{kind} without re-scoring"] = float(np.mean([len(set(raw[j].tolist()) & set(exact[j])) / 10 for j in range(len(qvecs))]))
    probes = {}
    for kind in [k for k in kinds if k != "flat"]:
        ivf = faiss.extract_index_ivf(indexes[kind])
        default = ivf.nprobe
        for share in (32, 16, 8, 4):
            ivf.nprobe = max(1, ivf.nlist // share)
            run = searcher(kind, indexes[kind], store)
            got = [run(q, 10) for q in qvecs]
            probes[f"{kind}, nprobe {ivf.nprobe} of {ivf.nlist} (1/{share})"] = (
                float(np.mean([len(set(g) & set(exact[j])) / 10 for j, (g, _) in enumerate(got)])),
                1000 * percentile([t for _, t in got], 50))
        ivf.nprobe = default
    flat = rows["flat"]
    for kind in kinds:
        rows[kind].update(recall_at_10=float(np.mean(recall[kind])), p50_ms=1000 * percentile(times[kind], 50),
                          p95_ms=1000 * percentile(times[kind], 95), memory_vs_flat=rows[kind]["bytes_per_vector"] / flat["bytes_per_vector"])
    for kind in kinds:
        rows[kind]["p50_vs_flat"] = rows[kind]["p50_ms"] / rows["flat"]["p50_ms"]
        rows[kind]["p95_vs_flat"] = rows[kind]["p95_ms"] / rows["flat"]["p95_ms"]
    return {"n": len(vecs), "source": source, "queries": queries, "rounds": rounds, "rows": rows, "recall_by_depth": depth,
            "recall_by_nprobe": probes}


def run(n: int, queries: int, rounds: int, kinds: list[str], name: str) -> None:
    result = compare(n, queries, kinds, rounds, name)
    rows = result["rows"]
    table = md_table(["index", "bytes/vector", "x flat", "build s", "recall@10", "p50 ms", "p95 ms", "p50 x flat", "p95 x flat"],
                     [[k, r["bytes_per_vector"], r["memory_vs_flat"], r["build_s"], r["recall_at_10"], r["p50_ms"], r["p95_ms"],
                       r["p50_vs_flat"], r["p95_vs_flat"]] for k, r in rows.items()])
    depth = md_table(["index @ candidates re-scored", "recall@10"], [[k, v] for k, v in result["recall_by_depth"].items()])
    probes = md_table(["index, lists scanned", "recall@10", "p50 ms"], [[k, *v] for k, v in result["recall_by_nprobe"].items()])
    m = machine()
    body = (f"{result['n']:,} vectors: {result['source']}; {queries} held-out real chunks as queries, one at a time, "
            f"{rounds} rounds, the indexes rotated query by query. {m['date']}, {m['cpu']}, {m['cores']} cores, "
            f"load average {m['load_avg']}.\n\n{table}\n\nRecall@10 of the compressed index by how many candidates are re-scored "
            f"(the default: `rescore_depth(10)`):\n\n{depth}\n\nRecall@10 by lists scanned (one pass over the queries; "
            f"p50 from that pass alone):\n\n{probes}\n")
    report(name, "Compressed index: flat vs IVF-PQ (bench/index.py)", body, result)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("embed", help="embed the corpus once into bench/data/index-vectors (resumable)")
    e.add_argument("--limit", type=int, default=200_000)
    r = sub.add_parser("run", help="flat vs IVF-PQ (± OPQ) on the cached vectors")
    r.add_argument("--n", type=int, default=200_000, help="vectors indexed (real ones first; jittered copies past them); 0: every real one")
    r.add_argument("--queries", type=int, default=200)
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--kinds", default="flat,ivf,ivfpq,ivfpq+opq", help="indexes to compare (flat always first)")
    r.add_argument("--name", default="index", help="results file name under bench/data/results")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        run(args.n, args.queries, args.rounds, ["flat"] + [k for k in args.kinds.split(",") if k != "flat"], args.name)
    elif args.cmd == "embed":
        log(f"{embed(args.limit)} chunks cached in {CACHE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
