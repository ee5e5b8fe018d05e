"""Faults: kill -9 in the middle of an ingest, a full disk, a FAISS index out of step with SQLite.

After each fault the workspace must pass SQLite's and FTS5's integrity checks, hold no half
document, have FAISS equal to SQLite (after the repair on open), and, once the same command runs
again, hold exactly what a clean ingest of the same files holds.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from archivist import jobs
from archivist.ingest.pipeline import ingest_paths
from archivist.retrieval.index_kinds import index_ids
from archivist.retrieval.repair import open_checked
from archivist.settings import Settings
from archivist.workspace import WorkspaceError, open_workspace

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
CHUNK_TOKENS = 96  # small chunks: more of them, more commits for a kill to land between

# The ingest CLI with small commit batches and frequent FAISS syncs, so that a kill at a random
# moment can land before, inside or after a SQLite commit or a FAISS save.
INGEST_CHILD = """
import sys
import archivist.ingest.pipeline as p
p.BATCH_CHUNKS = 8
p.FLUSH_SECONDS = 0.2
# Paced, so a fast machine cannot finish the ingest inside the kill's random settle (<= 0.4 s).
import time
import archivist.models as m
for cls in (m.ONNXEmbedder, m.STEmbedder):
    def paced(self, texts, batch_size=32, _embed=cls.embed):
        time.sleep(0.6)
        return _embed(self, texts, batch_size)
    cls.embed = paced
