"""Deleting an adapter, the edges tests/test_adapterdel.py left: a retrain that read the adapter before a
delete committed could still start, and a retrain cut short could be resumed after its adapter was deleted
(its lineage naming an adapter that is gone; the Fine-tune page showed a traceback); a forced delete of the
active adapter switched the chat to the base model without the `adapter.activated` record every other
switch writes; DELETE /v1/models/{id} (and the audit and key routes) documented its 403 as "no access to
that collection"; and a delete killed between its commit and the folder's removal left the deleted
adapter's weights on disk, named by nothing and removed by nothing."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading

import pytest
from conftest import adapter_trained_on, mallory_reads
from test_ui_members import app

from archivist import adapters, audit, files, jobs
from archivist.workspace import open_workspace

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process (the app's page)


def _retrains(ws, name: str) -> list:
    return [j for j in jobs.every(ws, ("train",)) if (j.spec or {}).get("replaces") == name]


def test_a_retrain_of_an_adapter_deleted_after_its_config_was_read_does_not_start(ws, tmp_path):
    from archivist.finetune import runs

    mallory_reads(ws, ["team"])
    adapter_trained_on(ws, tmp_path / "saved", "team-tuned", ["team"])
    config = dataclasses.asdict(runs.retrain_config(ws, "team-tuned", "admin"))  # the retrain reads the adapter ...

    def delete():  # ... and an admin elsewhere deletes it, on a connection of its own
        other = open_workspace(ws.settings)
        try:
            adapters.delete(other, "team-tuned")
        finally:
            other.close()

    deleter = threading.Thread(target=delete)
    deleter.start()
    deleter.join()
    assert "team-tuned" not in {a["name"] for a in adapters.list_for(ws, "admin")}
    with pytest.raises(LookupError, match="no adapter named 'team-tuned'.*it was deleted"):
        runs.create_run(ws, config)  # before: queued, to register a successor of an adapter that is gone
    assert _retrains(ws, "team-tuned") == []


def test_a_retrain_and_a_delete_at_the_same_instant_never_both_go_through(ws, tmp_path):
    from archivist.finetune import runs

    mallory_reads(ws, ["team"])
    for round_ in range(4):
        name = f"tuned{round_}"
        adapter_trained_on(ws, tmp_path / name, name, ["team"])
        config = dataclasses.asdict(runs.retrain_config(ws, name, "admin"))
        start, outcome = threading.Barrier(2), {}

        def race(what, act):
            w = open_workspace(ws.settings)
            try:
                start.wait()
                act(w)
                outcome[what] = "done"
            except (LookupError, ValueError) as e:
                outcome[what] = str(e)
            finally:
                w.close()

        threads = [threading.Thread(target=race, args=("retrain", lambda w: runs.create_run(w, config))),
                   threading.Thread(target=race, args=("delete", lambda w: adapters.delete(w, name)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # exactly one wins: a retrain queued for a registered adapter, or the adapter deleted and no retrain
        assert sorted(outcome.values()).count("done") == 1, outcome
        deleted = outcome["delete"] == "done"
        assert deleted == (name not in {a["name"] for a in adapters.list_for(ws, "admin")}), outcome
        assert bool(_retrains(ws, name)) == (not deleted), outcome


def test_a_cut_short_retrain_is_not_resumed_once_its_adapter_is_deleted(ws, tmp_path, cli):
    from archivist.finetune import runs

    mallory_reads(ws, ["team"])
    adapter_trained_on(ws, tmp_path / "saved", "team-tuned", ["team"])
    run_id = runs.create_run(ws, dataclasses.asdict(runs.retrain_config(ws, "team-tuned", "admin")))
    runs.update_run(ws, run_id, "failed", error="CUDA out of memory")  # as train.py ends a run that failed
    assert cli("adapters", "delete", "team-tuned").returncode == 0  # a run cut short retrains nothing now
    r = cli("jobs", "resume", run_id)  # before: queued again and started, to register a successor of nothing
    assert r.returncode == 2 and "no adapter named 'team-tuned'" in r.stderr and "it was deleted" in r.stderr, r
    assert runs.get_run(ws, run_id)["status"] == "failed"


def test_the_fine_tune_page_says_why_a_retrain_of_a_deleted_adapter_does_not_resume(ws, tmp_path):
    from archivist import access, auth
    from archivist.finetune import runs

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    access.create_collection(ws, "team", by="alice")
    adapter_trained_on(ws, tmp_path / "saved", "team-tuned", ["team"])
    run_id = runs.create_run(ws, dataclasses.asdict(runs.retrain_config(ws, "team-tuned", "alice")))
    runs.update_run(ws, run_id, "failed", error="CUDA out of memory")
    adapters.delete(ws, "team-tuned", user="alice")

    at = app(auth.create_session(ws, "alice"), "finetune")
    at.button(key=f"ft-resume-{run_id}").click().run()
    assert not at.exception, [e.value for e in at.exception]  # before: the LookupError's traceback
    assert any("no adapter named 'team\\-tuned'" in e.value and "it was deleted" in e.value for e in at.error), \
        [e.value for e in at.error]
    assert runs.get_run(ws, run_id, "alice")["status"] == "failed"


def test_a_forced_delete_of_the_active_adapter_records_the_switch_to_the_base_model(ws, tmp_path, cli):
    mallory_reads(ws, ["team"])
    adapter_trained_on(ws, tmp_path / "saved", "team-tuned", ["team"])
    adapters.activate(ws, "team-tuned")
    r = cli("adapters", "delete", "team-tuned", "--force")
    assert r.returncode == 0, r
    switches = audit.read(ws, "admin", action="adapter.activated")
    assert [(s["target"], s["user"]) for s in switches] == [("team-tuned", "admin"), (None, "admin")]
    assert switches[-1]["detail"] == {"deleted": "team-tuned"}
    [deleted] = audit.read(ws, "admin", action="adapter.delete")
    assert switches[-1]["id"] == deleted["id"] + 1  # written with the delete, in its transaction
    # a delete of an adapter that was not active switches nothing
    adapter_trained_on(ws, tmp_path / "other", "other", ["team"])
    assert cli("adapters", "delete", "other").returncode == 0
    assert len(audit.read(ws, "admin", action="adapter.activated")) == 2


def test_each_routes_403_says_what_it_means_there(settings):
    from archivist.api.app import create_app

    paths = create_app(settings).openapi()["paths"]

    def forbidden(path, method):
        return paths[path][method]["responses"]["403"]["description"]

    assert "only admins delete an adapter" in forbidden("/v1/models/{model_id}", "delete")
    assert "only admins read the audit log" in forbidden("/v1/audit", "get")
    assert "only admins read the audit log" in forbidden("/v1/audit/verify", "get")
    assert "only an admin's key makes keys" in forbidden("/v1/keys", "post")
    assert "only admins list others' keys" in forbidden("/v1/keys", "get")
    assert "revokes only itself" in forbidden("/v1/keys/{prefix}", "delete")
    for path, method in (("/v1/search", "post"), ("/v1/documents", "get"), ("/v1/chat/completions", "post"),
                         ("/v1/feedback", "post")):
        assert forbidden(path, method) == "no access to that collection", (path, method)


# a delete killed for real (SIGKILL, by the runtime's audit hook) when it starts to remove the folder: after its commit
_KILLED_DELETE = """
import os, signal, sys
from archivist import adapters
from archivist.settings import Settings
from archivist.workspace import open_workspace
folder = os.path.join(os.environ["ARCHIVIST_HOME"], "adapters", sys.argv[1])
sys.addaudithook(lambda event, args: event == "shutil.rmtree" and os.fspath(args[0]) == folder
                 and os.kill(os.getpid(), signal.SIGKILL))
