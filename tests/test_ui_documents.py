"""Upload, background ingestion and the documents table (AppTest), and the library helpers behind them."""

from __future__ import annotations

import os

from pathlib import Path

from archivist.ingest import pipeline

import pytest

from archivist import access, auth
from archivist.ingest.pipeline import ingest_paths, list_documents
from archivist.ui import library
from archivist.ui.core import md_escape

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
    assert saved == ["notes.md"]  # cleaned names: no "../"; the unreadable broken.pdf is not kept (pipeline.run_job)
    at.run()
    assert not at.exception
    frames = [d.value for d in at.dataframe]
    job_table = next(f for f in frames if "reason" in f.columns)
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


def _select(at, names: list[str]):
    """Tick the documents table's rows of `names` (AppTest writes the selection state as a click would)."""
    table = next(d for d in at.dataframe if d.key and d.key.startswith("doc-table"))
    rows = [list(table.value["name"]).index(n) for n in names]
    at.session_state[table.key] = {"selection": {"rows": rows, "columns": []}}
    return at.run()


def test_selection_never_moves_to_another_document_and_delete_names_what_it_deletes(ws, embedder, tmp_path):
    from conftest import ingest_texts

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    ingest_texts(ws, embedder, tmp_path, {"default": {"keep.md": "# Keep\n\nThe archive room is on floor 3.\n",
                                                      "core copy.html": "<h1>Copy</h1><p>The copier is in room 12.</p>",
                                                      "core.html": "<h1>Core</h1><p>The server room is locked.</p>"}}, "alice")
    at = app(auth.create_session(ws, "alice"))
    names = list(next(d for d in at.dataframe if d.key and d.key.startswith("doc-table")).value["name"])
    assert sorted(names) == ["core copy.html", "core.html", "keep.md"]
    _select(at, ["keep.md"])
    assert [m.value for m in at.markdown if m.value.startswith("####")] == ["#### keep\\.md"]
    # (a) a filter that hides the selected document: nothing is selected, nothing else opens, no crash
    at.text_input(key="doc-search").set_value("html").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [m for m in at.markdown if m.value.startswith("####")] and "delete" not in [b.key for b in at.button]
    # (b) delete one of two filtered rows: the confirmation names it, and afterwards nothing is selected
    at.text_input(key="doc-search").set_value("core").run()
    _select(at, ["core copy.html"])
    at.button(key="delete").click().run()
    assert [w.value for w in at.warning] == ["Delete 1 document from search, chat and fine-tuning data: "
                                             "core copy\\.html (default)? This cannot be undone."]
    at.button(key="delete-yes").click().run()
    assert not at.exception, [e.value for e in at.exception]  # was: IndexError in documents.py
    assert sorted(d["name"] for d in list_documents(ws, "alice")) == ["core.html", "keep.md"]
    assert not [m for m in at.markdown if m.value.startswith("####")] and "delete" not in [b.key for b in at.button]


def _markdown_shown(at) -> list[str]:
    """The texts on the page that Streamlit renders as Markdown (st.table renders its cells so too)."""
    texts = [e.value for kind in ("markdown", "caption", "error", "warning", "info", "success", "toast") for e in at.get(kind)]
    texts += [b.label for b in at.button] + [e.label for e in at.expander]
    texts += [str(cell) for t in at.table for cell in t.value.reset_index().to_numpy().ravel()]
    return texts


def test_file_names_with_markdown_are_shown_as_plain_text(ws, embedder):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    at = app(auth.create_session(ws, "alice"))
    at.file_uploader[0].set_value([("[evil](javascript:alert(1)) **name**.md", NOTES, "text/markdown")])
    at.run()
    at.button(key="ingest").click().run()
    (job,) = library.jobs_for(ws, "alice")
    job = library.wait(job, timeout=60)
    (stored,) = [f.name for f in job.files]
    assert stored.startswith("[evil](javascript") and job.files[0].status == "added"
    at.run()
    assert not [t for t in _markdown_shown(at) if "[evil]" in t]  # was: a link in the job table (st.table)
    jobs_shown = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert list(jobs_shown["file"]) == [stored]  # plain text, exactly as stored
    table = next(d for d in at.dataframe if d.key and d.key.startswith("doc-table"))
    at.session_state[table.key] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    at.button(key="delete").click().run()
    texts = _markdown_shown(at)
    assert any(md_escape(stored) in t for t in texts)  # the chunk view's title and the delete confirmation
    assert not [t for t in texts if "[evil]" in t or "**name**" in t or "__name__" in t]  # never as live Markdown
