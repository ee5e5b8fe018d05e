"""Ingestion on a local Ray cluster (`archivist ingest --ray`) against the local path, same corpus, same run.

    nice -n 10 python bench/ingest_ray.py [--foldoc 1000] [--debref 50] [--repeats 3] [--num-cpus 2] [--cold]

Alternated repeats (local, ray as configured by default, ray with its embed actors starting, ray with
them warm, local, ...), each into a fresh workspace, in chunks per second:
  - local: `pipeline.ingest_paths` (read-ahead thread, embedder in this process);
  - ray (default): `ray_ingest.ingest_on_ray` with the default settings: on this one-machine cluster
    the driver embeds what the read tasks return, and no embed actor starts (ray_embed "auto");
  - ray, actors start: the same with ray_embed "actors", against a local cluster started once before the
    repeats (as `--ray ADDRESS` finds a cluster that `ray start` left running), its warm embed
    actors killed first: the first ingest on a running cluster, which starts them;
  - ray, actors warm: the same right after, reusing the actors that ingest left warm;
  - with --cold, ray, cold: `archivist ingest --ray` as a user types it, a local cluster started and stopped by
    the command (a subprocess, so its Ray start is inside the time).
Ratio of medians against local (target >= 0.9x). The workspaces are compared too: same documents,
chunk texts and vector keys, vectors within cosine 0.98.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import alternate, corpus, corpus_bytes, fresh_home, log, md_table, median, open_ws, report


def ingest_once(folder: Path, tag: str, on_ray: bool, ray_embed: str = "auto") -> tuple[float, int, Path]:
    """One ingest into a fresh workspace, locally or on the connected Ray cluster (embedding where
    `ray_embed` says): (seconds, chunks, home)."""
    from archivist.ingest.pipeline import ingest_paths
    from archivist.ingest.ray_ingest import ingest_on_ray

    home = fresh_home(f"ray-bench-{'ray-' + ray_embed if on_ray else 'local'}-{tag}")
    with open_ws(home, ray_embed=ray_embed) as ws:
        t0 = time.perf_counter()
        res = (ingest_on_ray if on_ray else ingest_paths)(ws, [folder], progress=False)
        dt = time.perf_counter() - t0
    return dt, _chunks(res), home


def retire_actors() -> int:
    """Kill the warm embed actors a previous ingest left on the connected cluster; how many."""
    import ray

    from archivist.ingest import ray_ingest

    n = 0
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] == ray_ingest.NAMESPACE and entry["name"].startswith("embed-"):
            ray.kill(ray.get_actor(entry["name"], namespace=entry["namespace"]))
            n += 1
    time.sleep(1.0)  # a killed actor's name and CPU are freed shortly after
    return n


def cold_once(folder: Path, tag: str, num_cpus: int | None) -> tuple[float, int, Path]:
    """`archivist ingest --ray` in a subprocess: Python start, Ray import and cluster start included."""
    home = fresh_home(f"ray-bench-cold-{tag}")
    env = dict(os.environ, ARCHIVIST_HOME=str(home))
    child = ("import sys, archivist.ingest.ray_ingest as r\n"
             f"r.LOCAL_CPUS = {num_cpus!r}\n"
             "from archivist.cli import main\nsys.exit(main(sys.argv[1:]))")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", child, "ingest", str(folder), "--ray", "-q"], env=env,
                         capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"archivist ingest --ray failed: {out.stderr[-3000:]}")
    with open_ws(home) as ws:
        n = ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    return dt, n, home


def _chunks(results) -> int:
    failed = [r for r in results if r.status == "failed"]
    if failed:
        log(f"{len(failed)} files failed, e.g. {failed[0].name}: {failed[0].reason}")
    return sum(r.chunks for r in results)


def compare(a: Path, b: Path) -> dict:
    """Same documents, chunk texts and vector keys; the lowest cosine between a chunk's two vectors."""
    def load(home):
        with open_ws(home) as ws:
            rows = ws.db.execute("SELECT d.path, c.seq, c.text, c.hash, c.embedding FROM chunks c "
                                 "JOIN documents d ON d.id = c.document_id").fetchall()
        return {(r[0], r[1]): (r[2], r[3], np.frombuffer(r[4], dtype=np.float32)) for r in rows}

    x, y = load(a), load(b)
    same = x.keys() == y.keys() and all(x[k][:2] == y[k][:2] for k in x)
    cos = min((float(x[k][2] @ y[k][2]) for k in x if k in y), default=0.0)
    return {"same_chunks": same, "min_cosine": cos, "chunks": len(x)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--foldoc", type=int, default=1000, help="FOLDOC entries in the corpus")
    ap.add_argument("--debref", type=int, default=50, help="Debian Reference subsections in the corpus")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray cluster (default: all)")
    ap.add_argument("--cold", action="store_true", help="also time `archivist ingest --ray` as typed (a cluster started per command)")
    args = ap.parse_args()

    import ray

    from archivist.ingest import ray_ingest

    folder = corpus(f"corpus-ray-{args.foldoc}-{args.debref}", args.foldoc, args.debref or False)
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    log(f"corpus: {files} files, {corpus_bytes(folder) / 1e6:.1f} MB")
    homes: dict[str, Path] = {}
    chunks: dict[str, int] = {}

    def per_second(name, fn):
        def run(r: int) -> float:
            dt, n, home = fn(folder, str(r))
            homes[name], chunks[name] = home, n
            log(f"{name} #{r}: {dt:.1f} s, {n} chunks, {n / dt:.1f} chunks/s (load {os.getloadavg()[0]:.1f})")
            return n / dt
        return run

    t0 = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    cluster_start = time.perf_counter() - t0
    resources = ray.cluster_resources()
    log(f"local Ray cluster up in {cluster_start:.1f} s: {resources.get('CPU')} CPUs, {resources.get('GPU', 0)} GPUs")
    local_once = lambda f, t: ingest_once(f, t, on_ray=False)  # noqa: E731

    def actors_start(f, t):
        retire_actors()
        return ingest_once(f, t, on_ray=True, ray_embed="actors")

    runs = {"local": per_second("local", local_once),
            "ray (default: the driver embeds)": per_second("ray (default: the driver embeds)",
                                                           lambda f, t: ingest_once(f, t, on_ray=True)),
            "ray, actors start": per_second("ray, actors start", actors_start),
            "ray, actors warm": per_second("ray, actors warm", lambda f, t: ingest_once(f, t, on_ray=True, ray_embed="actors"))}
    try:
        speeds = alternate(runs, args.repeats)
    finally:
        ray.shutdown()
    if args.cold:  # its own alternation, with no cluster of ours running beside it
        cold = alternate({"local": per_second("local", local_once),
                          "ray, cold (CLI)": per_second("ray, cold (CLI)", lambda f, t: cold_once(f, t, args.num_cpus))},
                         args.repeats)
        speeds["local (2nd set)"] = cold["local"]
        speeds["ray, cold (CLI)"] = cold["ray, cold (CLI)"]
    check = compare(homes["local"], homes["ray (default: the driver embeds)"])

    base = median(speeds["local"])
    rows = []
    for name, xs in speeds.items():
        local = speeds["local (2nd set)"] if name == "ray, cold (CLI)" else speeds["local"]
        # beside the ratio of medians, the median of each repeat's ratio to the local run just before
        # it: the two ran under much the same load, which on a shared box moves 1.5x within minutes
        pairs = median([x / y for x, y in zip(xs, local)])
        rows.append([name, median(xs), median(xs) / median(local), pairs, ", ".join(f"{x:.1f}" for x in xs)])
    ratio = median(speeds["ray, actors warm"]) / base
    ratio_start = median(speeds["ray, actors start"]) / base
    ratio_default = median(speeds["ray (default: the driver embeds)"]) / base
    body = (f"Corpus: {files} HTML files ({corpus_bytes(folder) / 1e6:.1f} MB; FOLDOC entries + Debian Reference "
            f"subsections), {chunks['local']} chunks; local Ray cluster of {resources.get('CPU')} CPUs "
            f"(started in {cluster_start:.1f} s), {ray_ingest.embed_resources(resources)[0]} embed actor(s); "
            f"{args.repeats} alternated repeats, fresh workspaces; load average {os.getloadavg()[0]:.1f} at the end.\n\n"
            + md_table(["", "chunks/s (median)", "x local", "x local, pair by pair (median)", "repeats"], rows)
            + f"\n\n--ray on a running local cluster / local: **{ratio_default:.2f}x** as configured by default (the "
            f"driver embeds), **{ratio:.2f}x** with the embed actors warm, "
            f"**{ratio_start:.2f}x** for the ingest that starts them (target >= 0.9x). "
            f"Workspaces: same documents, chunk texts and vector keys: {check['same_chunks']}; "
            f"lowest cosine between a chunk's two vectors {check['min_cosine']:.4f}.\n")
    report("ingest_ray", "Ingestion on a local Ray cluster (bench/ingest_ray.py)", body,
           {"speeds": speeds, "ratio": ratio, "ratio_actors_start": ratio_start, "ratio_default": ratio_default, "check": check, "resources": resources, "cluster_start_s": cluster_start})
    return 0


if __name__ == "__main__":
    sys.exit(main())
