"""Profile the ingestion, query and training paths with pyinstrument; write the reports.

    python bench/profiling.py [--only ingest,query,train] [--size small]

Reports go to bench/data/results/profile-<path>.txt (pyinstrument's call tree) and a summary of
where the time went (model compute vs everything else) is printed. The findings are written by
hand into bench/RESULTS.md. Training is profiled through bench/finetune.py when it exists.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from common import BENCH, DATA, RESULTS, corpus, fresh_home, log, open_ws, size, size_parser

MODEL_FRAMES = ("forward", "encode", "_call_impl", "_wrapped_call_impl", "run", "generate")


def _profile(fn, name: str) -> str:
    from pyinstrument import Profiler

    p = Profiler(interval=0.005)
    p.start()
    fn()
    p.stop()
    text = p.output_text(unicode=False, color=False, show_all=False)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"profile-{name}.txt").write_text(text)
    (RESULTS / f"profile-{name}.html").write_text(p.output_html())
    return text


def profile_ingest(s: dict) -> None:
    from archivist.ingest.pipeline import ingest_paths
    from archivist.models import embedder_for

    folder = corpus(f"corpus-ingest-{s['name']}", s["ingest_foldoc"], s["ingest_debref"] or True)
    ws = open_ws(fresh_home("profile-ingest"))
    emb = embedder_for(ws.settings)
    emb.embed(["warm up"])
    t0 = time.perf_counter()
    _profile(lambda: ingest_paths(ws, [folder], embedder=emb, progress=False), "ingest")
    log(f"ingest profiled ({time.perf_counter() - t0:.1f}s); see profile-ingest.txt")


def profile_query(s: dict) -> None:
    from query import build_workspace, questions

    from archivist.retrieval.search import search

    ws = build_workspace(s["query_chunks"])
    qs = questions(60)
    for q in qs[:5]:
        search(ws, q, k=10)
    _profile(lambda: [search(ws, q, k=10) for q in qs], "query")
    log("query profiled; see profile-query.txt")


def profile_train(s: dict) -> None:
    script = BENCH / "finetune.py"
    if not script.exists():
        log("bench/finetune.py not present: training path not profiled")
        return
    out = RESULTS / "profile-train.txt"
    # py-spy samples the whole process tree (the trainer may use worker processes) without code changes.
    spy = Path(sys.executable).with_name("py-spy")  # installed by the bench extra into the same environment
    cmd = [str(spy) if spy.exists() else "py-spy", "record", "--format", "raw", "--rate", "50", "--subprocesses", "-o", str(DATA / "train.pyspy"),
           "--", sys.executable, str(script), "--size", s["name"]]
    rc = subprocess.run(cmd).returncode
    if rc != 0:
        log(f"py-spy failed ({rc}); run it as root or profile with: pyinstrument {script}")
        return
    from pyspy_summary import summarize

    stacks: dict[str, int] = {}
    for line in (DATA / "train.pyspy").read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        leaf = stack.split(";")[-1] if stack else "?"
        stacks[leaf] = stacks.get(leaf, 0) + int(n)
    total = sum(stacks.values()) or 1
    top = sorted(stacks.items(), key=lambda kv: -kv[1])[:40]
    split = summarize(DATA / "train.pyspy", "--worker archivist --method lora")
    out.write_text("archivist lora workers, share of their samples:\n"
                   + "\n".join(f"{v:6.1%}  {k}" for k, v in split.items())
                   + "\n\nall processes, by innermost frame:\n"
                   + "\n".join(f"{n / total:6.1%}  {leaf}" for leaf, n in top) + "\n")
    log("training profiled; see profile-train.txt")


def main(argv=None) -> int:
    ap = size_parser(__doc__)
    ap.add_argument("--only", default="ingest,query,train")
    args = ap.parse_args(argv)
    s = dict(size(args.size), name=args.size)
    for part in args.only.split(","):
        {"ingest": profile_ingest, "query": profile_query, "train": profile_train}[part](s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
