"""Listing what a team stored, with today's access checks (what an answer drew on, cited or not, and
its adapter's lineage) against the code before them (cc7864d), alternated in the same run.

    python bench/access_scale.py [--size small|full] [--baseline REV]   (15 alternated repeats; full: 30)

A team's workspace, generated (seed 7) by each side with its own code: 20 users (one admin, 19
members each reading 5 of 10 collections), 5 adapters whose lineages name 2 collections each, 500
documents of 2 chunks, one conversation of 1,000 messages (500 answers with 3 citations and 5
passages, a tenth of them of a chunk re-ingested since), 20,000 feedback rows (a third rating one of
those answers) and 500 stored evaluations. Timed: `conversations.messages` of that conversation,
`feedback.list_feedback` (the admin, every row; a member, their own), `list_evaluations` (the
admin, all 500) and `finetune.datasets.examples_from_feedback` (the admin's feedback dataset rows;
every row cites recorded passages, so nothing is embedded). The baseline runs in a worker process
that imports the repository as it was at the baseline revision (a git export, the editable install's
finder pointed at it), the current code in another; they answer in turn, A B A B.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASELINE = "cc7864d"
USERS, COLLECTIONS, ADAPTERS, DOCS, MESSAGES, FEEDBACK, EVALUATIONS = 20, 10, 5, 500, 1000, 20_000, 500
REPEATS = 15  # each call takes 10 ms to 1 s: with 5, a busy machine turned a 0.94 ratio into 1.35
OPS = ("messages", "list_feedback admin", "list_feedback member", "list_evaluations", "examples_from_feedback")


def build(home: Path):
    """The team's workspace under `home`, made with the importing side's code; returns it."""
    from archivist import access
    from archivist.settings import Settings
    from archivist.workspace import open_workspace, transaction

    rng = random.Random(7)
    ws = open_workspace(Settings.from_env(home=home))
    colls = [f"c{i}" for i in range(COLLECTIONS)]
    access.add_user(ws, "boss", "admin")
    for c in colls:
        access.create_collection(ws, c, by="boss")
    members = [f"u{i:02}" for i in range(1, USERS)]
    for u in members:
        access.add_user(ws, u, "member", by="boss")
        for c in rng.sample(colls, 5):
            access.grant(ws, u, c, "read", by="boss")
    reads = set(access.readable_collections(ws, "u01"))
    adapters = [f"a{i}" for i in range(ADAPTERS)]
    db = ws.db
    with transaction(db):
        for a in adapters:
            taught = rng.sample(colls, 2)
            db.execute("INSERT INTO adapters(name, path, base_model, lineage) VALUES (?, ?, ?, ?)",
                       (a, str(home / "adapters" / a), ws.settings.llm, json.dumps(
                           {"dataset": "d", "collections": taught, "documents": [{"collection": taught[0], "document": "d0.md"}]})))
        chunks = []  # (id, document, collection, text)
        for d in range(DOCS):
            coll = colls[d % COLLECTIONS]
            kid = db.execute("SELECT id FROM collections WHERE name = ?", (coll,)).fetchone()[0]
            did = db.execute("INSERT INTO documents(collection_id, path, content_hash, kind, size) VALUES (?, ?, ?, 'text', 1)",
                             (kid, f"d{d}.md", f"h{d}")).lastrowid
            for s in range(2):
                text = f"passage {s} of document {d}: " + " ".join(rng.choice("abcdefgh") * 3 for _ in range(40))
                cid = db.execute("INSERT INTO chunks(document_id, seq, text, start, end, n_tokens, hash) VALUES (?,?,?,0,1,40,?)",
                                 (did, s, text, f"{d}-{s}")).lastrowid
                chunks.append((cid, f"d{d}.md", coll, text))
        gone = max(c[0] for c in chunks) + 1  # a chunk id re-ingested since: its text is looked for in the document

        def passages(n: int, coll: str | None) -> list[dict]:
            pool = [c for c in chunks if c[2] == coll] if coll and rng.random() < 0.8 else chunks
            out = []
            for i, (cid, doc, c, text) in enumerate(rng.sample(pool, n), start=1):
                out.append({"n": i, "chunk_id": gone + i if rng.random() < 0.1 else cid, "document": doc, "collection": c, "text": text})
            return out

        uid = {r[0]: r[1] for r in db.execute("SELECT name, id FROM users")}
        conv = db.execute("INSERT INTO conversations(user_id, title) VALUES (?, 'team')", (uid["u01"],)).lastrowid
        answers = []
        for m in range(MESSAGES // 2):
            coll = rng.choice(sorted(reads) if rng.random() < 0.9 else colls)
            db.execute("INSERT INTO messages(conversation_id, role, content) VALUES (?, 'user', ?)", (conv, f"question {m}?"))
            stored = {"citations": passages(3, coll), "passages": passages(5, coll), "collection": coll, "question": f"question {m}?"}
            answers.append(db.execute("INSERT INTO messages(conversation_id, role, content, citations, adapter) VALUES (?, 'assistant', ?, ?, ?)",
                                      (conv, f"answer {m} [1]", json.dumps(stored), rng.choice(adapters + [None] * 5))).lastrowid)
        users = ["boss", *members]
        for f in range(FEEDBACK):
            coll = rng.choice(colls)
            rated = rng.choice(answers) if rng.random() < 1 / 3 else None
            db.execute("INSERT INTO feedback(user_id, collection, question, answer, rating, correction, citations, adapter, message_id) "
                       "VALUES (?,?,?,?,?,?,?,?,?)",
                       (uid["u01" if rated else rng.choice(users)], coll, f"question {f}?", f"answer {f} [1]", rng.choice((-1, 1)),
                        f"the right answer {f} [1]" if rng.random() < 0.1 else None, json.dumps(passages(3, coll)),
                        rng.choice(adapters + [None] * 5), rated))
        for e in range(EVALUATIONS):
            per_question = [{"question": f"q{q}?", "answer": f"a{q}", "key": "k", "cited_documents": ["d1.md"]} for q in range(10)]
            results = {"collections": rng.sample(colls, 2), "adapter": rng.choice(adapters + [None]), "per_question": per_question}
            db.execute("INSERT INTO evaluations(kind, set_name, results, user_id) VALUES ('answers', 'set.jsonl', ?, ?)",
                       (json.dumps(results), uid[rng.choice(users)]))
    return ws, conv


def worker(home: str) -> None:
    """One side: build its workspace, then time each operation once per line read from stdin."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from archivist import conversations, feedback
    from archivist.finetune.datasets import examples_from_feedback
    from archivist.retrieval.evaluation import list_evaluations

    ws, conv = build(Path(home))
    calls = {"messages": lambda: conversations.messages(ws, conv, "u01"),
             "list_feedback admin": lambda: feedback.list_feedback(ws, "boss"),
             "list_feedback member": lambda: feedback.list_feedback(ws, "u01"),
             "list_evaluations": lambda: list_evaluations(ws, user="boss", limit=EVALUATIONS),
             "examples_from_feedback": lambda: examples_from_feedback(ws, "boss")}
    print(json.dumps({"ready": True, "rows": {k: len(v() if k != "examples_from_feedback" else v()[0]) for k, v in calls.items()}}), flush=True)
    for _ in sys.stdin:
        times = {}
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name] = time.perf_counter() - t0
        print(json.dumps(times), flush=True)


