"""Job lists that leave ingestions' file lists out, and one job's files on demand: `GET /v1/jobs` and
the Documents page read every job's whole list (3,000 names and results a job), `archivist jobs ID`
was documented and did not exist, and an erase parsed each job listing its document to find the
paths stored under the name (archivist/job_files.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from archivist import access, auth, jobs
from archivist.ingest.folders import MAX_FILES_LISTED, FileResult, job_summary
from archivist.ingest.pipeline import INGEST_KINDS, create_job

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")
BIG = MAX_FILES_LISTED + 500  # a job's result then lists its failed files only


def _finished(ws, owner: str | None, n_files: int, failed=(), refused=(), collection: str = "default",
              prefix: str = "reports/r") -> jobs.Job:
    """A finished ingest job of `n_files` files as an ingest writes it: the files in `failed` (their
    numbers) failed, the others unchanged; `refused` (name, reason) refused before it started."""
    files = [(f"/srv/share/{prefix}{i:05}.md", f"{prefix}{i:05}.md") for i in range(n_files)]
    job = create_job(ws, "ingest", owner, collection, files, refused)
    jobs.start(ws, job.id)
    results = [FileResult(name=n, status="failed", reason=f"{n}: not a PDF (/srv/share/{n})") if i in failed
               else FileResult(name=n, status="unchanged") for i, (_, n) in enumerate(files)]
    jobs.end(ws, job.id, "done", result=job_summary(results), message=f"{n_files} files", done=n_files)
    return jobs.get(ws, job.id)


def test_the_job_list_leaves_file_lists_out_and_one_jobs_files_come_a_page_at_a_time(ws, tmp_path):
    """Before: each ingestion in `GET /v1/jobs` carried its result's per-file list (2,000 entries),
    and no route gave one job's files (`/v1/jobs/{id}/files` was a 404)."""
    from conftest import members_with_keys

    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread

    big = _finished(ws, None, BIG, failed={3, 2400}, refused=[("secret.exe", "secret.exe: not a document type")])
    small = _finished(ws, None, 40, prefix="notes/n")
    keys = members_with_keys(ws, {"alice": ("default", "read")})
    run = jobs.create(ws, "train", None, spec={"dataset": "d"})
    server = serve_in_thread(create_app(ws.settings))
    try:
        def get(path, who="admin"):
            return httpx.get(server.url + path, headers={"Authorization": f"Bearer {keys[who]}"}, timeout=60)

        listed = get("/v1/jobs?limit=10")
        assert listed.status_code == 200, listed.text
        assert [j["id"] for j in listed.json()["data"]] == [run.id, small.id, big.id]
        assert "reports/r00007.md" not in listed.text and "notes/n00001" not in listed.text and len(listed.text) < 5_000
        row = {j["id"]: j for j in listed.json()["data"]}[big.id]
        assert row["result"]["counts"] == {"failed": 2, "unchanged": BIG - 2} and "files" not in row["result"]
        assert (row["total"], row["done"], row["state"]) == (BIG, BIG, "done")

        seen, after = [], 0
        while True:
            page = get(f"/v1/jobs/{big.id}/files?limit=1000&after={after}")
            assert page.status_code == 200, page.text
            seen += page.json()["data"]
            if not page.json()["has_more"]:
                break
            after = page.json()["last_id"]
        assert [f["id"] for f in seen] == list(range(1, BIG + 2))
        assert [f["name"] for f in seen] == [f"reports/r{i:05}.md" for i in range(BIG)] + ["secret.exe"]
        statuses = [f["status"] for f in seen]
        assert statuses[3] == statuses[2400] == statuses[-1] == "failed"
        assert statuses.count("done") == BIG - 2  # finished, not "waiting": the job kept only its failed results
        assert seen[3]["reason"] == "reports/r00003.md: not a PDF (<server path>)"  # no server path sent
        small_files = get(f"/v1/jobs/{small.id}/files?limit=20").json()
        assert [f["status"] for f in small_files["data"]] == ["unchanged"] * 20 and small_files["has_more"]
        assert small_files["data"][0] == {"object": "job_file", "id": 1, "name": "notes/n00000.md", "status": "unchanged",
                                          "chunks": 0, "seconds": 0.0, "reason": None, "reread": None}
        one = get(f"/v1/jobs/{small.id}").json()  # one job: its per-file results, as before
        assert len(one["result"]["files"]) == 40
        assert get(f"/v1/jobs/{big.id}/files", who="alice").status_code == 404  # another user's: as if none
        assert get("/v1/jobs/ingest-nope/files").json()["error"]["code"] == "job_not_found"
        bad = get(f"/v1/jobs/{run.id}/files")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "no_files"
    finally:
        server.stop()


