"""Ingestion speed and memory: the whole pipeline against the raw embedder, same chunks, same run.

    python bench/ingest.py --size small|full

1. archivist's `ingest_paths` (read, chunk, embed, SQLite + FTS5, FAISS, commit) on a real corpus,
   in chunks per second, against `SentenceTransformer.encode` alone on exactly the texts the
   pipeline embedded, with the same batch size; alternated, median of the repeats (target >= 0.85x).
   The same pipeline with the default embedder backend is reported beside it when that is not torch.
2. Re-ingesting the unchanged corpus: how many times faster than the first ingest (target >= 50x).
3. Peak RSS of a fresh process ingesting the corpus at 1x and 4x its size (each in a subprocess),
   with the size of the index files for comparison.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import (BENCH, alternate, corpus, corpus_bytes, fresh_home, log, md_table, median, open_ws,
                    report, size, size_parser, timed)


def chunk_inputs(ws) -> list[str]:
    """The texts the pipeline embedded (heading + chunk text), in chunk order."""
    from archivist.ingest.writing import embed_text

    return [embed_text(r[0], r[1]) for r in ws.db.execute("SELECT text, heading FROM chunks ORDER BY id")]


def ingest_once(folder: Path, name: str, embedder, backend: str = "torch") -> tuple[float, int, object]:
    from archivist.ingest.pipeline import ingest_paths

    ws = open_ws(fresh_home(name), embed_backend=backend)
    t0 = time.perf_counter()
    res = ingest_paths(ws, [folder], embedder=embedder, progress=False)
    dt = time.perf_counter() - t0
    failed = [r for r in res if r.status == "failed"]
    if failed:
        log(f"{len(failed)} files failed, e.g. {failed[0].name}: {failed[0].reason}")
    return dt, sum(r.chunks for r in res), ws


def rss_child(folder: str, home: str, backend: str) -> int:
    """Run inside a subprocess: ingest `folder` into `home` and print peak RSS and index sizes as JSON."""
    from archivist.ingest.pipeline import ingest_paths

    ws = open_ws(Path(home), embed_backend=backend)
    res = ingest_paths(ws, [folder], progress=False)
    peak_mb = peak_rss_mb()
    index_mb = sum(p.stat().st_size for p in (Path(home) / "index").glob("*.faiss")) / 2**20
    db_mb = sum(p.stat().st_size for p in Path(home).glob("archivist.db*")) / 2**20
    ws.close()
    print(json.dumps({"peak_rss_mb": peak_mb, "faiss_mb": index_mb, "db_mb": db_mb,
                      "chunks": sum(r.chunks for r in res), "files": len(res)}))
    return 0


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork + exec, so a
    child of a big benchmark process would report its parent's peak."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_rss(folder: Path, tag: str, backend: str) -> dict:
    home = fresh_home(f"rss-{tag}")
    out = subprocess.run([sys.executable, str(BENCH / "ingest.py"), "--rss-child", str(folder), str(home), backend],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"RSS child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = size_parser(__doc__)
    ap.add_argument("--rss-child", nargs=3, metavar=("FOLDER", "HOME", "BACKEND"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child:
        return rss_child(*args.rss_child)
    s = size(args.size)
    from archivist.models import load_embedder
    from archivist.settings import Settings

    default_backend = Settings().embed_backend
    folder = corpus(f"corpus-ingest-{args.size}", s["ingest_foldoc"], s["ingest_debref"] if s["ingest_debref"] else True)
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    mb = corpus_bytes(folder) / 2**20
    batch = Settings().embed_batch
    torch_emb = load_embedder(device="cpu", backend="torch")
    st = torch_emb.model  # the bare SentenceTransformer
    log(f"ingest corpus: {files} files, {mb:.1f} MB; batch size {batch}")

    # Warm up both paths, and learn the exact texts the pipeline embeds.
    _, chunks, ws = ingest_once(folder, "ingest-warm", torch_emb)
    texts = list(dict.fromkeys(chunk_inputs(ws)))  # the distinct texts: what the pipeline embeds (it reuses vectors of repeats)
    ws.close()
    st.encode(texts[:64], batch_size=batch, show_progress_bar=False)
    log(f"{chunks} chunks ({len(texts)} distinct texts)")
    n = len(texts)  # both sides are credited with the distinct texts embedded per second

    runs = {
        "archivist ingest_paths (torch)": lambda r: n / ingest_once(folder, f"ingest-{r}", torch_emb)[0],
        "SentenceTransformer.encode (torch)": lambda r: len(texts) / timed(
            lambda: st.encode(texts, batch_size=batch, normalize_embeddings=True, show_progress_bar=False)),
    }
    fast = None
    if default_backend != "torch":
        fast = load_embedder(device="cpu", backend=default_backend)
        fast.embed(["warm up"])
        runs[f"archivist ingest_paths ({default_backend}, the default)"] = \
            lambda r: n / ingest_once(folder, f"ingest-fast-{r}", fast, default_backend)[0]
    values = alternate(runs, s.get("ingest_repeats", s["repeats"]))
    for k, v in values.items():
        log(f"{k}: {[round(x, 2) for x in v]} chunks/s")

    # Re-ingest: the same corpus into the workspace that already holds it.
    first_s, _, ws = ingest_once(folder, "ingest-reingest", torch_emb)
    from archivist.ingest.pipeline import ingest_paths

    again = []
    for _ in range(s["repeats"]):
        t0 = time.perf_counter()
        res = ingest_paths(ws, [folder], embedder=torch_emb, progress=False)
        again.append(time.perf_counter() - t0)
        assert all(r.status == "unchanged" for r in res), "re-ingest changed something"
    ws.close()

    # Peak memory: a fresh process per size.
    small_folder = corpus(f"corpus-rss1-{args.size}", s["rss_foldoc"], False)
    big_folder = corpus(f"corpus-rss4-{args.size}", s["rss_foldoc"] * s["rss_scale"], False)
    rss1 = measure_rss(small_folder, "1x", default_backend)
    rss4 = measure_rss(big_folder, f"{s['rss_scale']}x", default_backend)

    base = median(values["SentenceTransformer.encode (torch)"])
    rows = [[k, median(v), median(v) / base, ", ".join(f"{x:.1f}" for x in v)] for k, v in values.items()]
    body = [f"Corpus: {files} HTML pages ({mb:.1f} MB; FOLDOC entries + Debian Reference subsections), "
            f"{chunks} chunks of at most 256 tokens ({n} distinct texts, which both sides embed), batch size {batch}, "
            f"{len(values['archivist ingest_paths (torch)'])} alternated repeats.\n",
            md_table(["", "chunks/s (median)", "x encode", "repeats"], rows),
            f"\nPipeline / raw encode (torch): **{median(values['archivist ingest_paths (torch)']) / base:.2f}x** (target >= 0.85x).\n",
            md_table(["", "seconds (median)", "speed-up"],
                     [["first ingest", first_s, 1.0], ["re-ingest, unchanged", median(again), first_s / median(again)]]),
            f"\nRe-ingest of the unchanged corpus: **{first_s / median(again):.0f}x** faster than the first (target >= 50x).\n",
            md_table(["corpus", "files", "chunks", "peak RSS MB", "FAISS MB", "SQLite MB"],
                     [[f"1x ({default_backend})", rss1["files"], rss1["chunks"], rss1["peak_rss_mb"], rss1["faiss_mb"], rss1["db_mb"]],
                      [f"{s['rss_scale']}x ({default_backend})", rss4["files"], rss4["chunks"], rss4["peak_rss_mb"], rss4["faiss_mb"], rss4["db_mb"]]]),
            f"\nPeak RSS grows by {rss4['peak_rss_mb'] - rss1['peak_rss_mb']:.0f} MB from 1x to {s['rss_scale']}x "
            f"while the FAISS index grows by {rss4['faiss_mb'] - rss1['faiss_mb']:.1f} MB.\n"]
    report("ingest", f"Ingestion ({args.size})", "\n".join(body),
           {"values": values, "chunks": chunks, "first_s": first_s, "reingest_s": again, "rss_1x": rss1, "rss_4x": rss4})
    return 0


if __name__ == "__main__":
    sys.exit(main())
