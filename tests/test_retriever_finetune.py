"""`archivist finetune --target retriever` and re-embedding (finetune/retriever.py, retrieval/reembed.py),
on real documents (the docstrings of Python's standard library, written as Markdown files, and office
handbooks written in a company's own codes) with the real embedder: a tiny fine-tune learns the codes
and beats the base on its own held-out documents; a re-embed killed
with SIGKILL and resumed leaves the same index as an uninterrupted one; searches during a re-embed
use the old index; an adapted embedder's lineage decides who sees it, and after the switch a user's
searches still return only what they may read."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from jargon import write_jargon_docs

MODULES = ["json", "csv", "heapq", "bisect", "textwrap", "shlex", "fnmatch", "glob", "base64", "calendar",
           "difflib", "statistics", "string", "zipfile", "gzip", "tempfile", "shutil", "argparse", "logging",
           "pathlib"]


def write_docs(folder: Path, modules=MODULES, limit: int = 4000) -> list[Path]:
    """One Markdown document per standard-library module: its docstring, then a section per public
    function or class with its docstring (at most `limit` characters)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in modules:
        mod = importlib.import_module(name)
        parts = [f"# The {name} module\n\n{inspect.cleandoc(mod.__doc__ or '')}\n"]
        for attr in sorted(getattr(mod, "__all__", None) or dir(mod)):
            obj = getattr(mod, attr, None)
            if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)) or not obj.__doc__:
                continue
            parts.append(f"## {name}.{attr}\n\n{inspect.cleandoc(obj.__doc__)}\n")
        text = "\n".join(parts)[:limit]
        path = folder / f"{name}.md"
        path.write_text(text)
        out.append(path)
    return out


def torch_embedder(settings):
    """The base model on the torch backend: another embedder identity (fp32 instead of int8 ONNX)."""
    from archivist.models import load_embedder

    return load_embedder(settings.embedder, "cpu", "torch", str(settings.cache))


def index_content(home: Path) -> dict:
    """What a re-embed leaves: every chunk's (hash, vector), the embedder record, and each FAISS
    file's ids and vectors, read back in a fresh workspace handle."""
    from archivist.retrieval import index_kinds, vectors
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    with open_workspace(Settings.from_env(home=home)) as ws:
        chunks = {r[0]: (r[1], r[2]) for r in ws.db.execute("SELECT id, hash, embedding FROM chunks")}
        meta = {k: ws.meta(k) for k in ("embedder", "embedding_dim", "embedder_generation", "embedder_identity")}
        faiss = {}
        for cid in [r[0] for r in ws.db.execute("SELECT id FROM collections")]:
            path, _ = vectors._paths(ws, cid)
            index = vectors._faiss().read_index(str(path))
            ids = np.sort(index_kinds.index_ids(index))
            faiss[cid] = (ids.tolist(), index.reconstruct_batch(ids).tobytes())
    return {"chunks": chunks, "meta": meta, "faiss": faiss,
            "pointer": {k: v for k, v in json.loads((home / "index" / "embedder.json").read_text()).items() if k != "switched"}}


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    return write_docs(tmp_path_factory.mktemp("stdlib-docs"))


@pytest.fixture
def stdlib_ws(ws, embedder, docs):
    from archivist.ingest.pipeline import ingest_paths

    results = ingest_paths(ws, docs[:8], collection="default", embedder=embedder, progress=False)
    assert all(r.status == "added" for r in results), [(r.name, r.reason) for r in results]
    return ws