adapters.delete(open_workspace(Settings.from_env()), sys.argv[1])
"""


def _killed_delete(ws, name: str) -> None:
    r = subprocess.run([sys.executable, "-c", _KILLED_DELETE, name], env=dict(os.environ, ARCHIVIST_HOME=str(ws.home)),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    assert ws.db.execute("SELECT COUNT(*) FROM adapters WHERE name = ?", (name,)).fetchone()[0] == 0
    assert (ws.home / "adapters" / name / "lineage.json").exists()  # the weights, left without a row


def test_a_delete_killed_before_it_removed_the_folder_is_named_by_doctor_and_cleaned_next_time(ws, tmp_path, cli):
    mallory_reads(ws, ["team"])
    for name in ("gone", "gone2", "kept", "kept2"):
        adapter_trained_on(ws, tmp_path / name, name, ["team"])
    root = ws.home / "adapters"
    _killed_delete(ws, "gone")

    r = cli("doctor", "--json")
    [problem] = [p for p in json.loads(r.stdout)["problems"] if "adapter" in p]
    assert r.returncode == 1 and problem == (f"workspace {ws.home}: {root / 'gone'} holds the weights of a deleted adapter "
                                             "(what it learned); `archivist adapters delete gone` removes it (so does any "
                                             "delete or registration)"), r
    assert f"problem: {problem}" in cli("doctor").stderr

    # the next registration removes it; not a registered adapter's folder, nor a save in the making
    with files.building(root, "new") as making:
        adapter_trained_on(ws, tmp_path / "new", "new", ["team"])
        assert making.is_dir()
    assert not (root / "gone").exists()
    assert {p.name for p in root.iterdir()} == {"gone2", "kept", "kept2", "new"}
    assert "holds the weights of a deleted adapter" not in cli("doctor").stderr

    # and the next delete, of another adapter
    _killed_delete(ws, "gone2")
    r = cli("adapters", "delete", "kept2")
    assert (r.returncode, r.stderr) == (0, ""), r
    assert {p.name for p in root.iterdir()} == {"kept", "new"}
    assert adapters.get(ws, "kept")["name"] == "kept" and (root / "kept" / "lineage.json").exists()

    # or the delete the doctor names, of the deleted adapter itself; a member still learns nothing
    _killed_delete(ws, "new")
    r = cli("adapters", "delete", "new", "--user", "mallory")
    assert r.returncode == 2 and "may not delete an adapter" in r.stderr and (root / "new").exists(), r
    r = cli("adapters", "delete", "new")
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, "deleted adapter new", ""), r
    assert {p.name for p in root.iterdir()} == {"kept"}
    assert cli("adapters", "delete", "new").returncode == 2  # nothing of it left: an unknown name
