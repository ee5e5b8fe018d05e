"""What a CSV of many tiny rows costs to ingest: wall time and peak RSS of a fresh process.

    python bench/csv_rows.py ROWS [ROWS ...]                   (e.g. 100000 300000 1000000)
    python bench/csv_rows.py --hash-embedder ROWS [ROWS ...]   memory of the whole pipeline, fast
    python bench/csv_rows.py --python OTHER/.venv/bin/python ...   the same runs with another checkout
                                                                   (the code before a change), same run

Each size runs in its own subprocess (a fresh interpreter, so ru_maxrss is that run's peak), then a
second fresh process opens the workspace as a searching one does (`open_checked`) and runs a hybrid
search twice: the first folds in what the ingest left pending (the ingesting process loads no
search index past pipeline.HOLD_INDEXES_UP_TO chunks), the second is a search as usual; it reports
both times and its own peak RSS (the indexes it holds), and the workspace's size on disk. With
`--hash-embedder` the vectors come from a hash of the text (same dimension, no model work): reading,
chunking, SQLite, FTS5 and FAISS are all real, so the peak RSS is the pipeline's, measured at sizes
where the real embedder would take hours on a CPU; the child then times the real embedder on a
sample of the file's chunks, so the time a real run takes is the pipeline's plus chunks x that.
Prints one JSON line per run and a markdown table.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hash_embedder import HashEmbedder

EMBED_SAMPLE = 512  # chunks the real embedder embeds to time it (with --hash-embedder)


def write_csv(path: Path, rows: int) -> None:
    """`rows` tiny rows (id, name, amount), about 25 bytes each."""
    with open(path, "w") as f:
        f.write("id,name,amount\n")
        for i in range(rows):
            f.write(f"{i},item-{i % 977},{(i * 37) % 10000}\n")


def child(path: str, home: str, hashed: bool) -> int:
    """Ingest `path` into a fresh workspace at `home`; print rows, chunks, seconds, peak RSS (and with
    `hashed`, the real embedder's seconds per chunk on a sample of the chunks)."""
    from archivist.ingest.pipeline import ingest_paths
    from archivist.models import embedder_for
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    ws = open_workspace(Settings.from_env(home=home))
    real = embedder_for(ws.settings)
    real.embed(["warm up"])  # model load is not the file's cost
    embedder = HashEmbedder.like(real) if hashed else real
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    [res] = ingest_paths(ws, [path], progress=False, embedder=embedder)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"status": res.status, "reason": res.reason, "chunks": res.chunks, "seconds": round(dt, 1),
           "rss_before_mb": round(base), "peak_rss_mb": round(peak)}
    if hashed:
        sample = [f"{r[1]}\n{r[0]}" for r in ws.db.execute("SELECT text, heading FROM chunks ORDER BY id LIMIT ?", (EMBED_SAMPLE,))]
        t1 = time.perf_counter()
        real.embed(sample, batch_size=ws.settings.embed_batch)
        out["embed_s_per_chunk"] = round((time.perf_counter() - t1) / len(sample), 5)
    ws.close()
    out["disk_mb"] = round(sum(f.stat().st_size for f in Path(home).rglob("*") if f.is_file()) / 2**20, 1)
    print(json.dumps(out))
    return 0


def searcher(home: str, hashed: bool) -> int:
    """Open the workspace at `home` as the app or API would and search it twice; print the seconds of
    each search and the peak RSS over the models (the query embedder loaded and warmed first)."""
    from archivist.models import embedder_for
    from archivist.retrieval.repair import open_checked
    from archivist.retrieval.search import search
    from archivist.settings import Settings

    settings = Settings.from_env(home=home)
    real = embedder_for(settings)
    embedder = HashEmbedder.like(real) if hashed else real
    embedder.embed(["warm up"])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    with open_checked(settings) as ws:
        t1 = time.perf_counter()
        first = search(ws, "item-42 amount 1554", k=10, embedder=embedder)
        t2 = time.perf_counter()
        second = search(ws, "item-977 amount 37", k=10, embedder=embedder)
        t3 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"open_s": round(t1 - t0, 2), "first_search_s": round(t2 - t1, 2), "search_s": round(t3 - t2, 3),
                      "search_peak_rss_mb": round(peak - base), "hits": min(len(first), len(second))}))
    return 0


def measure(rows: int, tmp: Path, python: str, hashed: bool) -> dict:
    path = tmp / f"rows-{rows}.csv"
    if not path.exists():
        write_csv(path, rows)
    home = tempfile.mkdtemp(dir=tmp, prefix=f"home-{rows}-")
    cmd = [python, __file__, "--child", str(path), home] + (["--hash-embedder"] if hashed else [])
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    r = {"rows": rows, "mb": round(path.stat().st_size / 2**20, 1), "python": python, **json.loads(out.stdout.strip().splitlines()[-1])}
    found = subprocess.run([python, __file__, "--search", home] + (["--hash-embedder"] if hashed else []),
                           capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if found.returncode:
        raise RuntimeError(found.stderr[-2000:])
    r.update(json.loads(found.stdout.strip().splitlines()[-1]))
    if hashed:  # what a real run costs: the pipeline's time plus the real embedder's time per chunk
        r["estimated_seconds"] = round(r["seconds"] + r["chunks"] * r["embed_s_per_chunk"])
    return r


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        return child(argv[1], argv[2], "--hash-embedder" in argv)
    if argv[:1] == ["--search"]:
        return searcher(argv[1], "--hash-embedder" in argv)
    hashed = "--hash-embedder" in argv
    argv = [a for a in argv if a != "--hash-embedder"]
    pythons = [sys.executable]
    if argv[:1] == ["--python"]:
        pythons.insert(0, argv[1])  # the other checkout first: the baseline
        argv = argv[2:]
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        for n in argv:
            for py in pythons:
                results.append(measure(int(n), Path(tmp), py, hashed))
                print(json.dumps(results[-1]), flush=True)
    print("| python | rows | MB | chunks | seconds | peak RSS MB (after model load) | disk MB | first search s | search s | "
          "searcher's peak RSS over models |" + (" real embedder s/chunk | est. real seconds |" if hashed else ""))
    print("|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if hashed else ""))
    for r in results:
        line = (f"| {r['python']} | {r['rows']:,} | {r['mb']} | {r['chunks']} | {r['seconds']} | {r['peak_rss_mb']} ({r['rss_before_mb']}) "
                f"| {r['disk_mb']} | {r['first_search_s']} | {r['search_s']} | {r['search_peak_rss_mb']} |")
        if hashed:
            line += f" {r['embed_s_per_chunk']} | {r['estimated_seconds']} |"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