# -- the recipe ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_tiny_finetune_learns_the_company_words_and_beats_the_base_on_held_out_documents(ws, embedder, tmp_path,
                                                                                             one_torch_thread):
    """24 handbooks x 8 sections: 144 training questions, 9 steps of 16 (~35 CPU-seconds). The held-out
    documents' sentence questions that survive `unambiguous` are mostly the code sentences (the plain
    ones repeat across handbooks), where the base ranks near chance and the adapted model has learned
    the codes: on 2026-12-06, in hybrid search (what decides) MRR@10 0.24 -> 0.35 (+0.11 [+0.06,
    +0.18]), by cosine alone 0.20 -> 0.44."""
    from archivist.finetune import embedders, retriever
    from archivist.ingest.pipeline import ingest_paths

    docs = write_jargon_docs(tmp_path / "handbooks")
    ingest_paths(ws, docs, collection="default", embedder=embedder, progress=False)
    assert ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] >= 24 * 8  # a chunk per section (and the titles)
    cfg = retriever.RetrieverConfig(questions="sentence", max_chunks=160, max_eval=80, batch_size=16, epochs=1, lr=2e-4,
                                    max_seq_len=64, train_layers=0, eval_fraction=0.25, activate="never")
    report = retriever.finetune_retriever(ws, cfg, progress=False)
    ev = report["evaluation"]
    assert ev["questions"] >= 15 and report["questions"]["train"] >= 128
    # registered with its lineage; not switched to (activate="never")
    m = embedders.load_manifest(ws, report["name"])
    assert m["collections"] == ["default"] and m["base"] == ws.settings.embedder
    held, train = set(m["documents"]["held_out"]), set(m["documents"]["train"])
    assert held and train and not held & train and len(held | train) == len(docs)
    assert (embedders.folder(ws, report["name"]) / "model.safetensors").exists()
    assert not (ws.home / "index" / "embedder.json").exists()
    assert m["evaluation"] == ev
    from archivist import audit

    [rec] = audit.read(ws, by="admin", action="embedder.registered")  # the adaptation is in the audit log
    assert rec["target"] == report["name"] and rec["detail"]["collections"] == ["default"]
    # the adapted model ranks the held-out documents' own passages better than the base, in hybrid
    # search with a bootstrap interval above zero, so `activate="auto"` would switch to it
    assert ev["adapted"]["mrr@10"] > ev["base"]["mrr@10"] + 0.05, ev
    assert ev["dense"]["adapted"]["mrr@10"] > ev["dense"]["base"]["mrr@10"] + 0.1, ev
    assert report["better"] and ev["difference"]["mrr@10"]["low"] > 0, ev


def test_questions_are_synthetic_and_never_verbatim_in_their_passage():
    import random

    from archivist.finetune.retriever import question_for

    text = ("The heapq module provides an implementation of the heap queue algorithm. Heaps are binary trees "
            "for which every parent node has a value less than or equal to any of its children. This "
            "implementation uses arrays for which heap[k] <= heap[2*k+1] for all k, counting from zero.")
    q, rest, kind = question_for(text, ("sentence",), random.Random(0))
    assert kind == "sentence" and q in text and q not in rest and len(rest) < len(text)
    assert question_for("Too short.", ("sentence",), random.Random(0)) is None


