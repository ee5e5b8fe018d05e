"""Chunks never longer than the embedder reads: ARCHIVIST_CHUNK_TOKENS past the active embedder's
max_seq_length is refused (at ingest, for a queued job, and when a re-embed would switch to an embedder
that reads less), naming the setting, the embedder and its limit; nothing stored is touched.

Before: 512 with all-MiniLM-L6-v2 (256 tokens) was accepted, and every chunk's second half was
stored but never embedded (its vector equal to that of its first half)."""

from __future__ import annotations

import json

import pytest

from archivist.ingest.pipeline import create_job, ingest_paths, run_job
from archivist.settings import Settings
from archivist.workspace import WorkspaceError, open_workspace

# ~1,200 tokens in sentences of ~12: a 512-token setting would cut chunks of ~500 tokens.
TEXT = " ".join(f"Section {i} of the maintenance plan names valve {i} and its inspection interval."
                for i in range(100))


def _doc(tmp_path, name="plan.txt", text=TEXT):
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def _chunk_count(ws) -> int:
    return ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]


def test_chunks_longer_than_the_embedder_reads_are_refused_at_ingest(tmp_path, embedder):
    home = tmp_path / "ws"
    first = _doc(tmp_path, "first.txt")
    ws = open_workspace(Settings.from_env(home=home))
    [ok] = ingest_paths(ws, [first], embedder=embedder, progress=False)
    assert ok.status == "added" and embedder.max_tokens == 256  # the default (256) is what MiniLM reads
    assert max(r[0] for r in ws.db.execute("SELECT n_tokens FROM chunks")) <= 256
    stored = _chunk_count(ws)
    ws.close()

    second = _doc(tmp_path, "second.txt", TEXT.replace("valve", "pump"))
    ws = open_workspace(Settings.from_env(home=home, chunk_tokens=512))
    with pytest.raises(WorkspaceError) as refused:
        ingest_paths(ws, [second], embedder=embedder, progress=False)
    message = str(refused.value)
    assert "ARCHIVIST_CHUNK_TOKENS=512" in message and embedder.name in message and "256 tokens" in message
    # nothing read, nothing lost: the first document alone, as it was
    assert _chunk_count(ws) == stored
    assert [r[0] for r in ws.db.execute("SELECT path FROM documents")] == ["first.txt"]
    ws.close()


def test_a_queued_job_with_too_long_chunks_fails_with_the_reason(tmp_path, embedder):
    """The API's and the UI's uploads run as jobs (`run_job`): the job fails naming the setting,
    each file says why it was not ingested, and no job is left running."""
    ws = open_workspace(Settings.from_env(home=tmp_path / "ws", chunk_tokens=300, chunk_overlap=32))
    path = _doc(tmp_path)
    job = create_job(ws, "ingest", None, "default", [(path, "plan.txt")])
    [res] = run_job(ws, job.id, embedder=embedder)
    assert res.status == "failed" and "ARCHIVIST_CHUNK_TOKENS=300" in res.reason and "256 tokens" in res.reason
    state, error = ws.db.execute("SELECT state, error FROM jobs WHERE id = ?", (job.id,)).fetchone()
    assert state == "failed" and "ARCHIVIST_CHUNK_TOKENS=300" in error
    assert _chunk_count(ws) == 0
    ws.close()


def test_the_cli_refuses_with_a_clear_error(tmp_path, cli):
    path = _doc(tmp_path)
    done = cli("ingest", path, env={"ARCHIVIST_HOME": str(tmp_path / "ws"), "ARCHIVIST_CHUNK_TOKENS": "512"})
    assert done.returncode != 0
    assert "ARCHIVIST_CHUNK_TOKENS=512" in done.stderr and "all-minilm-l6-v2" in done.stderr and "(256 tokens)" in done.stderr
    assert "Traceback" not in done.stderr


def test_switching_to_an_embedder_that_reads_less_is_refused(tmp_path, embedder):
    """An adapted embedder saved with a shorter max_seq_length (128) would embed only the first half
    of every stored 256-token chunk: the re-embed refuses before staging anything, and the
    workspace keeps its embedder and its search."""
    from make_tiny_models import tiny_embedder

    from archivist.models import load_embedder
    from archivist.retrieval import reembed
    from archivist.retrieval.search import search

    short = tmp_path / "short"
    tiny_embedder(short)
    config = short / "sentence_bert_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "max_seq_length": 128}))
    adapted = load_embedder(str(short), "cpu", "torch")
    assert adapted.max_tokens == 128

    ws = open_workspace(Settings.from_env(home=tmp_path / "ws"))
    ingest_paths(ws, [_doc(tmp_path)], embedder=embedder, progress=False)
    identity = ws.meta("embedder_identity")
    with pytest.raises(WorkspaceError, match=r"ARCHIVIST_CHUNK_TOKENS=256 .*\(128 tokens\)"):
        reembed.reembed(ws, reembed.Target(adapted, "short-1", path="embedders/short", base=ws.settings.embedder),
                        progress=False)
    assert ws.meta("embedder_identity") == identity and reembed.staged_count(ws) == 0
    assert not (ws.home / "index" / "embedder.json").exists()
    hits = search(ws, "inspection interval of valve 42", k=1, embedder=embedder)
    assert "valve 42 " in hits[0].text
    ws.close()