from archivist.cli import main
sys.exit(main(sys.argv[1:]))
"""


# -- helpers shared with test_concurrency.py ------------------------------------------------------


def make_corpus(folder: Path, n: int, seed: int = 0, samples: tuple[str, ...] = (), size: int = 4) -> Path:
    """`n` Markdown files of varied, distinct content built from the sample documents' sentences
    (about `size` sentences per section, 1-2 sections), plus copies of the named sample files."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sentences = []
    for f in sorted(SAMPLES.glob("*.md")) + sorted(SAMPLES.glob("*.csv")):
        sentences += [s.strip() for s in f.read_text().replace("\n", " ").split(". ") if len(s.split()) > 4]
    for i in range(n):
        parts = [f"# Note {i} on {rng.choice(['fleet', 'budget', 'travel', 'security', 'hiring'])}\n"]
        for sec in range(rng.randint(1, 2)):
            parts.append(f"\n## Section {sec} (ref N{seed}-{i}-{sec})\n\n")
            parts.append(". ".join(rng.sample(sentences, rng.randint(max(1, size // 2), size + size // 2))) + ".\n")
        (folder / f"note-{i:03d}.md").write_text("".join(parts))
    for name in samples:
        shutil.copy(SAMPLES / name, folder / name)
    return folder


FORMATS = ("travel-expense-policy.docx", "it-security-policy.html", "price-list-2025.csv")
ALL_FORMATS = ("employee-handbook.pdf",) + FORMATS


def snapshot(ws) -> dict:
    """What the workspace holds, in a form two workspaces can be compared by: per (collection,
    name) the content hash, status, kind and every chunk's (seq, hash, span, page, heading, text)."""
    out = {}
    rows = ws.db.execute("SELECT d.id, k.name, d.path, d.content_hash, d.status, d.kind FROM documents d "
                         "JOIN collections k ON k.id = d.collection_id").fetchall()
    for doc_id, coll, path, digest, status, kind in rows:
        chunks = ws.db.execute("SELECT seq, hash, start, end, page, heading, text FROM chunks WHERE document_id = ? "
                               "ORDER BY seq", (doc_id,)).fetchall()
        out[(coll, path)] = (digest, status, kind, tuple(tuple(c) for c in chunks))
    return out


def problems(ws, check_index: bool = True) -> list[str]:
    """Everything wrong with a workspace: SQLite/FTS5 integrity, documents without chunks,
    duplicated chunks, chunks without a vector, and FAISS files that differ from SQLite (ids
    missing, extra or repeated, or a vector not equal to the stored embedding)."""
    import faiss

    out = []
    if ws.db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
        out.append("sqlite integrity_check failed")
    try:
        ws.db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
    except sqlite3.DatabaseError as e:
        out.append(f"fts5 integrity-check: {e}")
    empty = ws.db.execute("SELECT path FROM documents d WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id)").fetchall()
    if empty:
        out.append(f"documents without chunks: {[r[0] for r in empty]}")
    dups = ws.db.execute("SELECT document_id, seq, COUNT(*) FROM chunks GROUP BY document_id, seq HAVING COUNT(*) > 1").fetchall()
    if dups:
        out.append(f"duplicated chunks: {len(dups)}")
    if ws.db.execute("SELECT COUNT(*) FROM chunks WHERE embedding IS NULL").fetchone()[0]:
        out.append("chunks without an embedding")
    if not check_index:
        return out
    for cid, name in ws.db.execute("SELECT id, name FROM collections").fetchall():
        want = {r[0]: r[1] for r in ws.db.execute(
            "SELECT c.id, c.embedding FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.collection_id = ?", (cid,))}
        path = ws.index_dir / f"c{cid}.faiss"
        if not path.exists():
            if want:
                out.append(f"{name}: no FAISS file for {len(want)} chunks")
            continue
        try:
            index = faiss.read_index(str(path))
        except RuntimeError:
            out.append(f"{name}: FAISS file unreadable")
            continue
        ids = index_ids(index).tolist()
        if len(ids) != len(set(ids)):
            out.append(f"{name}: {len(ids) - len(set(ids))} duplicated ids in FAISS")
        if set(ids) != set(want):
            out.append(f"{name}: FAISS misses {len(set(want) - set(ids))} and has {len(set(ids) - set(want))} extra ids")
            continue
        for i in ids:
            if not np.array_equal(index.reconstruct(i), np.frombuffer(want[i], dtype=np.float32)):
                out.append(f"{name}: FAISS vector of chunk {i} differs from SQLite")
                break
    return out


def settings_at(home: Path) -> Settings:
    return Settings.from_env(home=home, chunk_tokens=CHUNK_TOKENS, chunk_overlap=8, user="")


def clean_reference(tmp_path: Path, corpus: Path, collection: str, embedder) -> dict:
    with open_checked(settings_at(tmp_path / "clean-ws")) as ws:
        results = ingest_paths(ws, [corpus], collection=collection, embedder=embedder, progress=False)
        assert problems(ws) == []
        return snapshot(ws), results


def _child_env(home: Path) -> dict:
    env = dict(os.environ, ARCHIVIST_HOME=str(home), ARCHIVIST_CHUNK_TOKENS=str(CHUNK_TOKENS),
               ARCHIVIST_CHUNK_OVERLAP="8", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("ARCHIVIST_USER", None)
    return env


def _count(db_path: Path, sql: str) -> int:
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as db:
            return db.execute(sql).fetchone()[0]
    except sqlite3.Error:
        return 0


def sigkill_when(proc: subprocess.Popen, ready, timeout: float, settle: float, poll: float, reap: float) -> bool:
    """Wait (checking every `poll` seconds) until `ready()`, failing if `proc` ends or `timeout`
    passes first; `settle` seconds later, SIGKILL it and give it `reap` seconds to end. Returns
    whether it was still running at the kill. The child is killed on the way out in any case."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"the child ended before it could be killed: {proc.stderr.read().decode()[-3000:]}"
            assert time.monotonic() < deadline, "the child made no progress"
            time.sleep(poll)
        time.sleep(settle)
        alive = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=reap)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return alive


def kill_mid_ingest(home: Path, corpus: Path, collection: str, rng: random.Random, timeout: float = 240) -> dict:
    """Start `archivist ingest` in a child, SIGKILL it at a random moment after some documents were
    committed, and return what was stored at that moment."""
    total = len(list(corpus.iterdir()))
    proc = subprocess.Popen([sys.executable, "-c", INGEST_CHILD, "ingest", str(corpus), "-c", collection, "-q"],
                            env=_child_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = home / "archivist.db"
    before = _count(db, "SELECT COUNT(*) FROM documents")
    target = before + rng.randint(1, max(1, (total - before) // 2))
    # Killed somewhere inside the next batch: its commit or the FAISS save.
    alive = sigkill_when(proc, lambda: _count(db, "SELECT COUNT(*) FROM documents") >= target, timeout,
                         rng.uniform(0.0, 0.4), poll=0.02, reap=30)
    return {"alive_at_kill": alive, "returncode": proc.returncode, "total": total,
            "documents_at_kill": _count(db, "SELECT COUNT(*) FROM documents"),
            "chunks_at_kill": _count(db, "SELECT COUNT(*) FROM chunks")}


# -- kill -9 ---------------------------------------------------------------------------------------


def _kill_then_rerun(tmp_path, embedder, kills: int, seed: int, n_notes: int, formats=FORMATS):
    rng = random.Random(seed)
    corpus = make_corpus(tmp_path / "corpus", n_notes, seed=seed, samples=formats, size=3)
    home = tmp_path / "ws"
    reports = [kill_mid_ingest(home, corpus, "docs", rng) for _ in range(kills)]
    for r in reports:
        assert r["alive_at_kill"] and r["returncode"] == -signal.SIGKILL, r
        assert 0 < r["documents_at_kill"] < r["total"], r
    with open_workspace(settings_at(home)) as ws:
        assert problems(ws, check_index=False) == []  # SQLite is consistent right after the kill
    with open_checked(settings_at(home)) as ws:  # the open repairs FAISS if the kill left it behind
        assert problems(ws) == []
        results = ingest_paths(ws, [corpus], collection="docs", embedder=embedder, progress=False)
        assert {r.status for r in results} <= {"added", "unchanged"}
        assert sum(r.status == "unchanged" for r in results) == reports[-1]["documents_at_kill"]
        assert problems(ws) == []
        after = snapshot(ws)
    reference, ref_results = clean_reference(tmp_path, corpus, "docs", embedder)
    assert len(reference) == len(corpus_files := list(corpus.iterdir())) == sum(r.status == "added" for r in ref_results)
    assert after == reference, "the killed-and-rerun workspace differs from a clean ingest"
    return reports, len(corpus_files), sum(len(v[3]) for v in reference.values())


@pytest.mark.slow
def test_kill_9_during_ingest_then_rerun_loses_nothing(tmp_path, embedder):
    reports, files, chunks = _kill_then_rerun(tmp_path, embedder, kills=1, seed=int(os.environ.get("FAULT_SEED", "1")), n_notes=8)
    print(f"kill -9 after {reports[0]['documents_at_kill']}/{files} documents; rerun equals a clean ingest ({chunks} chunks)")


@pytest.mark.long
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_kill_9_repeatedly_then_rerun_loses_nothing(tmp_path, embedder, seed):
    """Four kills at random moments in a row (each rerun killed again), then one full rerun."""
    reports, files, chunks = _kill_then_rerun(tmp_path, embedder, kills=4, seed=seed, n_notes=40, formats=ALL_FORMATS)
    print(f"seed {seed}: kills after {[r['documents_at_kill'] for r in reports]} of {files} documents; "
          f"rerun equals a clean ingest ({chunks} chunks)")


def _cut_short(tmp_path: Path, seed: int) -> tuple[Path, Path, dict]:
    """(corpus, home, report): a workspace whose `archivist ingest` of 8 notes was killed after
    some, not all, of its documents were committed."""
    corpus = make_corpus(tmp_path / "corpus", 8, seed=seed)
    home = tmp_path / "ws"
    report = kill_mid_ingest(home, corpus, "docs", random.Random(seed))
    assert report["alive_at_kill"] and 0 < report["documents_at_kill"] < report["total"], report
    return corpus, home, report


@pytest.mark.slow
def test_an_ingest_cut_short_is_listed_and_resume_finishes_it(tmp_path, embedder, capsys, monkeypatch):
    """kill -9 mid-ingest leaves its job with a dead process, which is then reported interrupted
    (not running): the next ingest says so, `archivist ingest --resume` finishes it (as its user,
    under its own id), the result equals a clean ingest, and it is resumed once only."""
    from archivist.cli import main
    from archivist.ingest.pipeline import interrupted_jobs

    corpus, home, report = _cut_short(tmp_path, 5)
    with open_checked(settings_at(home)) as ws:
        (cut,) = interrupted_jobs(ws)
        assert cut.state == "interrupted" and "archivist jobs resume" in cut.error
        assert cut.spec["collection"] == "docs" and len(cut.spec["files"]) == report["total"]
        assert {n for _, n in cut.spec["files"]} == {f"corpus/{f.name}" for f in corpus.iterdir()}
    for key, value in {"ARCHIVIST_HOME": str(home), "ARCHIVIST_CHUNK_TOKENS": str(CHUNK_TOKENS),
                       "ARCHIVIST_CHUNK_OVERLAP": "8"}.items():
        monkeypatch.setenv(key, value)
    extra = tmp_path / "extra.md"
    extra.write_text("# Extra\n\nThe loading dock closes at 18:00 on Fridays.\n")
    assert main(["ingest", str(extra), "-c", "docs", "-q"]) == 0
    assert f"job {cut.id}" in capsys.readouterr().err  # the note names the job cut short
    assert main(["ingest", "--resume", "--json"]) == 0
    out = capsys.readouterr()
    assert "resumed 1 interrupted ingest job" in out.err
    statuses = [f["status"] for f in json.loads(out.out)["files"]]
    assert sorted(statuses) == sorted(["unchanged"] * report["documents_at_kill"]
                                      + ["added"] * (report["total"] - report["documents_at_kill"]))
    assert main(["ingest", "--resume", "-q"]) == 0 and "resumed 0 " in capsys.readouterr().err
    with open_checked(settings_at(home)) as ws:
        assert problems(ws) == [] and interrupted_jobs(ws) == []
        rows = sorted(jobs.list_jobs(ws), key=lambda j: j.created_at)
        assert [(j.id == cut.id, j.state, j.resumed) for j in rows] == [(True, "done", 1), (False, "done", 0)]
        after = {k: v for k, v in snapshot(ws).items() if k[1] != "extra.md"}
    reference, _ = clean_reference(tmp_path, corpus, "docs", embedder)
    assert after == reference


@pytest.mark.slow
def test_the_app_resumes_an_ingest_cut_short_when_it_starts(tmp_path, embedder):
    from archivist.ui import library

    _, home, report = _cut_short(tmp_path, 6)
    (job,) = library.resume_interrupted(settings_at(home))
    assert job.resumed == 1 and job.collection == "docs" and job.total == report["total"]
    assert library.resume_interrupted(settings_at(home)) == []  # claimed: a second server start does nothing
    job = library.wait(job, timeout=240)
    assert not job.running and job.error is None and job.failed == 0, [(f.name, f.status, f.reason) for f in job.files]
    assert sum(f.status == "unchanged" for f in job.files) == report["documents_at_kill"]
    with open_checked(settings_at(home)) as ws:
        assert problems(ws) == []
        assert ws.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == report["total"]


@pytest.mark.slow
def test_the_api_server_resumes_an_ingest_cut_short_beside_it(tmp_path, embedder, capsys):
    from archivist.api.cli import resume_ingest_in_background

    _, home, report = _cut_short(tmp_path, 7)
    resume_ingest_in_background(settings_at(home)).join(timeout=240)
    assert f"into docs: {report['total']} files" in capsys.readouterr().err
    with open_checked(settings_at(home)) as ws:
        assert problems(ws) == []
        assert ws.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == report["total"]
        assert [(j.state, j.resumed) for j in jobs.list_jobs(ws)] == [("done", 1)]


# -- FAISS out of step with SQLite ------------------------------------------------------------------


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, embedder):
    """A small ingested workspace that the damage tests copy."""
    root = tmp_path_factory.mktemp("indexed")
    corpus = make_corpus(root / "corpus", 4, seed=3)
    with open_checked(settings_at(root / "ws")) as ws:
        ingest_paths(ws, [corpus], collection="docs", embedder=embedder, progress=False)
        return {"home": root / "ws", "cid": ws.collection_id("docs"), "snapshot": snapshot(ws)}


@pytest.mark.parametrize("damage", ["deleted", "truncated", "garbage", "stale", "extra-id", "one-missing", "sidecar-deleted"])
def test_faiss_out_of_step_is_detected_and_repaired_on_open(tmp_path, indexed, damage):
    import faiss

    home = tmp_path / "ws"
    shutil.copytree(indexed["home"], home)
    cid, reference = indexed["cid"], indexed["snapshot"]
    path, side = home / "index" / f"c{cid}.faiss", home / "index" / f"c{cid}.json"
    good = path.read_bytes()
    if damage == "deleted":
        path.unlink()
    elif damage == "truncated":  # a torn write
        path.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(good)))
    elif damage == "sidecar-deleted":
        side.unlink()
    else:
        index = faiss.read_index(str(path))
        ids = index_ids(index)
        if damage == "stale":  # an index from before the last batch: some ids missing
            index.remove_ids(faiss.IDSelectorBatch(ids[-3:]))
        elif damage == "one-missing":
            index.remove_ids(faiss.IDSelectorBatch(ids[:1]))
        elif damage == "extra-id":  # a vector for a chunk SQLite no longer has
            index.add_with_ids(np.ones((1, index.d), dtype=np.float32), np.array([10**9], dtype=np.int64))
        faiss.write_index(index, str(path))
    if damage != "sidecar-deleted":
        with open_workspace(settings_at(home)) as ws:
            assert problems(ws) != []
    with open_checked(settings_at(home)) as ws:
        assert problems(ws) == []
        assert snapshot(ws) == reference


def test_reindex_cli_repairs_and_needs_admin(tmp_path, embedder, cli):
    corpus = make_corpus(tmp_path / "corpus", 2, seed=4)
    home = tmp_path / "ws"
    with open_checked(settings_at(home)) as ws:
        ingest_paths(ws, [corpus], collection="docs", embedder=embedder, progress=False)
        from archivist import access

        access.add_user(ws, "rita")
        access.grant(ws, "rita", "docs", "write")
    (home / "index" / "c1.faiss").write_bytes(b"junk")
    env = _child_env(home)
    r = cli("--user", "rita", "reindex", env=env)
    assert r.returncode == 2 and "needs the admin role" in r.stderr
    r = cli("reindex", "--json", env=env)
    assert r.returncode == 0, r.stderr
    with open_workspace(settings_at(home)) as ws:
        assert problems(ws) == []


# -- a full disk -------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 12 MB tmpfs: needs root and permission to mount (skipped otherwise)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and the mount command")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(mnt: Path, leave: int, name: str = "filler") -> Path:
    """Fill the disk until only about `leave` bytes are free; returns the filler file."""
    filler = mnt / name
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\1" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    with open(filler, "r+b") as f:
        f.truncate(max(0, filler.stat().st_size - leave))
    return filler


@pytest.mark.slow
def test_full_disk_gives_a_clear_error_and_keeps_the_workspace(tmp_path, small_disk, embedder):
    from archivist.ingest.uploads import save_upload

    corpus = make_corpus(tmp_path / "corpus", 10, seed=5, size=3)
    first = sorted(corpus.iterdir())[:3]
    home = small_disk / "ws"
    with open_checked(settings_at(home)) as ws:
        ingest_paths(ws, first, names=[f"corpus/{p.name}" for p in first], collection="docs", embedder=embedder, progress=False)
        before = snapshot(ws)
    filler = fill(small_disk, leave=64 * 1024)
    errors = []
    with open_checked(settings_at(home)) as ws:
        try:
            results = ingest_paths(ws, [corpus], collection="docs", embedder=embedder, progress=False)
            errors += [r.reason for r in results if r.status == "failed"]
        except WorkspaceError as e:
            errors.append(str(e))
        with pytest.raises(WorkspaceError, match="disk"):
            save_upload(ws, "big.md", b"# big\n\n" + b"word " * 400_000)
        assert not list((home / "uploads").rglob(".part-*"))
    assert errors and all("disk is full" in e for e in errors), errors
    with open_workspace(settings_at(home)) as ws:
        assert problems(ws, check_index=False) == []
        now = snapshot(ws)
        assert {k: v for k, v in now.items() if k in before} == before  # what was stored before is intact
    filler.unlink()
    with open_checked(settings_at(home)) as ws:  # room again: the rerun finishes the work
        assert problems(ws) == []
        results = ingest_paths(ws, [corpus], collection="docs", embedder=embedder, progress=False)
        assert not [r for r in results if r.status == "failed"]
        assert problems(ws) == []
        after = snapshot(ws)
    reference, _ = clean_reference(tmp_path, corpus, "docs", embedder)
    assert after == reference


@pytest.mark.slow
def test_full_disk_on_open_and_on_index_save(tmp_path, small_disk, embedder, cli):
    """With no byte free, opening the workspace and saving a FAISS file fail with WorkspaceError
    (the CLI prints it as one line), and the stored data is untouched."""
    from archivist.retrieval import vectors

    corpus = make_corpus(tmp_path / "corpus", 3, seed=6)
    home = small_disk / "ws"
    with open_checked(settings_at(home)) as ws:
        ingest_paths(ws, [corpus], collection="docs", embedder=embedder, progress=False)
        before = snapshot(ws)
        cid = ws.collection_id("docs")
        index_bytes = (home / "index" / f"c{cid}.faiss").read_bytes()
        filler = fill(small_disk, leave=0)
        with pytest.raises(WorkspaceError, match="cannot save the vector index .*the disk is full"):
            vectors.sync(ws, cid, rebuild=True)
        assert (home / "index" / f"c{cid}.faiss").read_bytes() == index_bytes
        assert not list((home / "index").glob("*.tmp"))
    (home / "index" / f"c{cid}.faiss").unlink()  # now the open must repair it, and cannot
    filler2 = fill(small_disk, leave=0, name="filler2")
    with pytest.raises(WorkspaceError, match="disk is full"):
        open_checked(settings_at(home))
    r = cli("documents", "--json", env=_child_env(home))
    assert r.returncode == 2 and r.stderr.startswith("archivist: error:") and "disk is full" in r.stderr, r.stderr
    filler.unlink()
    filler2.unlink()
    with open_checked(settings_at(home)) as ws:
        assert problems(ws) == [] and snapshot(ws) == before


# -- kill -9 during fine-tuning, then --resume ---------------------------------------------------------


FT_ARGS = ["--max-steps", "8", "--save-every", "2", "--batch-size", "1", "--max-seq-len", "160", "--rank", "4",
           "--dropout", "0.0", "--eval-limit", "1", "--eval-max-new-tokens", "4", "--eval-fraction", "0.25",
           "--threads", "1", "--device", "cpu", "--no-activate", "-q"]


def _qa_file(path: Path) -> Path:
    facts = [("What is the on-call allowance?", "EUR 250 per week."), ("When is the on-call handover?", "Mondays at 10:30."),
             ("Where is Northwind Robotics based?", "In Hamburg."), ("What does the fleet cloud run?", "Telemetry ingest and the mission planner."),
             ("Who owns the runbook?", "The platform team."), ("How long is the rotation?", "One week."),
             ("What do engineers get for night call-outs?", "Time off in lieu."), ("Where do robots report to?", "The fleet cloud.")]
    path.write_text("".join(json.dumps({"prompt": q, "completion": a, "document": f"d{i}"}) + "\n" for i, (q, a) in enumerate(facts)))
    return path


def _finetune(home: Path, *args: str, wait: bool = True):
    cmd = [sys.executable, "-m", "archivist.cli", "finetune", *args]
    if wait:
        return subprocess.run(cmd, env=_child_env(home), capture_output=True, text=True, timeout=1800)
    return subprocess.Popen(cmd, env=_child_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _adapter_tensors(home: Path) -> dict:
    from safetensors.numpy import load_file

    [f] = list((home / "adapters").rglob("adapter_model.safetensors"))
    return load_file(str(f))


def _steps(home: Path, run_id: str) -> list[int]:
    return [json.loads(line)["step"] for line in (home / "runs" / run_id / "metrics.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.long
def test_kill_9_during_finetune_then_resume_loses_nothing(tmp_path):
    """A fine-tune killed after a checkpoint and resumed with --resume ends with every step logged
    once and the same LoRA weights as an uninterrupted run of the same config."""
    data = _qa_file(tmp_path / "qa.jsonl")
    clean_home, home = tmp_path / "clean", tmp_path / "killed"
    r = _finetune(clean_home, "--data", str(data), *FT_ARGS)
    assert r.returncode == 0, r.stderr[-3000:]
    proc = _finetune(home, "--data", str(data), *FT_ARGS, wait=False)
    alive = sigkill_when(proc, lambda: bool(list(home.glob("runs/*/checkpoints/latest"))), 1200,
                         random.Random(7).uniform(0.0, 2.0), poll=0.05, reap=60)
    assert alive, "the run finished before it could be killed"
    [run_dir] = list((home / "runs").glob("*/checkpoints"))
    run_id = run_dir.parent.name
    r = _finetune(home, "--resume", run_id, "-q")
    assert r.returncode == 0, r.stderr[-3000:]
    assert _steps(home, run_id) == list(range(1, 9))
    [clean_run] = [p.name for p in (clean_home / "runs").iterdir() if p.is_dir()]
    assert _steps(clean_home, clean_run) == list(range(1, 9))
    resumed, clean = _adapter_tensors(home), _adapter_tensors(clean_home)
    assert resumed.keys() == clean.keys()
    for k in clean:
        np.testing.assert_allclose(resumed[k], clean[k], atol=1e-5, err_msg=k)
