"""Background jobs (archivist/jobs.py): real processes and real SQLite.

A job killed with SIGKILL is reported interrupted (never "running" forever) and resumes to the end;
cancel stops a running ingestion; jobs outlive the process that ran them; a member never sees,
cancels or resumes another user's job or fine-tuning run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archivist import access, jobs
from archivist.finetune import runs
from archivist.settings import Settings
from archivist.workspace import connect, open_workspace

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "ui" / "app.py")

# `archivist` with each file's reading slowed by SLOW_S seconds and each file committed on its own,
# so a test can act while the job runs, with some of its files stored
SLOW_CHILD = """
import os, sys, time
import archivist.ingest.pipeline as p
import archivist.ingest.reading as r
p.BATCH_CHUNKS = 1
real = r._prepare
def slow(*args, **kw):
    time.sleep(float(os.environ.get("SLOW_S", "0")))
    return real(*args, **kw)
r._prepare = slow
from archivist.cli import main
sys.exit(main(sys.argv[1:]))
"""


def corpus(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"note-{i:02d}.md").write_text(f"# Note {i}\n\nRoom {100 + i} holds the archive box number {7 * i + 3}.\n")
    return folder


def archivist(home: Path, *args: str, slow: float = 0.0, wait: bool = True):
    """Run the CLI in its own process (slowed by `slow` seconds per file); a Popen when not `wait`."""
    env = dict(os.environ, ARCHIVIST_HOME=str(home), SLOW_S=str(slow))
    env.pop("ARCHIVIST_USER", None)
    cmd = [sys.executable, "-c", SLOW_CHILD, *args]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def command(cli, home: Path, *args: str):
    """`archivist ARGS` run in this process (`cli` fixture): a later command reads only what the
    workspace holds; the ingests that are killed or cancelled run in their own processes."""
    return cli(*args, env={"ARCHIVIST_HOME": str(home)})


def rows(home: Path, sql: str, *args) -> list:
    """Read the workspace's SQLite straight (what another process would see, nothing reconciled)."""
    db = connect(home / "archivist.db")
    try:
        return [tuple(r) for r in db.execute(sql, args)]
    finally:
        db.close()


def wait_for(what, timeout: float = 120.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def home(tmp_path, embedder):
    """A workspace with admin `alice`, members `bob` (writes `team`) and `carol` (no grants)."""
    from archivist import auth

    home = tmp_path / "ws"
    with open_workspace(Settings.from_env(home=home)) as ws:
        auth.create_first_admin(ws, "alice", "alice-pass-1")
        auth.create_user(ws, "bob", "bob-pass-12", by="alice")
        auth.create_user(ws, "carol", "carol-pass-1", by="alice")
        access.create_collection(ws, "team", by="alice")
        access.grant(ws, "bob", "team", "write", by="alice")
    return home


@pytest.mark.slow  # real processes (or the app), timed
def test_a_job_killed_with_sigkill_is_reported_interrupted_and_resumes_to_completion(home, tmp_path, cli):
    files = corpus(tmp_path / "corpus", 12)
    child = archivist(home, "ingest", str(files), "-c", "team", "--user", "bob", "-q", slow=0.4, wait=False)
    wait_for(lambda: rows(home, "SELECT COUNT(*) FROM documents")[0][0] >= 2)
    (job_id, state, pid), = rows(home, "SELECT id, state, pid FROM jobs")
    assert state == "running" and pid == child.pid
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert rows(home, "SELECT state FROM jobs") == [("running",)]  # what the dead process left behind …
    listed = command(cli, home, "jobs", "--json", "--user", "bob")  # … is reported interrupted by the next process
    assert listed.returncode == 0, listed.stderr
    (job,) = json.loads(listed.stdout)
    assert job["id"] == job_id and job["state"] == "interrupted" and job["owner"] == "bob"
    assert f"archivist jobs resume {job_id}" in job["error"] and str(pid) in job["error"]
    committed = rows(home, "SELECT COUNT(*) FROM documents")[0][0]
    assert 2 <= committed < 12
    resumed = command(cli, home, "jobs", "resume", job_id, "--json", "--user", "bob")
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)
    assert out["id"] == job_id and out["state"] == "done" and out["owner"] == "bob" and out["resumed"] == 1
    statuses = sorted(f["status"] for f in out["files"])
    assert statuses == sorted(["unchanged"] * committed + ["added"] * (12 - committed))
    assert rows(home, "SELECT COUNT(*) FROM documents")[0][0] == 12
    # the job outlives every process that touched it: a new one still sees how it ended
    (again,) = json.loads(command(cli, home, "jobs", "--json", "--user", "bob").stdout)
    assert (again["state"], again["done"], again["total"], again["error"]) == ("done", 12, 12, None)
    assert command(cli, home, "jobs", "resume", job_id, "--user", "bob").returncode == 2  # done: nothing to resume