def test_the_documents_page_lists_a_large_ingestion_by_its_counts_and_opens_it(ws):
    """Before: the page built every file of each of its 20 jobs every second while one ran, and a finished
    job of over 2,000 files showed the files it kept no result for as still "waiting"."""
    from streamlit.testing.v1 import AppTest

    from archivist.ui import library

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    access.current_user(ws, "alice")
    big = _finished(ws, "alice", BIG, failed={7}, refused=[("x.exe", "x.exe: not a document type")])
    small = _finished(ws, "alice", 3, prefix="notes/n")
    newest, oldest = library.jobs_for(ws, "alice")
    assert (newest.id, oldest.id) == (small.id, big.id)
    assert newest.listed and [f.status for f in newest.files] == ["unchanged"] * 3
    assert not oldest.listed and oldest.files == []
    assert (oldest.total, oldest.done, oldest.failed) == (BIG + 1, BIG + 1, 2)
    assert oldest.counts == {"unchanged": BIG - 1, "failed": 2}
    opened = library.job(ws, "alice", big.id)
    assert len(opened.files) == BIG + 1 and [f.name for f in opened.files if f.status == "failed"] == ["reports/r00007.md", "x.exe"]
    assert not [f for f in opened.files if f.status == "waiting"]  # was: 499 files "waiting" in a finished job
    assert opened.counts == oldest.counts

    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, "alice")
    at.run()
    at = at.switch_page("views/documents.py").run()
    assert not at.exception, [e.value for e in at.exception]
    tables = [d.value for d in at.dataframe if "reason" in d.value.columns]
    assert [len(t) for t in tables] == [3]  # the small job's files; the large one's wait to be opened
    assert any(f"{BIG + 1} of {BIG + 1} files · 2 failed" in m.value for m in at.markdown)
    at.toggle(key=f"files-{big.id}").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    tables = [d.value for d in at.dataframe if "reason" in d.value.columns]
    assert sorted(len(t) for t in tables) == [3, BIG + 1]
    assert any("r00007\\.md\\: not a PDF" in c.value for c in at.caption)  # why it failed, in full


