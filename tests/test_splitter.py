"""A stored upload that could not be read is removed whichever way its job ran: the API's thread, the
app's thread, or a resumed job (a restart's `resume_interrupted`, `archivist jobs resume`). A file
ingested from outside the workspace's uploads/ is the user's own and is never touched."""

from __future__ import annotations

from pathlib import Path

from archivist import jobs
from archivist.ingest.pipeline import create_job, resume_interrupted, resume_job
from archivist.ingest.uploads import save_upload

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
BROKEN_PDF = b"%PDF-1.7\n" + b"\x00 not a PDF body " * 64


def _cut_short(ws, files) -> str:
    """An ingest job of `files` as the API's upload with wait=true records it (`ingest_paths` with
    `names`: kind "ingest"), cut short by a kill before it ended."""
    job = create_job(ws, "ingest", "admin", "default", files)
    jobs.start(ws, job.id)
    jobs.end(ws, job.id, "interrupted", error="killed")
    return job.id


def test_a_resumed_ingest_job_removes_the_upload_it_could_not_read(ws, embedder, tmp_path):
    """Before: only the API's thread removed an unreadable upload (after `ingest_paths` returned), and
    `_ingest` only for jobs of kind "upload"; the API's wait=true upload runs as an "ingest" job, so
    when a kill or restart cut it short and `archivist serve` resumed it, the refused file stayed under
    uploads/ for good. Now the pipeline removes it whatever the job's kind."""
    good, good_name = save_upload(ws, "runbook.md", (SAMPLES / "oncall-runbook.md").read_bytes())
    bad, bad_name = save_upload(ws, "broken.pdf", BROKEN_PDF)
    own = tmp_path / "mine" / "own-broken.pdf"  # the user's own file, ingested from a folder: never removed
    own.parent.mkdir()
    own.write_bytes(BROKEN_PDF)
    job_id = _cut_short(ws, [(good, good_name), (bad, bad_name), (own, "own-broken.pdf")])

    [(job, results)] = resume_interrupted(ws, embedder=embedder)

    assert job.id == job_id
    assert {r.name: r.status for r in results} == {"runbook.md": "added", "broken.pdf": "failed", "own-broken.pdf": "failed"}
    assert jobs.get(ws, job_id).state == "done"
    assert good.exists() and not bad.exists() and not bad.parent.exists()
    assert own.exists()


def test_jobs_resume_removes_the_upload_it_could_not_read_but_keeps_one_a_document_came_from(ws, embedder):
    """`archivist jobs resume ID` (`resume_job`) of such a job: the unreadable upload goes; an upload
    a stored document was read from stays even when reading it again fails (`remove_unused_upload`)."""
    kept, kept_name = save_upload(ws, "runbook.md", (SAMPLES / "oncall-runbook.md").read_bytes())
    bad, bad_name = save_upload(ws, "broken.pdf", BROKEN_PDF)
    first = _cut_short(ws, [(kept, kept_name)])
    assert [r.status for r in resume_job(ws, first, "admin", embedder=embedder)] == ["added"]
    kept.write_bytes(BROKEN_PDF)  # the document's file now fails to read: the document keeps it
    job_id = _cut_short(ws, [(bad, bad_name), (kept, kept_name)])

    results = resume_job(ws, job_id, "admin", embedder=embedder)

    assert {r.name: r.status for r in results} == {"broken.pdf": "failed", "runbook.md": "failed"}
    assert not bad.exists() and kept.exists()
