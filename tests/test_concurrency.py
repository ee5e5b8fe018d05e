"""Several processes ingesting, updating, deleting and querying one workspace at once.

Ingesters each write their own documents (into their own collection and a shared one), update
some and delete some, and record what they expect to be stored. Queriers search and list as the
admin and as a reader of the shared collection only. At the end the workspace must hold exactly
what the ingesters expect (no chunk lost, none duplicated), FAISS must equal SQLite without a
repair, no process may have seen an error ("database is locked" included), and the reader must
never have seen a chunk outside the shared collection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archivist.retrieval.repair import open_checked
from archivist.settings import Settings
from archivist.workspace import open_workspace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_faults import problems  # noqa: E402

BENCH = Path(__file__).resolve().parent.parent / "bench"
WORKER = f"import sys; sys.path.append({str(BENCH)!r})  # appended: shadows no installed module\n" + r'''
import hashlib, json, random, sys, time, traceback
from pathlib import Path
role, idx, home, seconds, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]), Path(sys.argv[5])
from archivist.retrieval.repair import open_checked
from archivist.settings import Settings
from archivist.models import embedder_for
from archivist.ingest.pipeline import delete_document, ingest_paths, list_documents
from archivist.retrieval.search import search
from hash_embedder import HashEmbedder  # queriers need a query vector, not a good one: no torch to load

rng = random.Random(idx)
ws = open_checked(Settings.from_env(home=home, chunk_tokens=96, chunk_overlap=8, user=""))


embedder = embedder_for(ws.settings) if role == "ingest" else HashEmbedder()
embedder.embed(["warm up"])
words = open(sys.argv[6]).read().split()
(folder / f"ready-{role}-{idx}").touch()
while not (folder / "go").exists():
    time.sleep(0.05)
deadline = time.monotonic() + seconds
report = {"role": role, "idx": idx, "ops": 0, "errors": [], "expected": {}, "deleted": [], "leaks": 0, "hits": 0}

def text(i, version):
    body = " ".join(rng.choice(words) for _ in range(rng.randint(40, 160)))
    return f"# Worker {idx} note {i} v{version}\n\nMarker W{idx}N{i}V{version}. {body}.\n"

def ingest(name, coll, content):
    path = folder / f"w{idx}" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(content)
    [res] = ingest_paths(ws, [path], collection=coll, names=[f"w{idx}/{name}"], embedder=embedder, progress=False)
    if res.status == "failed":
        raise RuntimeError(f"{name}: {res.reason}")
    report["expected"][f"w{idx}/{name}"] = [coll, hashlib.sha256(content.encode()).hexdigest(), res.chunks]

i = 0
while time.monotonic() < deadline:
    try:
        if role == "ingest":
            live = [n for n in report["expected"]]
            if i % 4 == 3 and live:  # a new version of an earlier document
                name = rng.choice(live)
                coll = report["expected"][name][0]
                ingest(name.split("/", 1)[1], coll, text(i, 2))
            elif i % 6 == 5 and live:
                name = rng.choice(live)
                delete_document(ws, name, collection=report["expected"][name][0])
                del report["expected"][name]
                report["deleted"].append(name)
            else:
                ingest(f"note-{i}.md", "shared" if i % 2 else f"own-{idx}", text(i, 1))
        else:
            user = "reader" if i % 2 else None
            hits = search(ws, " ".join(rng.choice(words) for _ in range(3)), k=8, user=user, embedder=embedder)
            report["hits"] += len(hits)
            if user == "reader":
                report["leaks"] += sum(h.collection != "shared" for h in hits)
            list_documents(ws, user)
        report["ops"] += 1
    except Exception as e:
        report["errors"].append(f"{type(e).__name__}: {e} | {traceback.format_exc()[-600:]}")
    i += 1
ws.close()
(folder / f"report-{role}-{idx}.json").write_text(json.dumps(report))
'''


def _words() -> str:
    samples = Path(__file__).resolve().parent.parent / "samples"
    text = " ".join(f.read_text() for f in sorted(samples.glob("*.md")))
    return " ".join(w.strip(".,;:()#*`|-") for w in text.split() if w.strip(".,;:()#*`|-").isalpha())


def run_load(tmp_path: Path, ingesters: int, queriers: int, seconds: float) -> dict:
    home, folder = tmp_path / "ws", tmp_path / "work"
    folder.mkdir()
    words = folder / "words.txt"
    words.write_text(_words())
    with open_checked(Settings.from_env(home=home, user="")) as ws:
        from archivist import access

        access.add_user(ws, "reader")
        access.grant(ws, "reader", "shared", "read")
        for k in range(ingesters):
            access.create_collection(ws, f"own-{k}")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    env.pop("ARCHIVIST_USER", None)
    procs = []
    for role, n in (("ingest", ingesters), ("query", queriers)):
        for k in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", WORKER, role, str(k), str(home), str(seconds), str(folder), str(words)],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    try:
        deadline = time.monotonic() + 300
        while len(list(folder.glob("ready-*"))) < len(procs):
            dead = [p for p in procs if p.poll() is not None]
            assert not dead, dead[0].stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.1)
        t0 = time.monotonic()
        (folder / "go").touch()
        for p in procs:
            p.wait(timeout=seconds + 300)
        wall = time.monotonic() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p in procs:
        assert p.returncode == 0, p.stderr.read().decode()[-3000:]
    reports = [json.loads(f.read_text()) for f in sorted(folder.glob("report-*.json"))]
    assert len(reports) == len(procs)
    return {"home": home, "reports": reports, "wall": wall}


def check(result: dict) -> dict:
    """Compare the workspace with what the ingesters expect; returns the figures."""
    reports = result["reports"]
    errors = [e for r in reports for e in r["errors"]]
    expected = {name: v for r in reports if r["role"] == "ingest" for name, v in r["expected"].items()}
    with open_workspace(Settings.from_env(home=result["home"], user="")) as ws:
        rows = ws.db.execute("SELECT d.path, k.name, d.content_hash, (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id) "
                             "FROM documents d JOIN collections k ON k.id = d.collection_id").fetchall()
        stored = {path: [coll, None, n] for path, coll, _, n in rows}
        hashes = {path: h for path, _, h, _ in rows}
        issues = problems(ws)
        duplicated = ws.db.execute("SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM chunks "
                                   "GROUP BY document_id, seq HAVING n > 1)").fetchone()[0]
    want_chunks = sum(v[2] for v in expected.values())
    have_chunks = sum(stored[n][2] for n in expected if n in stored)
    figures = {
        "processes": len(reports), "seconds": round(result["wall"], 1),
        "ingest_ops": sum(r["ops"] for r in reports if r["role"] == "ingest"),
        "query_ops": sum(r["ops"] for r in reports if r["role"] == "query"),
        "documents": len(expected), "deleted": sum(len(r["deleted"]) for r in reports),
        "chunks_expected": want_chunks,
        "chunks_lost": want_chunks - have_chunks, "chunks_duplicated": duplicated,
        "documents_missing": sorted(set(expected) - set(stored)), "documents_unexpected": sorted(set(stored) - set(expected)),
        "wrong_content": sorted(n for n in expected if n in stored and (hashes[n] != expected[n][1] or stored[n][0] != expected[n][0]
                                                                          or stored[n][2] != expected[n][2])),
        "errors": errors, "reader_leaks": sum(r["leaks"] for r in reports), "problems": issues,
    }
    print(json.dumps({k: v for k, v in figures.items() if k != "errors"} | {"errors": len(errors)}))
    return figures


def assert_clean(f: dict) -> None:
    assert f["errors"] == []
    assert f["chunks_lost"] == 0 and f["chunks_duplicated"] == 0
    assert f["documents_missing"] == [] and f["documents_unexpected"] == [] and f["wrong_content"] == []
    assert f["reader_leaks"] == 0 and f["problems"] == []
    assert f["ingest_ops"] >= 4 and f["query_ops"] >= 4 and f["documents"] > 0


@pytest.mark.slow
def test_four_processes_ingest_and_query_for_10_seconds(tmp_path):
    assert_clean(check(run_load(tmp_path, ingesters=2, queriers=2, seconds=10)))


@pytest.mark.long
def test_six_processes_ingest_and_query_for_45_seconds(tmp_path):
    assert_clean(check(run_load(tmp_path, ingesters=3, queriers=3, seconds=45)))
