"""Large ingestions, second round: `GET /v1/ingest_jobs` parsed every upload's whole spec and result to
list a page, the Documents page showed the files a running or cut-short ingestion of over 2,000
files had ingested as still waiting, and the Admin page's "Erase a deleted account" box did not say
which deleted accounts there are (archivist/job_files.py, api/jobs.py, archivist/user_erase.py)."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import httpx
import pytest

from archivist import access, auth, job_files, jobs, user_erase
from archivist.ingest.folders import MAX_FILES_LISTED, FileResult, job_summary
from archivist.ingest.pipeline import create_job

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")
BIG = MAX_FILES_LISTED + 1000  # past MAX_FILES_LISTED results a job lists its failed files only


def _upload(ws, n_files: int, tag: str) -> jobs.Job:
    """A finished upload job of `n_files` files, every one listed with its result (as `job_summary` writes
    a job of up to MAX_FILES_LISTED), the first failed."""
    files = [(f"/srv/uploads/{tag}/{i:05}-a-long-report-name.md", f"{tag}/{i:05}-a-long-report-name.md") for i in range(n_files)]
    job = create_job(ws, "upload", None, "default", files)
    jobs.start(ws, job.id)
    results = [FileResult(name=n, status="failed" if i == 0 else "added", chunks=3, seconds=0.25, document_id=i or None,
                          reason=f"{n}: not a PDF (/srv/uploads/{n})" if i == 0 else None) for i, (_, n) in enumerate(files)]
    jobs.end(ws, job.id, "done", result=job_summary(results), message=f"{n_files} files", done=n_files)
    return jobs.get(ws, job.id)


def test_the_upload_list_reads_names_and_first_results_without_whole_file_lists(ws):
    """Before: the page parsed each upload's spec and per-file results whole (2,000 dicts a job): 8 MB
    traced for this page; now their names and first result come from SQL (1.4 MB), and the page is the same."""
    from conftest import members_with_keys

    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread

    made = [_upload(ws, MAX_FILES_LISTED, f"batch{k}") for k in range(5)] + [_upload(ws, 1, "single")]
    keys = members_with_keys(ws, {})
    server = serve_in_thread(create_app(ws.settings))
    try:
        def get(path):
            return httpx.get(server.url + path, headers={"Authorization": f"Bearer {keys['admin']}"}, timeout=120)

        assert get("/v1/ingest_jobs?limit=6").status_code == 200  # the server warmed up
        tracemalloc.start()
        page = get("/v1/ingest_jobs?limit=6")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert page.status_code == 200, page.text
        listed = page.json()["data"]
        assert [j["id"] for j in listed] == [j.id for j in reversed(made)]
        for row in listed:  # the same shape and values as one job read whole
            assert row == get(f"/v1/ingest_jobs/{row['id']}").json()
        single, batch = listed[0], listed[1]
        assert (single["name"], single["status"], single["document_id"], single["chunks"]) == \
            ("single/00000-a-long-report-name.md", "failed", None, 3)
        assert single["reason"] == "single/00000-a-long-report-name.md: not a PDF (<server path>)"
        assert batch["name"] == ", ".join(f"batch4/{i:05}-a-long-report-name.md" for i in range(MAX_FILES_LISTED))
        assert batch["status"] == "done" and batch["collection"] == "default"
        assert peak < 4_000_000, peak  # before: 8.0 MB (the names sent are 0.4 MB)
        assert get("/v1/ingest_jobs?limit=2&after=nope").json()["error"]["code"] == "invalid_cursor"
    finally:
        server.stop()


def _cut_short(ws, state: str, reached: int, failed=(7, 2100)) -> jobs.Job:
    """An ingest job of BIG files that reached `reached` of them (the ones in `failed` failed, the others
    added) and then ended as `state`, its result written as the pipeline writes it (`_ingest`): `running`
    is its last progress report, `cancelled` adds the files not reached as cancelled."""
    files = [(f"/srv/share/r{i:05}.md", f"r{i:05}.md") for i in range(BIG)]
    job = create_job(ws, "ingest", None, "default", files)
    jobs.start(ws, job.id)
    results = [FileResult(name=n, status="failed" if i in failed else "added", chunks=2,
                          reason=f"{n}: unreadable" if i in failed else None) for i, (_, n) in enumerate(files[:reached])]
    if state == "running":
        jobs.progress(ws, job.id, reached, BIG, f"{reached} of {BIG} files", result=job_summary(results))
    else:
        if state == "cancelled":
            results += [FileResult(n, "cancelled", reason="cancelled before it was ingested") for _, n in files[reached:]]
        jobs.end(ws, job.id, state, error=None if state == "cancelled" else "interrupted (Ctrl-C)",
                 result=job_summary(results), done=reached)
    return jobs.get(ws, job.id)


@pytest.mark.parametrize("state", ["running", "interrupted", "cancelled"])
def test_a_large_ingestion_cut_short_shows_its_ingested_files_as_done(ws, state):
    """Before: of 2,500 files reached, the 2,498 added ones (only the failed are listed past 2,000) were
    "waiting" while it ran or once it was interrupted, and "cancelled" with the job once it was cancelled."""
    from archivist.ui import library

    job = _cut_short(ws, state, 2500)
    rest = "cancelled" if state == "cancelled" else "waiting"  # not reached: an interrupted job resumes them
    opened = library.job(ws, None, job.id)  # the Documents page's table of the job, opened
    shown = [f.status for f in opened.files]
    assert shown[:7] + shown[8:2100] + shown[2101:2500] == ["done"] * 2498
    assert shown[7] == shown[2100] == "failed" and opened.files[2100].reason == "r02100.md: unreadable"
    assert shown[2500:] == [rest] * (BIG - 2500)
    assert opened.counts == {"added": 2498, "failed": 2, rest: BIG - 2500}
    assert opened.done == (BIG if state == "cancelled" else 2500)
    assert [f["status"] for f in job_files.statuses(jobs.get(ws, job.id))] == shown  # /v1/jobs/{id}/files too


def test_the_admin_page_offers_the_deleted_accounts_to_erase(ws):
    """Before: the box had a text field only, so an admin had to know the name `users delete` left
    (bob#deleted-12) from the command line or the log. Now the accounts left to erase are offered."""
    from streamlit.testing.v1 import AppTest

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    for name in ("bob", "mara", "quiet"):
        auth.create_user(ws, name, f"{name}-pass-12", by="alice")
    create_job(ws, "ingest", "bob", "default", [("/srv/b.md", "b.md")])  # bob owned a job
    auth.sign_in(ws, "mara", "mara-pass-12")  # mara is in the log only
    for name in ("bob", "mara", "quiet"):  # quiet left nothing to erase
        access.delete_user(ws, name, by="alice")
    bob, mara = (access.former_owner(n, ws.db.execute("SELECT id FROM audit WHERE action = 'user.delete' AND target = ?",
                                                      (n,)).fetchone()[0]) for n in ("bob", "mara"))
    assert user_erase.deleted_accounts(ws, by="alice") == [bob, mara]
    auth.create_user(ws, "eve", "eve-pass-123", by="alice")
    with pytest.raises(access.AccessDenied):
        user_erase.deleted_accounts(ws, by="eve")

    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, "alice")
    at.run()
    at = at.switch_page("views/admin.py").run()
    assert at.selectbox(key="erase-deleted-pick").options == [bob, mara]
    at.selectbox(key="erase-deleted-pick").select(bob).run()
    at.button(key="erase-deleted").click().run()
    at.button(key="erase-deleted-yes").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [tuple(r) for r in ws.db.execute("SELECT target, user FROM audit WHERE action = 'user.erased'")] == [(bob, "alice")]
    assert ws.db.execute("SELECT owner FROM jobs").fetchone()[0] == user_erase.ERASED
    assert at.selectbox(key="erase-deleted-pick").options == [mara]
