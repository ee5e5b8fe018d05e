"""Jobs that run in a process of their own (a training run, a retriever's adaptation), as a member and
an admin use them.

Found: a cancel that met a queued job just as its worker started it changed nothing, wrote no
record, and its SIGTERM left the job `interrupted`, not `cancelled`; a retriever job's start was on
no audit record; the app listed a member none of her retriever jobs (nothing to see or cancel).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import job_ended

from archivist import access, audit, jobs

# a job's own process: it takes the job when the test says so, then works until it is stopped
WORKER = """
import sys, time
from archivist import jobs
from archivist.settings import Settings
from archivist.workspace import open_workspace
ws = open_workspace(Settings.from_env())
sys.stdin.readline()
jobs.start(ws, sys.argv[1])
print("started", flush=True)
time.sleep(300)
"""


@pytest.mark.parametrize("kind", ["train", "retriever"])
def test_a_queued_job_its_worker_starts_during_the_cancel_ends_cancelled_on_the_record(ws, monkeypatch, kind):
    """The worker takes the job between the cancel's read (queued) and its write. Before: the write
    changed nothing, no `job.cancel` was recorded, the SIGTERM for a queued job killed the worker, and
    the job was returned running (then found `interrupted`). Now it is cancelled as the running job it is."""
    admin = access.current_user(ws)
    access.add_user(ws, "eve", "member")
    job = jobs.create(ws, kind, "eve", spec={"collections": ["team"]})
    worker = subprocess.Popen([sys.executable, "-c", WORKER, job.id], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    real_get = jobs.get

    def get_then_the_worker_starts_it(*args, **kwargs):
        seen = real_get(*args, **kwargs)
        if seen.state == "queued":
            worker.stdin.write("go\n")
            worker.stdin.flush()
            assert worker.stdout.readline() == "started\n", "the worker did not start the job"
        return seen

    try:
        jobs.adopt(ws, job.id, worker.pid)  # as `_spawn` hands it to its child
        monkeypatch.setattr(jobs, "get", get_then_the_worker_starts_it)
        ended = jobs.cancel(ws, job.id, admin, wait=60)
        monkeypatch.undo()
        assert ended.state == "cancelled", ended
        assert jobs.get(ws, job.id, "eve").state == "cancelled"
        said = [r for r in audit.read(ws, admin, action="job.cancel") if r["target"] == job.id]
        assert [(r["user"], r["detail"]["owner"], r["detail"]["kind"]) for r in said] == [(admin, "eve", kind)], said
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait(timeout=30)


def test_a_retriever_job_s_start_is_on_the_audit_record_with_its_owner_and_spec(ws):
    """Before: a retriever job wrote nothing when it started (an LLM run writes `finetune.started`).
    The collection holds no document, so the run fails fast after it started."""
    from archivist.finetune import retriever

    admin = access.current_user(ws)
    access.create_collection(ws, "team")
    access.add_user(ws, "eve", "member")
    access.grant(ws, "eve", "team", "read")
    job_id = retriever.start_background(ws, "eve", ["team"], 64)
    assert job_ended(ws, job_id, "eve").state == "failed"
    started = [r for r in audit.read(ws, admin, action="retriever.started")]
    assert [(r["user"], r["target"], r["detail"]) for r in started] == \
        [("eve", job_id, {"collections": ["team"], "max_chunks": 64})], started


def test_the_retriever_tab_lists_a_member_s_own_retriever_jobs_and_cancels_a_live_one(ws):
    """Before: the Retriever tab showed only the start message; her jobs were in `archivist jobs` alone."""
    from streamlit.testing.v1 import AppTest

    from archivist import auth

    os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    for member in ("eve", "bob"):
        access.add_user(ws, member, "member")
    spec = {"collections": ["team"], "max_chunks": 64}
    failed = jobs.create(ws, "retriever", "eve", spec=spec).id
    jobs.start(ws, failed)
    jobs.fail(ws, failed, f"need at least two readable documents in {ws.home / 'collections'}")
    queued = jobs.create(ws, "retriever", "eve", spec=spec).id  # held by this live process: not interrupted
    bobs = jobs.create(ws, "retriever", "bob", spec=spec).id

    def page(user: str):
        at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "ui" / "app.py"), default_timeout=120)
        at.session_state["_token"] = auth.create_session(ws, user)
        at.run()
        at.switch_page("views/finetune.py").run()
        assert not at.exception, at.exception
        return at

    def table() -> dict:
        frames = [d.value for d in at.tabs[3].dataframe if "job" in d.value.columns]
        assert frames, "no retriever jobs table on the Retriever tab"
        return {row["job"]: row for row in frames[0].to_dict("records")}

    at = page("alice")  # an admin sees everyone's, with the owner and the server's paths
    assert {job: row["owner"] for job, row in table().items()} == {bobs: "bob", queued: "eve", failed: "eve"}
    assert str(ws.home) in table()[failed]["message"]
    at = page("eve")
    shown = table()
    assert list(shown) == [queued, failed] and bobs not in shown, shown  # hers only, newest first
    assert shown[queued]["state"] == "queued" and shown[failed]["state"] == "failed"
    assert shown[failed]["message"] == "need at least two readable documents in <workspace>/collections", shown[failed]
    assert at.selectbox(key="rt-job-pick").options == [queued]  # only a live one can be cancelled

    at.button(key="rt-cancel").click().run()
    assert not at.exception, at.exception
    assert jobs.get(ws, queued, "eve").state == "cancelled"
    assert table()[queued]["state"] == "cancelled"
    assert jobs.get(ws, bobs, "bob").state == "queued"
    assert not [b for b in at.tabs[3].button if b.key == "rt-cancel"]  # nothing live is left to cancel


def test_a_member_s_reranker_run_refused_at_the_end_for_a_hidden_name_shows_no_server_path(ws, embedder, tmp_path):
    """`board` is learned from `secret`, which eve may not read: her run passes `check_free` (it must not
    confirm the name) and the save at its end refuses it. Before: that refusal held rerankers/board's
    absolute path on the server; now `<workspace>`. An admin, refused before any work, sees the path."""
    from archivist.finetune.reranker import RerankerConfig, finetune_reranker
    from archivist.ingest.pipeline import ingest_paths
    from archivist.retrieval import rerank
    from jargon import write_jargon_docs

    docs = write_jargon_docs(tmp_path / "handbooks", n_docs=8, sections=6)
    ingest_paths(ws, docs, collection="public", embedder=embedder, progress=False)
    access.create_collection(ws, "secret")
    access.add_user(ws, "eve", "member")
    access.grant(ws, "eve", "public", "read")
    rerank.save_learned(ws, "board", {"collections": ["secret"], "weights": dict.fromkeys(rerank.FEATURES, 0.5)})
    cfg = RerankerConfig(name="board", questions="sentence", max_questions=30, max_eval=15, eval_fraction=0.25, steps=50)

    with pytest.raises(FileExistsError) as member:
        finetune_reranker(ws, cfg, "eve")
    assert str(member.value).startswith("a reranker named 'board' exists already (<workspace>/rerankers/board)"), member.value
    assert str(ws.home) not in str(member.value)
    with pytest.raises(FileExistsError, match=f"exists already \\({ws.home / rerank.FOLDER / 'board'}\\)"):
        finetune_reranker(ws, cfg, access.current_user(ws))


def test_resuming_her_cut_short_retriever_jobs_is_no_way_past_one_live_at_a_time(ws, cli):
    """A member cancels runs as she starts them, then resumes them all: before, each `jobs resume`
    spawned another training at once (start_background's one-per-user rule was not asked)."""
    from archivist.finetune import retriever

    access.create_collection(ws, "team")
    access.add_user(ws, "eve", "member")
    access.grant(ws, "eve", "team", "read")
    cut = []
    for _ in range(2):  # cut short before its process took it: no process is left behind
        job = jobs.create(ws, "retriever", "eve", spec={"collections": ["team"], "max_chunks": 64})
        assert jobs.cancel(ws, job.id, "eve").state == "cancelled"
        cut.append(job.id)

    retriever.resume_job(ws, cut[0], "eve")
    refused = cli("jobs", "resume", cut[1], env={"ARCHIVIST_USER": "eve"})
    assert refused.returncode != 0
    assert f"your retriever run {cut[0]} is " in refused.stderr and f"archivist jobs cancel {cut[0]}" in refused.stderr, refused.stderr
    assert jobs.get(ws, cut[1], "eve").state == "cancelled"  # left as it was
    assert job_ended(ws, cut[0], "eve").state == "failed"  # the resumed one ran (no document: it fails fast)
    retriever.resume_job(ws, cut[1], "eve")  # once it ended, the other may run
    assert job_ended(ws, cut[1], "eve").state == "failed"