def test_the_jobs_naming_a_file_give_its_paths_without_reading_whole_lists(ws):
    """`job_files.naming`: what an erase needs of each job listing the document (its id, state and the paths
    stored under the name), picked in SQL; the same jobs as `jobs.every` finds, names JSON escapes included."""
    from archivist import job_files

    odd = 'we"ird\\café.md'
    first = create_job(ws, "ingest", None, "default", [("/a/one.md", "one.md"), ("/srv/w1", odd)])
    jobs.start(ws, first.id)
    jobs.end(ws, first.id, "interrupted")
    second = create_job(ws, "ingest", None, "default", [(f"/b/{i}.md", f"{i}.md") for i in range(500)] + [("/srv/w2", odd)])
    elsewhere = create_job(ws, "upload", None, "other", [("/up/w3", odd)])
    inside = create_job(ws, "ingest", None, "default", [("/a/data.md", "data.md")])
    with ws.db:  # a job as migration 7 moved it from ingest_jobs: its JSON written by SQLite
        ws.db.execute("INSERT INTO jobs(id, kind, owner, state, spec, created_at) VALUES ('ingest-7', 'ingest', 'admin', "
                      "'done', json_object('collection', 'default', 'files', json_array(json_array('/old/w', ?))), 1e10)",
                      (odd,))
    found = job_files.naming(ws, INGEST_KINDS, "default", odd, jobs.STATES)
    assert found == [(first.id, "interrupted", ["/srv/w1"]), (second.id, "queued", ["/srv/w2"]), ("ingest-7", "done", ["/old/w"])]
    assert [i for i, _, _ in found] == [j.id for j in jobs.every(ws, INGEST_KINDS, "default", odd)]
    assert job_files.naming(ws, INGEST_KINDS, "other", odd, jobs.STATES) == [(elsewhere.id, "queued", ["/up/w3"])]
    assert job_files.naming(ws, INGEST_KINDS, "default", odd, jobs.RESUMABLE) == [(first.id, "interrupted", ["/srv/w1"])]
    assert job_files.naming(ws, INGEST_KINDS, "default", "a.md", jobs.STATES) == []  # inside "data.md", not a name
    assert job_files.naming(ws, INGEST_KINDS, "default", "data.md", jobs.LIVE) == [(inside.id, "queued", ["/a/data.md"])]


def test_jobs_show_gives_one_job_whole(ws, cli, monkeypatch):
    """docs/api.md sent users to `archivist jobs ID`, an argparse error; now `archivist jobs show ID`."""
    monkeypatch.setenv("ARCHIVIST_HOME", str(ws.home))
    big = _finished(ws, None, 1200, failed={5}, refused=[("x.exe", "x.exe: not a document type")])
    out = cli("jobs", "show", big.id)
    assert out.returncode == 0, out.stderr
    assert f"job {big.id}: ingest by admin, done (1200 of 1200)" in out.stdout
    assert "files: 1199 unchanged, 2 failed (`archivist jobs show" in out.stdout and "r00006" not in out.stdout
    listed = cli("jobs", "show", big.id, "--files").stdout.splitlines()
    assert "  failed     reports/r00005.md  reports/r00005.md: not a PDF (/srv/share/reports/r00005.md)" in listed
    assert sum(line.startswith("  unchanged  reports/r") for line in listed) == 1199 and listed[-1].startswith("  failed     x.exe")
    whole = json.loads(cli("jobs", "show", big.id, "--json").stdout)
    assert whole["id"] == big.id and "files" not in whole["spec"] and whole["result"]["counts"] == {"failed": 1, "unchanged": 1199}
    assert json.loads(cli("jobs", "show", big.id, "--json", "--files").stdout)["spec"]["files"] == big.spec["files"]
    access.add_user(ws, "bob", "member")
    refused = cli("jobs", "show", big.id, env={"ARCHIVIST_USER": "bob"})
    assert refused.returncode != 0 and f"no job {big.id!r}" in refused.stderr  # another user's: as if none
    assert "no job 'ingest-nope'" in cli("jobs", "show", "ingest-nope").stderr


@pytest.mark.parametrize("state", ["cancelled", "running"])
def test_counts_agree_with_the_files_of_a_job_cut_short_or_running(ws, state):
    """The page's counts (from the row alone) and its files (read whole) say the same of a job not finished."""
    from archivist import job_files

    job = create_job(ws, "ingest", None, "default", [(f"/s/{i}.md", f"{i}.md") for i in range(10)], [("z.exe", "refused")])
    jobs.start(ws, job.id)
    jobs.progress(ws, job.id, 4, 10, result=job_summary([FileResult(name=f"{i}.md", status="added") for i in range(4)]))
    if state == "cancelled":
        jobs.end(ws, job.id, "cancelled")
    job = jobs.get(ws, job.id)
    tally = {}
    for f in job_files.statuses(job):
        tally[f["status"]] = tally.get(f["status"], 0) + 1
    assert tally == job_files.counts(jobs.get(ws, job.id, files=False)) == \
        {"added": 4, "cancelled" if state == "cancelled" else "waiting": 6, "failed": 1}