def test_the_held_out_evaluation_that_decides_is_hybrid_search_as_served(ws):
    """A model can rank better by cosine alone and worse once fused with BM25 (bench/RESULTS.md,
    finding 25): activation must follow the hybrid ranking that search serves. Hand-made vectors
    over 24 passages, 12 questions, each with its own passage and one decoy (cosines and words by
    design, other passages orthogonal). `compare` fuses with the workspace's default settings
    (linear, lexical weight 0.2, BM25 / the query's best):
    - 6 "worded" questions share their words with their own passage only. Base cosines own 0.55,
      decoy 0.60: dense rank 2, hybrid 0.64 vs 0.48, rank 1. Adapted 0.60 / 0.55: rank 1 in both.
    - 6 "decoy" questions share their words with the decoy only. Base 0.90 / 0.30: rank 1 in both
      (hybrid 0.72 vs 0.44). Adapted 0.60 / 0.55: dense rank 1, hybrid 0.48 vs 0.64, rank 2.
    So dense MRR@10 goes 0.75 -> 1.0 (what decided before: activated) and hybrid 1.0 -> 0.75 (not)."""
    from archivist.finetune.retriever import Pair, better, compare

    words = ["amber", "basalt", "cobalt", "dolomite", "emerald", "feldspar", "garnet", "hematite", "ilmenite",
             "jasper", "kyanite", "lazurite"]
    corpus, pairs, base_q, adapted_q = [], [], {}, {}
    dim = 3 * len(words)
    for i, w in enumerate(words):
        worded = i < 6
        own, decoy = 100 + 2 * i, 101 + 2 * i
        query = f"{w} {w}stone"
        own_text = f"About {w} and {w}stone, passage {i}." if worded else f"Filler passage number {i}."
        decoy_text = f"Another filler passage, number {i}." if worded else f"About {w} and {w}stone, decoy {i}."
        corpus += [(own, 1 + i, 1, own_text, "", ""), (decoy, 1 + i, 1, decoy_text, "", "")]
        pairs.append(Pair(query, own_text, "", own, 1 + i, "sentence"))

        def q_vec(a: float, b: float, i=i) -> np.ndarray:
            v = np.zeros(dim, np.float32)
            v[3 * i], v[3 * i + 1], v[3 * i + 2] = a, b, np.sqrt(1 - a * a - b * b)
            return v
        base_q[query] = q_vec(0.55, 0.60) if worded else q_vec(0.90, 0.30)
        adapted_q[query] = q_vec(0.60, 0.55)
    passages = {}
    for k, (cid, *_rest) in enumerate(corpus):
        v = np.zeros(dim, np.float32)
        v[3 * (k // 2) + k % 2] = 1.0  # own passage on axis 3i, decoy on 3i + 1
        passages[corpus[k][3]] = v

    def encoder(queries: dict):
        return lambda texts: np.stack([queries[t] if t in queries else passages[t] for t in texts])

    ev = compare(encoder(base_q), encoder(adapted_q), pairs, corpus, ws)
    assert ev["questions"] == 12 and ev["corpus"] == 24 and ev["search"].startswith("hybrid: linear fusion")
    assert ev["dense"]["base"]["mrr@10"] == pytest.approx(0.75) and ev["dense"]["adapted"]["mrr@10"] == pytest.approx(1.0)
    assert ev["dense"]["difference"]["mrr@10"]["low"] > 0  # what decided before: it would have been activated
    assert ev["base"]["mrr@10"] == pytest.approx(1.0) and ev["adapted"]["mrr@10"] == pytest.approx(0.75)
    assert ev["difference"]["mrr@10"]["high"] < 0
    assert not better(ev)
    # the other way round, hybrid better and dense worse, it is activated
    assert better(compare(encoder(adapted_q), encoder(base_q), pairs, corpus, ws))


# -- re-embedding ----------------------------------------------------------------------------------

SLOW = """
import time

class Slow:  # the real embedder, slowed so the parent can kill the re-embed in the middle
    def __init__(self, e, pause=0.4): self.e, self.name, self.dim, self.pause = e, e.name, e.dim, pause
    def __getattr__(self, k): return getattr(self.e, k)
    def embed(self, texts, batch_size=32):
        time.sleep(self.pause)
        return self.e.embed(texts, batch_size=batch_size)
"""

CHILD = SLOW + """
import sys
from archivist.settings import Settings
from archivist.workspace import open_workspace
from archivist.models import load_embedder
from archivist.retrieval import reembed

import torch
torch.set_num_threads(1)  # as the test process (one_torch_thread): the same kernels, the same sums
reembed.STEP = 8  # as the test process: the same steps, hence the same batches
s = Settings.from_env(home=sys.argv[1])
with open_workspace(s) as ws:
    e = Slow(load_embedder(s.embedder, "cpu", "torch", str(s.cache)))
    reembed.reembed(ws, reembed.Target(e, "g-torch"), progress=False)
"""


@pytest.mark.slow
def test_a_reembed_killed_with_sigkill_then_resumed_equals_an_uninterrupted_one(stdlib_ws, settings, tmp_path,
                                                                                monkeypatch, one_torch_thread):
    from archivist.retrieval import reembed
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    monkeypatch.setattr(reembed, "STEP", 8)
    ws = stdlib_ws
    total = ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    assert total >= 24
    ws.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    twin = tmp_path / "twin"
    shutil.copytree(ws.home, twin)
    # uninterrupted, in the twin workspace
    with open_workspace(Settings.from_env(home=twin)) as other:
        reembed.reembed(other, reembed.Target(torch_embedder(settings), "g-torch"), progress=False)
    # killed with SIGKILL after some steps were committed, then resumed here
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(ws.home)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO / "tests")})
    staging = ws.home / "index" / "reembed.db"
    deadline = time.monotonic() + 300
    staged = 0
    while time.monotonic() < deadline and child.poll() is None:
        if staging.exists():
            with sqlite3.connect(staging, timeout=30) as db:
                try:
                    staged = db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
                except sqlite3.OperationalError:
                    staged = 0
            if staged >= 16:
                break
        time.sleep(0.05)
    assert child.poll() is None, "the re-embed finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert 16 <= staged < total
    assert not (ws.home / "index" / "embedder.json").exists()  # not switched: the old index still serves
    result = reembed.reembed(ws, reembed.Target(torch_embedder(settings), "g-torch"), progress=False)
    assert result.switched and result.embedded <= total - 16  # the killed run's steps were kept
    assert index_content(ws.home) == index_content(twin)
    assert not staging.exists()
    assert not (ws.home / "index" / f"c{ws.collection_id('default')}.faiss").exists()  # the old generation's file is gone


