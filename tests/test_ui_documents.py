"""Upload, background ingestion and the documents table (AppTest), and the library helpers behind them."""

from __future__ import annotations

import os

from pathlib import Path

from archivist.ingest import pipeline

import pytest

from archivist import access, auth
from archivist.ingest.pipeline import ingest_paths, list_documents
from archivist.ui import library

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")
NOTES = b"# Parking\n\nVisitors park in lot C behind the warehouse. The gate code is 4417.\n"


def app(token: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["_token"] = token
    at.run()
    return at.switch_page("views/documents.py").run()


def test_upload_ingests_in_background_with_status_per_file(ws, embedder):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    at = app(auth.create_session(ws, "alice"))
    assert not at.exception
    uploader = at.file_uploader[0]
    assert uploader.accept_multiple_files and "up to 200 MB each" in uploader.label
    uploader.set_value([("../notes.md", NOTES, "text/markdown"), ("broken.pdf", b"%PDF-1.7\n%\xe2\xe3 truncated", "application/pdf"),
                        ("empty.txt", b"", "text/plain")])
    at.run()
    ingest = at.button(key="ingest")
    assert ingest.label == "Ingest 3 files"
    ingest.click().run()
    assert not at.exception and not at.error
    jobs = library.jobs_for(ws, "alice")
    assert len(jobs) == 1 and jobs[0].collection == "default"
    jobs[0] = library.wait(jobs[0], timeout=60)
    assert [(f.name, f.status) for f in jobs[0].files] == [("notes.md", "added"), ("broken.pdf", "failed"),
                                                           ("empty.txt", "failed")]
    assert jobs[0].files[1].reason and "empty" in jobs[0].files[2].reason  # refused at upload, with the reason
    saved = sorted(p.name for p in (ws.home / "uploads").rglob("*") if p.is_file())  # uploads/<hash>/<name> (ingest/uploads.py)
    assert saved == ["broken.pdf", "notes.md"]  # cleaned names: no "../"
    at.run()
    assert not at.exception
    frames = [d.value for d in at.dataframe]
    job_table = at.table[0].value
    assert list(job_table["status"]) == ["added", "failed", "failed"] and job_table["reason"].iloc[1] == jobs[0].files[1].reason
    assert [p.value for p in at.get("progress")] == [100]
    docs = next(f for f in frames if "chunks" in f.columns and "collection" in f.columns)
    assert list(docs["name"]) == ["notes.md"] and list(docs["type"]) == ["markdown"] and docs["chunks"][0] >= 1
    at.text_input(key="doc-search").set_value("nothing-like-this").run()
    assert any("0 of 1 documents" in c.value for c in at.caption)
    at.button(key=f"dismiss-{jobs[0].id}").click().run()
    assert library.jobs_for(ws, "alice") == []


def test_member_sees_only_readable_documents_and_cannot_upload(ws, embedder, tmp_path):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    (tmp_path / "open.md").write_bytes(NOTES)
    (tmp_path / "secret.md").write_text("# Salaries\n\nThe CEO earns a secret amount of money every year.\n")
    ingest_paths(ws, [tmp_path / "open.md"], collection="public", user="alice", embedder=embedder, progress=False)
    ingest_paths(ws, [tmp_path / "secret.md"], collection="board", user="alice", embedder=embedder, progress=False)
    access.grant(ws, "bob", "public", "read", by="alice")
    at = app(auth.create_session(ws, "bob"))
    assert not at.exception
    assert len(at.file_uploader) == 0 and any("no collection lets you add" in i.value for i in at.info)
    docs = next(d.value for d in at.dataframe if "collection" in d.value.columns)
    assert list(docs["name"]) == ["open.md"] and list(docs["collection"]) == ["public"]
    with pytest.raises(access.AccessDenied):
        library.save_uploads(ws, "bob", "public", [("x.md", b"x")])
    assert not any(p.is_file() for p in (ws.home / "uploads").rglob("*"))


def test_reingest_replaces_chunks_and_document_chunks_respect_access(ws, embedder):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    saved, refused = library.save_uploads(ws, "alice", "hr", [("policy.md", NOTES)])
    assert refused == []
    job = library.wait(library.start_ingest(ws.settings, "alice", "hr", [p for p, _ in saved], [n for _, n in saved]))
    assert [f.status for f in job.files] == ["added"]
    doc = list_documents(ws, "alice")[0]
    _, chunks = pipeline.document_chunks(ws, doc["id"], "alice")
    assert "gate code is 4417" in chunks[0]["text"]
    with pytest.raises(LookupError):
        pipeline.document_chunks(ws, doc["id"], "bob")  # bob may not read hr
    (jobs,) = library.reingest(ws.settings, ws, "alice", [doc["id"]])
    jobs = library.wait(jobs)
    assert [f.status for f in jobs.files] == ["updated"]  # read again although the file did not change
    after = list_documents(ws, "alice")[0]
    assert after["id"] == doc["id"] and after["status"] == "ready"
    assert after["updated_at"] > doc["updated_at"]
    Path(saved[0][0]).unlink()
    with pytest.raises(FileNotFoundError, match="upload it again"):
        library.reingest(ws.settings, ws, "alice", [doc["id"]])