def start(side: str, root: Path, rev: str | None) -> subprocess.Popen:
    """A worker process for `side`: the working tree (rev None), or `rev` exported under `root`."""
    env = dict(os.environ)
    if rev:
        code = root / "code"
        code.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
        shim = root / "shim"
        shim.mkdir()
        # the editable install maps archivist (and its archivist.retrieval, ... folders) to the repository:
        # pointed at the export, every module the worker imports is the baseline's
        (shim / "sitecustomize.py").write_text(
            "import __editable___archivist_0_1_0_finder as f\n"
            f"for k, v in list(f.MAPPING.items()):\n    f.MAPPING[k] = v.replace({str(REPO)!r}, {str(code)!r})\n")
        env["PYTHONPATH"] = str(shim)
    return subprocess.Popen([sys.executable, __file__, "--worker", str(root / "ws")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, cwd=str(root))


def main(argv=None) -> int:
    sys.path.insert(0, str(REPO / "bench"))
    from common import log, md_table, median, report, size_parser

    ap = size_parser(__doc__)
    ap.add_argument("--baseline", default=BASELINE, help="the git revision to compare with (default %(default)s)")
    args = ap.parse_args(argv)
    repeats = REPEATS * (2 if args.size == "full" else 1)
    tmp = Path(tempfile.mkdtemp(prefix="access-scale-"))
    sides = {}
    for side, rev in (("now", None), ("before", args.baseline)):
        (tmp / side).mkdir()
        log(f"building the workspace of {side}")
        sides[side] = start(side, tmp / side, rev)
        ready = json.loads(sides[side].stdout.readline())
        log(f"{side}: rows {ready['rows']}")
    t: dict[str, dict[str, list[float]]] = {s: {op: [] for op in OPS} for s in sides}
    for r in range(repeats):
        for side, proc in sides.items():
            proc.stdin.write("go\n")
            proc.stdin.flush()
            for op, v in json.loads(proc.stdout.readline()).items():
                t[side][op].append(v)
        log(f"repeat {r + 1}/{repeats}")
    for proc in sides.values():
        proc.stdin.close()
        proc.wait()
    shutil.rmtree(tmp, ignore_errors=True)  # the two workspaces and the baseline's export
    rows = [[op, median(t["now"][op]), median(t["before"][op]), median(t["now"][op]) / median(t["before"][op])] for op in OPS]
    body = (f"{USERS} users, {COLLECTIONS} collections, {ADAPTERS} adapters, one conversation of {MESSAGES:,} messages, "
            f"{FEEDBACK:,} feedback rows, {EVALUATIONS} stored evaluations; median of {repeats} alternated repeats, seconds.\n\n"
            + md_table(["operation", "now", f"before ({args.baseline})", "now / before"], rows))
    report("access_scale", "Access checks at a team's scale", body, {"times": t, "baseline": args.baseline})
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2])
    else:
        sys.exit(main())