@pytest.mark.slow
def test_searches_during_a_reembed_use_the_old_index_until_the_switch(stdlib_ws, settings, embedder):
    from archivist.retrieval import reembed, vectors
    from archivist.retrieval.search import search

    ws = stdlib_ws
    query = "How do I find the n largest elements with a heap queue?"
    before = [(h.chunk_id, round(h.score, 6)) for h in search(ws, query, k=5, mode="dense")]
    assert before
    old_file = vectors._paths(ws, ws.collection_id("default"))[0]
    new = torch_embedder(settings)
    partial = reembed.reembed(ws, reembed.Target(new, "g-torch"), progress=False, stop_after=16)
    assert not partial.switched and reembed.staged_count(ws) >= 16
    during = [(h.chunk_id, round(h.score, 6)) for h in search(ws, query, k=5, mode="dense")]
    assert during == before and old_file.exists()
    # the stored vectors are still the old ones too (SQLite changes only at the switch)
    cid = before[0][0]
    old_vec = np.frombuffer(ws.db.execute("SELECT embedding FROM chunks WHERE id = ?", (cid,)).fetchone()[0], np.float32)
    assert np.allclose(old_vec @ embedder.embed([query])[0], before[0][1], atol=1e-4)
    reembed.reembed(ws, reembed.Target(new, "g-torch"), progress=False)
    assert vectors.generation(ws) == "g-torch" and not old_file.exists()
    after = search(ws, query, k=5, mode="dense", embedder=new)
    stored = np.frombuffer(ws.db.execute("SELECT embedding FROM chunks WHERE id = ?", (after[0].chunk_id,)).fetchone()[0], np.float32)
    assert after[0].score == pytest.approx(float(stored @ new.embed([query])[0]), abs=1e-5)
    now = np.frombuffer(ws.db.execute("SELECT embedding FROM chunks WHERE id = ?", (cid,)).fetchone()[0], np.float32)
    assert not np.array_equal(now, old_vec) and np.allclose(now, new.embed([embed_input_of(ws, cid)])[0], atol=1e-5)


JOB_CHILD = SLOW + """
import sys
import torch
import archivist.models as models
from archivist.finetune import embedders
from archivist.retrieval import reembed
from archivist.settings import Settings
from archivist.workspace import open_workspace

real = models.load_embedder
models.load_embedder = lambda *a, **k: Slow(real(*a, **k), pause=1.5)
torch.set_num_threads(1)
reembed.STEP = 8
with open_workspace(Settings.from_env(home=sys.argv[1])) as ws:
    embedders.activate(ws, "copy", None, progress=False)
"""


@pytest.mark.slow
def test_a_reembed_is_a_job_and_a_killed_one_is_resumed_from_the_jobs_table(tmp_path, docs, monkeypatch, one_torch_thread):
    """`archivist jobs` shows the re-embed with its progress; killed with SIGKILL it is found
    interrupted, and `archivist jobs resume ID` (`resume_reembed`) finishes the switch from the
    steps the killed run committed."""
    from sentence_transformers import SentenceTransformer

    from archivist import jobs
    from archivist.catalog import resolve_embedder
    from archivist.finetune import embedders
    from archivist.ingest.pipeline import ingest_paths
    from archivist.retrieval import reembed, vectors
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    monkeypatch.setenv("ARCHIVIST_EMBED_BACKEND", "torch")  # no ONNX export of the saved copy in a test
    monkeypatch.setattr(reembed, "STEP", 8)
    settings = Settings.from_env(home=tmp_path / "jobs-ws")
    with open_workspace(settings) as ws:
        ingest_paths(ws, docs[:5], collection="default", progress=False)
        total = ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        assert total >= 24
        model = SentenceTransformer(resolve_embedder(settings.embedder), device="cpu")
        generation = embedders.save(ws, "copy", model, {"kind": "retriever", "base": settings.embedder,
                                                        "collections": ["default"]}).name
        ws.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    child = subprocess.Popen([sys.executable, "-c", JOB_CHILD, str(settings.home)], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO / "tests")})
    deadline, done = time.monotonic() + 300, 0
    while time.monotonic() < deadline and child.poll() is None and done < 16:
        with sqlite3.connect(settings.home / "archivist.db", timeout=30) as db:
            row = db.execute("SELECT done FROM jobs WHERE kind = 'reembed'").fetchone()
        done = row[0] if row else 0
        time.sleep(0.05)
    assert child.poll() is None, f"the re-embed finished before it could be killed ({done} of {total} seen)"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert 16 <= done < total
    with open_workspace(settings) as ws:
        [job] = jobs.list_jobs(ws, None, kinds=("reembed",))
        assert job.state == "interrupted" and job.spec == {"embedder": "copy"} and job.total == total
        assert "archivist jobs resume" in job.error
        result = embedders.resume_reembed(ws, job.id, None, progress=False)
        assert result.switched and result.embedded <= total - done  # the killed run's steps were kept
        job = jobs.get(ws, job.id)
        assert job.state == "done" and job.done == total and job.resumed == 1 and job.result["embedder"] == "copy"
        assert vectors.generation(ws) == embedders.load_manifest(ws, generation)["generation"]
        with pytest.raises(jobs.JobError):  # done: nothing left to resume
            embedders.resume_reembed(ws, job.id, None, progress=False)
        # activating again makes a new job rather than reusing the finished one
        embedders.activate(ws, "base", None, progress=False)
        assert [j.state for j in jobs.list_jobs(ws, None, kinds=("reembed",))] == ["done", "done"]


