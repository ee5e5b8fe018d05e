"""What a CSV of many tiny rows costs to ingest: wall time and peak RSS of a fresh process.

    python bench/csv_rows.py ROWS [ROWS ...]      (e.g. 50000 200000)

Each size runs in its own subprocess (a fresh interpreter, so ru_maxrss is that run's peak) with
the default embedder backend; prints one JSON line per size and a markdown table.
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


def write_csv(path: Path, rows: int) -> None:
    """`rows` tiny rows (id, name, amount), about 25 bytes each."""
    with open(path, "w") as f:
        f.write("id,name,amount\n")
        for i in range(rows):
            f.write(f"{i},item-{i % 977},{(i * 37) % 10000}\n")


def child(path: str, home: str) -> int:
    """Ingest `path` into a fresh workspace at `home`; print rows, chunks, seconds, peak RSS."""
    from archivist.ingest.pipeline import ingest_paths
    from archivist.models import embedder_for
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    ws = open_workspace(Settings.from_env(home=home))
    embedder_for(ws.settings).embed(["warm up"])  # model load is not the file's cost
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    [res] = ingest_paths(ws, [path], progress=False)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ws.close()
    print(json.dumps({"status": res.status, "reason": res.reason, "chunks": res.chunks, "seconds": round(dt, 1),
                      "rss_before_mb": round(base), "peak_rss_mb": round(peak)}))
    return 0


def measure(rows: int, tmp: Path) -> dict:
    path = tmp / f"rows-{rows}.csv"
    write_csv(path, rows)
    out = subprocess.run([sys.executable, __file__, "--child", str(path), str(tmp / f"home-{rows}")],
                         capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return {"rows": rows, "mb": round(path.stat().st_size / 2**20, 1), **json.loads(out.stdout.strip().splitlines()[-1])}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        return child(argv[1], argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(int(n), Path(tmp)) for n in argv]
    for r in results:
        print(json.dumps(r))
    print("| rows | MB | chunks | seconds | peak RSS MB (after model load) |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['rows']:,} | {r['mb']} | {r['chunks']} | {r['seconds']} | {r['peak_rss_mb']} ({r['rss_before_mb']}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
