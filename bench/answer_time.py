"""Time to answer: `ask` now against `ask` at the commit before "Answers you can trust" (issue 18).

    python bench/answer_time.py [--before edf2af9^] [--questions 20] [--auto-questions 4]

The tree of `--before` is extracted to bench/data/before-<sha>/ with its own virtual environment
(the main environment's packages, that tree's code). Each version ingests the same pages (the git
corpus pages relevant to the first tuning questions) into its own workspace, then runs as a worker
process that loads the models once and answers questions read from stdin. The two workers get the
same questions alternately (A B, then B A for the next), each timed inside `ask` by the worker
(models loaded, one warm-up question first). Reported: the median seconds per question of each
version and mode, and their ratio (now / before).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from answers import build_corpus, questions  # noqa: E402
from common import DATA, REPO, log, machine, md_table, report  # noqa: E402

BEFORE = "edf2af9^"  # the commit before "answers: every answer has a status ..." (issue 18's first answer change)

WORKER = r'''
import json, sys, time
from pathlib import Path
from archivist.settings import Settings
from archivist.workspace import open_workspace
from archivist.ingest.pipeline import ingest_paths
from archivist.models import embedder_for
from archivist.retrieval.llm import llm_for
from archivist.retrieval.answer import ask
home, pages = sys.argv[1], sys.argv[2:]
s = Settings.from_env(home=Path(home))
ws = open_workspace(s)
if not ws.db.execute("SELECT 1 FROM documents LIMIT 1").fetchone():
    ingest_paths(ws, pages, collection="default", progress=False)
emb, llm = embedder_for(s), llm_for(s)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    job = json.loads(line)
    t0 = time.perf_counter()
    a = ask(ws, job["question"], adapter=None, mode=job["mode"], llm=llm, embedder=emb)
    print(json.dumps({"seconds": time.perf_counter() - t0, "status": getattr(a, "status", None),
                      "answer": a.answer[:200]}), flush=True)
'''


def before_tree(rev: str) -> Path:
    """The source tree of `rev` with a virtual environment that imports it; made once."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", rev], capture_output=True, text=True, check=True).stdout.strip()
    root = DATA / f"before-{sha[:10]}"
    if (root / ".venv" / ".ready").exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    blob = subprocess.run(["git", "-C", str(REPO), "archive", sha], capture_output=True, check=True).stdout
    tarfile.open(fileobj=io.BytesIO(blob)).extractall(root)
    subprocess.run([sys.executable, "-m", "venv", str(root / ".venv")], check=True)
    site = next((root / ".venv" / "lib").glob("python3*/site-packages"))
    main_site = next(Path(p) for p in sys.path if p.endswith("site-packages") and "/.venv/" in p and Path(p, "torch").exists())
    (site / "_main_venv.pth").write_text(str(main_site) + "\n")
    for old in [*site.glob("setuptools*"), site / "_distutils_hack", site / "distutils-precedence.pth"]:
        shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)  # the main environment's (with wheel) builds
    subprocess.run([str(root / ".venv/bin/python"), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "-e", str(root)], check=True)
    (root / ".venv" / ".ready").touch()
    return root


class Worker:
    def __init__(self, python: Path, home: Path, pages: list[Path]):
        self.p = subprocess.Popen([str(python), "-c", WORKER, str(home), *map(str, pages)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, cwd=str(home.parent))
        ready = json.loads(self.p.stdout.readline())
        assert ready.get("ready"), ready

    def ask(self, question: str, mode: str) -> dict:
        self.p.stdin.write(json.dumps({"question": question, "mode": mode}) + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=60)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default=BEFORE)
    ap.add_argument("--questions", type=int, default=20, help="extractive questions")
    ap.add_argument("--auto-questions", type=int, default=4, help="auto-mode questions (about 20 s each on 2 cores)")
    args = ap.parse_args(argv)
    qs = [q for q in questions("git", "tuning") if q.relevant][: max(args.questions, args.auto_questions)]
    corpus = build_corpus("git")
    pages = sorted({corpus / r for q in qs for r in q.relevant if (corpus / r).exists()})
    old = before_tree(args.before)
    ws_root = DATA / "ws"
    ws_root.mkdir(parents=True, exist_ok=True)
    log(f"{len(qs)} questions over {len(pages)} pages; starting the workers (ingesting once)")
    workers = {"before": Worker(old / ".venv/bin/python", ws_root / f"time-before-{old.name}", pages),
               "now": Worker(Path(sys.executable), ws_root / "time-now", pages)}
    times: dict = {}
    for w in workers.values():
        w.ask(qs[0].question, "extractive")  # warm-up
    for mode, n in (("extractive", args.questions), ("auto", args.auto_questions)):
        if n == 0:
            continue
        for i, q in enumerate(qs[:n]):
            order = ["before", "now"] if i % 2 == 0 else ["now", "before"]
            for label in order:
                times.setdefault((label, mode), []).append(workers[label].ask(q.question, mode)["seconds"])
        log(f"{mode}: " + ", ".join(f"{label} {statistics.median(times[(label, mode)]):.3f} s" for label in workers))
    for w in workers.values():
        w.close()
    rows = []
    for mode in ("extractive", "auto"):
        if ("now", mode) not in times:  # --auto-questions 0
            continue
        b, a = statistics.median(times[("before", mode)]), statistics.median(times[("now", mode)])
        rows.append([mode, len(times[("now", mode)]), round(b, 3), round(a, 3), round(a / b, 2)])
    body = (f"`ask` at {args.before} ({old.name}) and now, alternated, models loaded, {machine()['date']}:\n\n"
            + md_table(["mode", "questions", "before median s", "now median s", "ratio"], rows))
    report("answer_time", "Time to answer, before and after issue 18", body, {"rows": rows})
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