def embed_input_of(ws, chunk_id: int) -> str:
    from archivist.retrieval.reembed import embed_input

    r = ws.db.execute("SELECT text, heading FROM chunks WHERE id = ?", (chunk_id,)).fetchone()
    return embed_input(r["text"], r["heading"])


# -- access ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_embedder_trained_on_a_secret_collection(tmp_path, docs, monkeypatch):
    """Its lineage hides it from users who may not read what it learned from; only an admin may
    switch to it; after the switch a member's searches still return only chunks they may read
    (why using it for their queries is safe: finetune/retriever.py's module doc)."""
    from sentence_transformers import SentenceTransformer

    from archivist import access
    from archivist.catalog import resolve_embedder
    from archivist.finetune import embedders, retriever
    from archivist.ingest.pipeline import ingest_paths
    from archivist.models import embedder_for
    from archivist.retrieval.search import search
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    monkeypatch.setenv("ARCHIVIST_EMBED_BACKEND", "torch")  # no ONNX export of the saved copy in a test
    settings = Settings.from_env(home=tmp_path / "secret-ws")
    with open_workspace(settings) as ws:
        access.add_user(ws, "bob")
        ingest_paths(ws, docs[:3], collection="public", progress=False)
        ingest_paths(ws, docs[3:6], collection="secret", progress=False)
        access.grant(ws, "bob", "public", "read")
        with pytest.raises(access.AccessDenied):
            retriever.finetune_retriever(ws, retriever.RetrieverConfig(collections=["secret"]), user="bob", progress=False)
        # an embedder whose lineage holds the secret collection (the base weights, saved as a fine-tune saves)
        model = SentenceTransformer(resolve_embedder(settings.embedder), device="cpu")
        embedders.save(ws, "learned-secret", model, {"kind": "retriever", "base": settings.embedder,
                                                     "collections": ["public", "secret"]})
        assert [m["name"] for m in embedders.list_embedders(ws, None)] == ["learned-secret"]
        assert embedders.list_embedders(ws, "bob") == []
        with pytest.raises(access.AccessDenied):
            embedders.activate(ws, "learned-secret", "bob", progress=False)
        embedders.activate(ws, "learned-secret", None, progress=False)
        from archivist import audit

        [rec] = audit.read(ws, by="admin", action="embedder.activated")  # the switch is in the audit log
        assert rec["target"] == "learned-secret" and rec["detail"]["chunks"] > 0
        active = embedder_for(ws.settings)
        assert Path(active.name).name == "learned-secret"
        secret_docs = {p.name for p in docs[3:6]}
        for q in [f"What does the {p.stem} module do?" for p in docs[:6]]:
            hits = search(ws, q, k=10, user="bob")
            assert hits and all(h.document not in secret_docs for h in hits), q
        # an admin's search does reach the secret collection through the same embedder
        assert any(h.document in secret_docs for h in search(ws, f"What does the {docs[4].stem} module do?", k=5))
