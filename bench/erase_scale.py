"""Erase and job lists at scale: one long document against 500 others, and 200 ingest jobs of 3,000
files each, against the one-search-per-sentence and read-every-file-list ways they replaced,
alternated in the same run.

    python bench/erase_scale.py --size small|full

The corpus is generated (seed 7): 500 documents of 40 sentences, and one of 1,000 lines (small) or
5,000 (full) whose lines five of the others partly hold. Measured: which other documents hold a
sentence of it (`erase.matcher`: one pass per document, against `any(sentence in document)` for each
sentence), the leftover scan of the workspace after the erase (`files.files_holding`, against
`sentence in file` for each sentence), the whole `erase`, and for the jobs `list_jobs` without the
file lists (`archivist jobs`) against with them, and `every` for one name in SQL against every job
read and filtered. The vectors play no part: a hash stands in for the embedder (its tokenizer
chunks the text as in a real ingest).
"""

from __future__ import annotations

import random
import shutil

from common import alternate, fresh_home, log, md_table, median, report, size_parser, timed
from hash_embedder import HashEmbedder

LINES = {"small": 1000, "full": 5000}
JOBS, FILES = 200, 3000


def build(lines: int):
    from archivist.ingest.pipeline import ingest_paths
    from archivist.models import embedder_for
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    rng = random.Random(7)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(3000)]
    sentence = lambda: " ".join(rng.choice(vocab) for _ in range(rng.randint(6, 16))).capitalize() + "."  # noqa: E731
    home, docs = fresh_home("erase-scale"), fresh_home("erase-scale-docs")
    big = [sentence() for _ in range(lines)]
    (docs / "big.md").write_text("# Big\n\n" + "\n".join(big) + "\n")
    for i in range(500):
        body = [sentence() for _ in range(40)]
        if i % 100 == 0:
            body[5:8] = big[i // 100 * 100: i // 100 * 100 + 3]
        (docs / f"d{i:03}.md").write_text(f"# Doc {i}\n\n" + "\n\n".join(body) + "\n")
    ws = open_workspace(Settings.from_env(home=home))
    embedder_for(ws.settings).embed(["warm up"])
    ingest_paths(ws, sorted(docs.iterdir()), embedder=HashEmbedder(), progress=False)
    return ws


def main(argv=None) -> int:
    args = size_parser(__doc__).parse_args(argv)
    from archivist import jobs
    from archivist.files import files_holding
    from archivist.ingest import erase
    from archivist.ingest.folders import FileResult, job_summary
    from archivist.ingest.pipeline import create_job

    log("building the corpus")
    ws = build(LINES[args.size])
    doc = ws.db.execute("SELECT id, text FROM documents WHERE path = 'big.md'").fetchone()
    chunks = [r[0] for r in ws.db.execute("SELECT text FROM chunks WHERE document_id = ? ORDER BY seq", (doc["id"],))]
    others = list(erase._other_documents(ws, doc["id"], None))
    needles = {n for n in (erase._norm(p) for p in erase._SENTENCE.split(doc["text"]) + chunks) if len(n) >= erase.MIN_MATCH}
    rows, data = [], {}

    def per_sentence():  # the way it was: each other document searched once per sentence
        return sorted(label for label, other in others if any(n in other for n in needles))

    assert erase.matcher(doc["text"], chunks, others).holders == per_sentence()
    t = alternate({"one pass": lambda r: timed(lambda: erase.matcher(doc["text"], chunks, others)),
                   "per sentence": lambda r: timed(per_sentence)}, 1)
    rows.append(["which of 500 documents hold its sentences", median(t["one pass"]), median(t["per sentence"])])

    copy = ws.home.parent / "erase-scale-copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(ws.home, copy)
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    with open_workspace(Settings.from_env(home=copy)) as w:
        whole = timed(lambda: erase.erase(w, "big.md"))
    sentences = erase.erased_sentences(doc["text"])
    files = [f for f in copy.rglob("*") if f.is_file()]

    def scan_per_sentence():
        out = {}
        for f in files:
            data = f.read_bytes()
            if held := {n for n in sentences if n in data}:
                out[str(f.relative_to(copy))] = held
        return out

    t = alternate({"one pass": lambda r: timed(lambda: files_holding(copy, sentences)),
                   "per sentence": lambda r: timed(scan_per_sentence)}, 1)
    rows.append([f"leftover scan, {len(sentences)} sentences, {sum(f.stat().st_size for f in files) >> 20} MB",
                 median(t["one pass"]), median(t["per sentence"])])
    rows.append(["the whole erase (one run)", whole, float("nan")])

    log("writing the jobs")
    for j in range(JOBS):
        names = [(f"/srv/share/team-{j:03}/reports/r{i:05}.md", f"reports/r{i:05}.md") for i in range(FILES)]
        job = create_job(ws, "ingest", None, "default", names)
        jobs.start(ws, job.id)
        jobs.finish(ws, job.id, result=job_summary([FileResult(name=n, status="unchanged") for _, n in names]))
    t = alternate({"without": lambda r: timed(lambda: jobs.list_jobs(ws, files=False)),
                   "with": lambda r: timed(lambda: jobs.list_jobs(ws))}, 3)
    rows.append([f"list the 100 newest of {JOBS} jobs of {FILES} files", median(t["without"]), median(t["with"])])
    every_then_filter = lambda: [j for j in jobs.every(ws, ("ingest", "upload"))  # noqa: E731
                                 if j.spec.get("collection") == "default" and any(n == "x.md" for _, n in j.spec["files"])]
    t = alternate({"sql": lambda r: timed(lambda: jobs.every(ws, ("ingest", "upload"), "default", "x.md")),
                   "read all": lambda r: timed(every_then_filter)}, 3)
    rows.append([f"the jobs listing one name, of {JOBS}", median(t["sql"]), median(t["read all"])])

    data["rows"] = rows
    body = md_table(["what", "archivist (s)", "the way it was (s)"], rows)
    report("erase_scale", f"Erase and job lists at scale ({LINES[args.size]}-line document, 500 others; {JOBS} jobs)", body, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
