"""Cancelling a retriever job while it switches the embedder (archivist/jobs.py `cancel`): the re-embed job its
process started is cancelled with it, never left running or interrupted for a resume to finish the switch
the admin cancelled. Real processes, real SQLite, the real job functions of finetune/retriever.py's `run_job`
and finetune/embedders.py's `activate`; the child waits on a pipe, so nothing depends on timing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from archivist import auth, jobs
from archivist.settings import Settings
from archivist.workspace import open_workspace

# the retriever job's process at its last step: started as `run_job` starts it, then `activate`'s re-embed job
# taken up; it prints that job's id and blocks (as a long re-embed does) until the cancel's SIGTERM
SWITCHING = """
import sys
from archivist import jobs
from archivist.finetune.embedders import _reembed_job
from archivist.settings import Settings
from archivist.workspace import open_workspace

with open_workspace(Settings.from_env()) as ws:
    job = jobs.start(ws, sys.argv[1])
    print(_reembed_job(ws, "retriever-1", job.owner, None), flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "ws"
    with open_workspace(Settings.from_env(home=home)) as ws:
        auth.create_first_admin(ws, "alice", "alice-pass-1")
    return home


def test_cancelling_a_retriever_job_while_it_switches_the_embedder_cancels_its_reembed(home):
    with open_workspace(Settings.from_env(home=home)) as ws:
        retriever = jobs.create(ws, "retriever", "alice", spec={"collections": ["docs"], "max_chunks": 10}).id
        # another re-embed, of another process (this one): the cancel must leave it alone
        other = jobs.start(ws, jobs.create(ws, "reembed", "alice", spec={"embedder": "base"}).id).id
        env = {**os.environ, "ARCHIVIST_HOME": str(home), "ARCHIVIST_USER": "alice"}
        proc = subprocess.Popen([sys.executable, "-c", SWITCHING, retriever], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
        try:
            jobs.adopt(ws, retriever, proc.pid)  # as retriever._spawn does
            reembed = proc.stdout.readline().strip()
            assert jobs.get(ws, reembed, "alice").state == "running"

            assert jobs.cancel(ws, retriever, "alice", wait=30).state == "cancelled"
        finally:
            proc.kill()
            proc.wait()

        job = jobs.get(ws, reembed, "alice")
        # before: "interrupted", with "resume it with `archivist jobs resume ...`": a resume switched every
        # user's embedder to the cancelled run's weights
        assert job.state == "cancelled" and job.error == f"cancelled with job {retriever}, whose process ran it"
        assert jobs.reconcile(ws) == [] and jobs.interrupted(ws, ("reembed",)) == []
        assert jobs.get(ws, other, "alice").state == "running"
        cancels = [r[0] for r in ws.db.execute("SELECT target FROM audit WHERE action = 'job.cancel' ORDER BY id")]
        assert cancels == [retriever, reembed]