@pytest.mark.slow  # real processes, timed
def test_a_plain_rerun_after_a_kill_ends_the_cut_short_job(home, tmp_path, cli):
    """Running the same `archivist ingest` again finishes a killed one's work; its job was left listed
    as interrupted (and the next `archivist serve` resumed it again). Now the rerun ends it as done,
    naming itself; a cut-short job with a file the rerun did not read stays interrupted."""
    files = corpus(tmp_path / "corpus", 8)
    child = archivist(home, "ingest", str(files), "-c", "team", "--user", "bob", "-q", slow=0.4, wait=False)
    wait_for(lambda: rows(home, "SELECT COUNT(*) FROM documents")[0][0] >= 2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    (cut,) = [r[0] for r in rows(home, "SELECT id FROM jobs")]
    other = tmp_path / "other.md"  # a cut-short job the rerun does not cover
    other.write_text("# Other\n\nThe other file.\n")
    with open_workspace(Settings.from_env(home=home)) as ws:
        from archivist import jobs
        from archivist.ingest.pipeline import create_job

        wider = create_job(ws, "ingest", "bob", "team", [(other, "other.md")])
        jobs.start(ws, wider.id)
        jobs.end(ws, wider.id, "interrupted", error="killed")
    rerun = command(cli, home, "ingest", str(files), "-c", "team", "--user", "bob", "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert "were cut short" in rerun.stderr  # said before the rerun ...
    listed = {j["id"]: j for j in json.loads(command(cli, home, "jobs", "--json", "--user", "bob").stdout)}
    new = next(i for i in listed if i not in (cut, wider.id))
    assert listed[new]["state"] == "done"
    assert listed[cut]["state"] == "done" and new in listed[cut]["message"]  # ... and no longer after it
    assert listed[wider.id]["state"] == "interrupted"
    again = command(cli, home, "ingest", str(files), "-c", "team", "--user", "bob", "--json")
    assert "1 ingest job was cut short" in again.stderr and wider.id in again.stderr and cut not in again.stderr


@pytest.mark.slow  # real processes (or the app), timed
def test_cancel_stops_a_running_ingestion_and_resume_finishes_it(home, tmp_path, cli):
    files = corpus(tmp_path / "corpus", 20)
    child = archivist(home, "ingest", str(files), "-c", "team", "--user", "bob", "--json", slow=1.0, wait=False)
    wait_for(lambda: rows(home, "SELECT COUNT(*) FROM documents")[0][0] >= 1)
    (job_id,), = rows(home, "SELECT id FROM jobs")
    refused = command(cli, home, "jobs", "cancel", job_id, "--user", "carol")  # not hers: answered like an unknown job
    assert refused.returncode == 2 and f"no job {job_id!r}" in refused.stderr
    cancelled = command(cli, home, "jobs", "cancel", job_id, "--json", "--user", "bob")
    assert cancelled.returncode == 0, cancelled.stderr
    out, err = child.communicate(timeout=120)
    assert child.returncode == 1, err  # not everything was ingested
    files_out = json.loads(out)["files"]
    n_done = sum(f["status"] == "added" for f in files_out)
    assert 1 <= n_done < 20 and sum(f["status"] == "cancelled" for f in files_out) == 20 - n_done
    with open_workspace(Settings.from_env(home=home)) as ws:
        job = jobs.get(ws, job_id, "bob")
        assert job.state == "cancelled" and job.done == n_done and job.result["counts"]["cancelled"] == 20 - n_done
        assert ws.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == n_done
    resumed = command(cli, home, "jobs", "resume", job_id, "--json", "--user", "bob")
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["state"] == "done"
    assert rows(home, "SELECT COUNT(*) FROM documents")[0][0] == 20


def test_a_member_cannot_list_cancel_or_resume_another_users_job(home, tmp_path, embedder, cli):
    from archivist.ingest.pipeline import ingest_paths, resume_job

    with open_workspace(Settings.from_env(home=home)) as ws:
        ingest_paths(ws, [corpus(tmp_path / "c", 2)], collection="team", user="bob", embedder=embedder, progress=False)
        (job,) = jobs.list_jobs(ws, "bob")
        assert job.owner == "bob" and job.state == "done"
        assert jobs.list_jobs(ws, "carol") == []
        assert [j.id for j in jobs.list_jobs(ws, "alice")] == [job.id]  # an admin sees everyone's
        for attempt in (lambda: jobs.get(ws, job.id, "carol"), lambda: jobs.cancel(ws, job.id, "carol"),
                        lambda: jobs.requeue(ws, job.id, "carol"), lambda: resume_job(ws, job.id, "carol"),
                        lambda: jobs.dismiss(ws, job.id, "carol")):
            with pytest.raises(LookupError, match=f"no job '{job.id}'"):
                attempt()
        with pytest.raises(LookupError) as unknown:
            jobs.get(ws, "ingest-00000000-000000-000000", "carol")
        assert str(unknown.value).replace("ingest-00000000-000000-000000", job.id) == f"no job '{job.id}' (see `archivist jobs`)"
    assert json.loads(command(cli, home, "jobs", "--json", "--user", "carol").stdout) == []


@pytest.mark.slow  # real processes (or the app), timed
def test_a_member_cannot_list_cancel_or_resume_another_users_run_and_resume_keeps_the_owner(home):
    with open_workspace(Settings.from_env(home=home)) as ws:
        theirs = runs.create_run(ws, {"data": ["docs"], "max_steps": 1}, user="alice")
        mine = runs.create_run(ws, {"data": ["docs"], "max_steps": 1, "user": "bob"})
        runs.update_run(ws, theirs, "failed", error="OutOfMemoryError: the admin's secret run")
        runs.update_run(ws, mine, "failed", error="stopped")
        assert [r["id"] for r in runs.list_runs(ws, "bob")] == [mine]
        assert runs.list_runs(ws, "carol") == []
        assert {r["id"] for r in runs.list_runs(ws, "alice")} == {theirs, mine}
        for attempt in (lambda: runs.get_run(ws, theirs, "bob"), lambda: runs.cancel_run(ws, theirs, "bob"),
                        lambda: runs.resume_run(ws, theirs, "bob"), lambda: runs.start_run_background(ws, {}, theirs, "bob")):
            with pytest.raises(LookupError, match=f"no run '{theirs}'"):
                attempt()
        assert runs.get_run(ws, theirs, "alice")["status"] == "failed"  # nothing bob tried changed it
        # an admin resuming bob's run trains as bob, on bob's config, and the run stays his
        runs.resume_run(ws, mine, "alice")
        run = runs.get_run(ws, mine, "bob")
        assert run["owner"] == "bob" and run["config"]["user"] == "bob" and run["status"] in ("queued", "running")
        env = [b""]
        for _ in range(50):  # read empty in the instant the child execs (seen once under load): read again
            env = Path(f"/proc/{run['pid']}/environ").read_bytes().split(b"\0")
            if env != [b""]:
                break
            time.sleep(0.02)
        assert b"ARCHIVIST_USER=bob" in env
        assert runs.cancel_run(ws, mine, "bob", wait=60)["status"] in ("cancelled", "failed")


@pytest.mark.slow  # real processes (or the app), timed
def test_the_runs_tab_shows_a_member_only_their_own_runs(home):
    from streamlit.testing.v1 import AppTest

    from archivist import auth

    os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")
    with open_workspace(Settings.from_env(home=home)) as ws:
        theirs = runs.create_run(ws, {"data": ["docs"], "max_steps": 1}, user="alice")
        runs.update_run(ws, theirs, "failed", error="the admin's secret error")
        token = auth.create_session(ws, "bob")
    assert os.environ["ARCHIVIST_HOME"] == str(home)  # the app opens this workspace (conftest)
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["_token"] = token
    at.run()
    at = at.switch_page("views/finetune.py").run()
    assert not at.exception, [e.value for e in at.exception]
    runs_tab = at.tabs[1]
    assert any("No runs yet" in c.value for c in runs_tab.caption)
    assert not runs_tab.dataframe and not any("secret" in e.value for e in at.error)


def test_a_dead_or_reused_pid_or_a_stale_heartbeat_means_interrupted(home):
    with open_workspace(Settings.from_env(home=home)) as ws:
        alive = jobs.create(ws, "ingest", "bob", {"collection": "team", "files": []})
        jobs.start(ws, alive.id)
        # this process is alive, but a job that says it started before this process did is another one's
        reused = jobs.create(ws, "ingest", "bob", {"collection": "team", "files": []})
        jobs.start(ws, reused.id)
        ws.db.execute("UPDATE jobs SET pid_started = pid_started - 3600 WHERE id = ?", (reused.id,))
        # a job run on another machine that shares the workspace: only its heartbeat tells
        elsewhere = jobs.create(ws, "upload", "bob", {"collection": "team", "files": []})
        fresh = jobs.create(ws, "upload", "bob", {"collection": "team", "files": []})
        for j in (elsewhere, fresh):
            jobs.start(ws, j.id)
        ws.db.execute("UPDATE jobs SET host = 'another-host' WHERE id IN (?, ?)", (elsewhere.id, fresh.id))
        ws.db.execute("UPDATE jobs SET heartbeat = heartbeat - ? WHERE id = ?", (jobs.STALE_S + 5, elsewhere.id))
        assert socket.gethostname() != "another-host"
        assert sorted(jobs.reconcile(ws)) == sorted([reused.id, elsewhere.id])
        states = {j.id: j.state for j in jobs.list_jobs(ws, "bob")}
        assert states == {alive.id: "running", reused.id: "interrupted", elsewhere.id: "interrupted", fresh.id: "running"}
        # the heartbeat thread keeps a long step fresh
        with jobs.keep_alive(ws, fresh.id, every=0.05):
            before = jobs.get(ws, fresh.id, "bob").heartbeat
            wait_for(lambda: jobs.get(ws, fresh.id, "bob").heartbeat > before, timeout=10)
        # a queued job is cancelled at once and can no longer be started
        queued = jobs.create(ws, "ingest", "bob", {"collection": "team", "files": []})
        assert jobs.cancel(ws, queued.id, "bob").state == "cancelled"
        with pytest.raises(jobs.JobError, match="is cancelled"):
            jobs.start(ws, queued.id)


def test_the_migration_moves_ingest_jobs_and_runs_into_jobs(tmp_path, monkeypatch):
    """A workspace from before the jobs table: its ingest jobs and runs come over with owner, state,
    files and config; one its dead process left running is found interrupted, and resumable."""
    from archivist import workspace

    home = tmp_path / "old"
    before = workspace.MIGRATIONS[: next(i for i, m in enumerate(workspace.MIGRATIONS) if "CREATE TABLE jobs" in m)]
    monkeypatch.setattr(workspace, "MIGRATIONS", before)
    with open_workspace(Settings.from_env(home=home)) as ws:
        ws.db.execute("INSERT INTO users(name, role) VALUES ('bob', 'member')")
        ws.db.execute("INSERT INTO ingest_jobs(collection, user, files, pid, status, started_at) VALUES "
                      "('team', 'bob', '[[\"/srv/a.md\", \"a.md\"], [\"/srv/b.md\", \"b.md\"]]', 999999, 'running', 1000.0)")
        ws.db.execute("INSERT INTO ingest_jobs(collection, user, files, pid, status, summary, finished_at) VALUES "
                      "('team', 'bob', '[[\"/srv/c.md\", \"c.md\"]]', 1, 'failed', '[{\"name\": \"c.md\", \"status\": \"failed\"}]', 2000.0)")
        ws.db.execute("INSERT INTO runs(id, status, pid, config, adapter) VALUES ('20260101-000000-abcd', 'done', NULL, "
                      "'{\"user\": \"bob\", \"max_steps\": 3}', 'hr-v1')")
    monkeypatch.undo()
    with open_workspace(Settings.from_env(home=home)) as ws:
        tables = {r[0] for r in ws.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "jobs" in tables and not {"ingest_jobs", "runs"} & tables
        got = {j.id: j for j in jobs.list_jobs(ws, "bob")}
        assert set(got) == {"ingest-1", "ingest-2", "20260101-000000-abcd"}
        cut, done, run = got["ingest-1"], got["ingest-2"], got["20260101-000000-abcd"]
        assert (cut.kind, cut.owner, cut.state, cut.total) == ("ingest", "bob", "interrupted", 2)
        assert cut.spec == {"collection": "team", "files": [["/srv/a.md", "a.md"], ["/srv/b.md", "b.md"]]}
        assert (done.state, done.result) == ("done", {"files": [{"name": "c.md", "status": "failed"}]})
        assert (run.kind, run.owner, run.state, run.result) == ("train", "bob", "done", {"adapter": "hr-v1"})
        assert runs.get_run(ws, run.id, "bob")["adapter"] == "hr-v1"
        assert jobs.requeue(ws, cut.id, "bob").state == "queued"


@pytest.mark.slow  # a background thread, timed
def test_the_apps_cancel_stops_a_background_ingestion(ws, tmp_path, monkeypatch):
    """The Documents page's Cancel (ui/library.py): the thread stops after the file at hand, the
    files it did not reach show `cancelled`, and the job can be resumed to the end."""
    import archivist.ingest.pipeline as pipeline
    import archivist.ingest.reading as reading
    from archivist import auth
    from archivist.ui import library

    real = reading._prepare

    def slow(*args, **kw):  # each file takes a while, so the cancel lands mid-way
        time.sleep(0.3)
        return real(*args, **kw)

    monkeypatch.setattr(reading, "_prepare", slow)
    monkeypatch.setattr(pipeline, "BATCH_CHUNKS", 1)
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    files = sorted(corpus(tmp_path / "c", 12).iterdir())
    job = library.start_ingest(ws.settings, "alice", "default", files, [f.name for f in files], kind="ingest")
    wait_for(lambda: ws.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0] >= 1, timeout=120)
    library.cancel(ws, "alice", job.id)
    job = library.wait(job, timeout=60)
    statuses = [f.status for f in job.files]
    assert job.state == "cancelled" and 1 <= statuses.count("added") < 12
    assert statuses.count("cancelled") == 12 - statuses.count("added") and "waiting" not in statuses
    assert [j.id for j in library.jobs_for(ws, "alice")] == [job.id]
    monkeypatch.setattr(reading, "_prepare", real)
    from archivist.ingest.pipeline import resume_job

    resume_job(ws, job.id, "alice")
    job = library.wait(job)
    assert job.state == "done" and job.resumed == 1 and {f.status for f in job.files} == {"added", "unchanged"}


def test_a_user_created_again_under_a_deleted_users_name_inherits_nothing(ws, tmp_path, embedder):
    """A security test deleted dave and created a new dave: he listed the old dave's uploads, their
    document ids and collections. Jobs and saved datasets record their owner by name; a deleted
    user's pass to a name nobody can have."""
    from archivist.finetune import dataset_store, datasets
    from archivist.ingest.pipeline import ingest_paths

    (tmp_path / "salary.md").write_text("# Salaries\n\nDave's salary is EUR 91,000 a year before tax.\n")
    ingest_paths(ws, [tmp_path / "salary.md"], collection="hr", embedder=embedder, progress=False)
    access.add_user(ws, "dave", "member")
    access.grant(ws, "dave", "hr", "read")
    job = jobs.create(ws, "upload", "dave", spec={"collection": "hr", "files": [["/x/salary.md", "salary.md"]]})
    built = datasets.build_dataset(ws, ["docs"], user="dave", collections=["hr"], embedder=embedder, progress=False, name="dave-hr")
    assert [j.id for j in jobs.list_jobs(ws, "dave")] == [job.id] and [d["name"] for d in dataset_store.list_datasets(ws, "dave")] == ["dave-hr"]

    access.delete_user(ws, "dave")
    access.add_user(ws, "dave", "member")
    access.grant(ws, "dave", "hr", "read")  # even with the same access: what the old dave made is not his
    assert jobs.list_jobs(ws, "dave") == [] and dataset_store.list_datasets(ws, "dave") == []
    with pytest.raises(LookupError):
        jobs.get(ws, job.id, "dave")
    kept = jobs.get(ws, job.id, None)  # an admin still sees it, with whose it was
    assert kept.owner.startswith("dave#deleted-") and built.path.exists()


def test_a_reporter_writes_progress_at_most_every_progress_s_and_always_the_last_step(home):
    """Training steps and re-embed batches report through `jobs.Reporter`: a step every few
    milliseconds must not be a SQLite transaction each, yet the last step and a cancel still show."""
    with open_workspace(Settings.from_env(home=home)) as ws:
        job = jobs.create(ws, "ingest", "bob", {"collection": "team", "files": []})
        jobs.start(ws, job.id)
        report = jobs.Reporter(ws, job.id)
        assert report(1, 100, "step 1") is False
        report.at = time.monotonic()  # the machine may be slow: "now" is the first write, for the asserts below
        for n in range(2, 60):
            report(n, 100, f"step {n}")
        stored = jobs.get(ws, job.id, "bob")
        assert (stored.done, stored.message) == (1, "step 1")  # within PROGRESS_S: not written again
        jobs.cancel(ws, job.id, "bob", wait=0)  # this process's own job: waiting for it to end would time out (30 s)
        report.at = time.monotonic()
        assert report(60, 100) is False  # not due: the cancel is seen at the next write
        report.at -= jobs.PROGRESS_S  # as if a second had passed
        assert report(61, 100, "step 61") is True
        assert jobs.get(ws, job.id, "bob").done == 61
        report.at = time.monotonic()
        assert report(100, 100, "step 100") is True  # the last step is always written
        assert jobs.get(ws, job.id, "bob").message == "step 100"
