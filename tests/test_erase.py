"""`archivist erase`: a document's text is found in no file of the workspace afterwards (SQLite with
its FTS and WAL, FAISS, the lexical index, datasets, evaluations, uploads, feedback, chats), the
adapters that learned it are marked stale (CLI, API, and blocked by the setting), and the report
says so. The control case shows plain `delete` leaves copies behind, so the grep can fail."""

from __future__ import annotations

import json

import pytest

from archivist import adapters, audit, conversations, feedback
from archivist.ingest.erase import erase, erased_sentences
from archivist.files import files_holding

SECRET = "The quartermaster of Vintry Lane hides the brass key under the ninth flagstone."
DOC = f"""# Vintry Lane depot

{SECRET} Deliveries arrive on Tuesdays before 07:00 in the morning. The depot has 14 loading docks and 3 forklifts.

# Opening hours

The depot opens its loading bay to couriers who show a signed manifest at the gate.
"""
OTHER = """# Canteen

The canteen serves 240 lunches a day between 12:00 and 14:00. Vegetarian dishes are marked in green on the board.
"""


def _workspace(home, embedder, llm, tmp_path):
    """A workspace where the secret document was uploaded, asked about, rated, trained on and evaluated."""
    from archivist.finetune import datasets
    from archivist.ingest.pipeline import ingest_paths
    from archivist.ingest.uploads import save_upload
    from archivist.retrieval.answer import answer_json, ask
    from archivist.retrieval.evaluation import store_evaluation
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    ws = open_checked(Settings.from_env(home=home))
    path, name = save_upload(ws, "depot.md", DOC.encode())
    [doc] = ingest_paths(ws, [path], names=[name], embedder=embedder, progress=False)
    (tmp_path / "canteen.md").write_text(OTHER)
    ingest_paths(ws, [tmp_path / "canteen.md"], embedder=embedder, progress=False)
    # delete-and-readd once: an old version's pages are freed without being zeroed
    a = ask(ws, "Where does the quartermaster hide the brass key?", llm=llm, embedder=embedder, mode="extractive")
    assert a.citations and a.citations[0].document == "depot.md"
    cid = conversations.start_conversation(ws, None)
    conversations.add_message(ws, cid, None, "user", "Where does the quartermaster hide the brass key?")
    conversations.add_message(ws, cid, None, "assistant", a.answer, citations=answer_json(a)["citations"])
    feedback.record_feedback(ws, None, a.question, a.answer, rating=1, citations=a.citations, collection="default")
    ds = datasets.build_dataset(ws, ["docs"], embedder=embedder, progress=False)
    assert SECRET.encode() in b"".join(f.read_bytes() for f in ds.path.iterdir())
    store_evaluation(ws, "answers", "depot-set", {"per_question": [{"question": "key?", "answer": a.answer,
                                                                     "passages": [c.text for c in a.citations]}]}, user=None)
    folder = tmp_path / f"adapter-{home.name}"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    lineage = {"dataset": {"name": ds.name}, "documents": ds.manifest["documents"], "collections": ["default"],
               "settings": {"data": ["docs"], "method": "lora", "max_steps": 1}}
    metrics = {"n": 1, "better": True, "reason": "test", "base": {}, "adapter": {},
               "examples": [{"question": "key?", "gold": SECRET, "base": "", "adapter": ""}]}
    adapters.register(ws, "depot-v1", folder, ws.settings.llm, metrics, lineage)
    return ws, doc


@pytest.mark.slow
def test_erase_leaves_the_text_in_no_file_of_the_workspace(tmp_path, embedder, llm, capsys, monkeypatch):
    from archivist.cli import main

    ws, doc = _workspace(tmp_path / "ws", embedder, llm, tmp_path)
    needles = erased_sentences(DOC)
    assert SECRET.encode() in needles
    before = list(files_holding(ws.home, needles))
    assert any(p.startswith("uploads/") for p in before) and any(p.startswith("datasets/") for p in before)
    assert any(p.startswith("adapters/") for p in before) and any(p.startswith("archivist.db") for p in before)
    ws.close()

    monkeypatch.setenv("ARCHIVIST_HOME", str(tmp_path / "ws"))
    assert main(["erase", "depot.md"]) == 0
    out = capsys.readouterr().out
    assert "erased depot.md" in out and "now STALE" in out and "depot-v1" in out
    assert "archivist finetune --retrain depot-v1" in out

    leftover = [str(p) for p in (tmp_path / "ws").rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leftover == []
    assert list(files_holding(tmp_path / "ws", needles)) == []

    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    with open_checked(Settings.from_env()) as w:
        assert w.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 1
        assert w.db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 0
        assert adapters.get(w, "depot-v1")["stale"] == "trained on a deleted document: depot.md"
        [rec] = audit.read(w, action="document.erased")
        assert rec["detail"]["stale_adapters"] == ["depot-v1"] and rec["detail"]["feedback_deleted"] == 1
        assert audit.verify(w).ok
        from archivist.retrieval.search import search

        assert all(h.document != "depot.md" for h in search(w, "quartermaster brass key flagstone", embedder=embedder))
    assert main(["adapters"]) == 0
    assert "STALE: trained on a deleted document: depot.md" in capsys.readouterr().out


@pytest.mark.slow
def test_plain_delete_leaves_copies_that_erase_would_reach(tmp_path, embedder, llm):
    """The control: without erase, the grep finds the text (in uploads, datasets, the adapter's
    metrics, feedback), so the test above can fail."""
    from archivist.ingest.pipeline import delete_document

    ws, doc = _workspace(tmp_path / "ws", embedder, llm, tmp_path)
    delete_document(ws, doc.document_id)
    left = list(files_holding(ws.home, [SECRET.encode()]))
    assert any(p.startswith("uploads/") for p in left) and any(p.startswith("datasets/") for p in left)
    assert any(p.startswith("adapters/") for p in left)
    ws.close()


def _stale_adapter(ws, tmp_path, name="hr-v1"):
    ws.collection_id("default", create=True)
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    rec = adapters.register(ws, name, folder, ws.settings.llm, {"better": True, "reason": "t"},
                            {"dataset": {"name": "d"}, "documents": [{"id": 7, "path": "a.md", "collection": "default"}],
                             "collections": ["default"]})
    assert rec["active"]
    assert adapters.learned_from(ws, 7) == [name] and adapters.learned_from(ws, 8) == []
    from archivist.workspace import transaction

    with transaction(ws.db):
        adapters.mark_stale(ws, [name], "trained on a deleted document: a.md")


def test_the_block_setting_stops_stale_adapters_from_answering(ws, tmp_path):
    import dataclasses

    _stale_adapter(ws, tmp_path)
    assert adapters.resolve(ws, None, "hr-v1").name == "hr-v1"  # allowed by default, listed as stale
    assert adapters.resolve(ws, None, "active").name == "hr-v1"
    ws.settings = dataclasses.replace(ws.settings, stale_adapters="block")
    with pytest.raises(adapters.StaleAdapter, match="stale.*--retrain hr-v1"):
        adapters.resolve(ws, None, "hr-v1")
    assert adapters.resolve(ws, None, "active") is None  # the chat falls back to the base model


def test_api_models_show_an_adapter_as_stale(ws, tmp_path):
    from archivist.api.models import list_models

    _stale_adapter(ws, tmp_path)
    [m] = [m for m in list_models(ws, 0, "admin") if m["id"] == "hr-v1"]
    assert m["stale"] == "trained on a deleted document: a.md"


def test_retrain_takes_the_stale_adapters_settings_under_a_new_name(ws, tmp_path, monkeypatch):
    import argparse

    from archivist.finetune.cli import _retrain_config

    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    adapters.register(ws, "hr-v1", folder, ws.settings.llm, {"better": True},
                      {"dataset": {"name": "d"}, "documents": [], "collections": [],
                       "settings": {"data": ["docs"], "rank": 4, "max_steps": 3, "dataset": "old-ds", "name": "hr-v1"}})
    cfg = _retrain_config(argparse.Namespace(retrain="hr-v1", home=str(ws.home)))
    assert (cfg.name, cfg.rank, cfg.max_steps, cfg.dataset, cfg.data) == ("hr-v1-r2", 4, 3, None, ["docs"])


# The erase CLI, killed (SIGKILL, by itself) once the document is deleted and before the rest:
# the audit record, the stale marks, the lexical rebuild and the compaction.
_KILLED_AFTER_DELETE = """
import os, signal, sys
from archivist.retrieval import lexicon_store
lexicon_store.sync = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
from archivist.cli import main
sys.exit(main(["erase", "depot.md"]))
"""


@pytest.mark.slow
def test_an_erase_killed_after_the_delete_is_finished_by_running_it_again(tmp_path, embedder, llm, capsys, monkeypatch):
    """A cut-short erase is an interrupted job; `archivist erase` of the same name finishes it (the
    document is already gone): one audit record, the adapter stale, the text in no file."""
    import os
    import signal
    import subprocess
    import sys

    from archivist.cli import main
    from conftest import REPO

    home = tmp_path / "ws"
    ws, doc = _workspace(home, embedder, llm, tmp_path)
    ws.close()
    env = {**os.environ, "ARCHIVIST_HOME": str(home)}
    env.pop("ARCHIVIST_USER", None)
    child = subprocess.run([sys.executable, "-c", _KILLED_AFTER_DELETE], env=env, cwd=REPO, capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    left = list(files_holding(home, [SECRET.encode()]))
    assert left, "the kill came before the compaction, so some copy of the text is still on disk"

    monkeypatch.setenv("ARCHIVIST_HOME", str(home))
    assert main(["jobs", "--json"]) == 0
    [job] = [j for j in json.loads(capsys.readouterr().out) if j["kind"] == "erase"]
    assert job["state"] == "interrupted" and "archivist jobs resume" in job["error"]
    assert main(["erase", "depot.md"]) == 0  # the document is gone: the job is found and finished
    out = capsys.readouterr().out
    assert "erased depot.md" in out and "depot-v1" in out and "feedback: 1 deleted" in out
    assert list(files_holding(home, erased_sentences(DOC))) == []

    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    with open_checked(Settings.from_env()) as w:
        [rec] = audit.read(w, action="document.erased")
        assert rec["detail"]["job"] == job["id"] and rec["detail"]["stale_adapters"] == ["depot-v1"]
        assert adapters.get(w, "depot-v1")["stale"] == "trained on a deleted document: depot.md"
        assert audit.verify(w).ok
    assert main(["jobs", "--json"]) == 0
    [job] = [j for j in json.loads(capsys.readouterr().out) if j["kind"] == "erase"]
    assert job["state"] == "done" and job["resumed"] == 1
    assert main(["erase", "depot.md"]) != 0  # nothing left to finish: an unknown document again
    assert "no document 'depot.md'" in capsys.readouterr().err


def test_erase_marks_an_adapted_retriever_that_learned_the_document_stale(ws, tmp_path, embedder):
    from archivist.api.models import list_models
    from archivist.finetune.embedders import list_embedders
    from archivist.ingest.pipeline import ingest_paths

    (tmp_path / "depot.md").write_text(DOC)
    (tmp_path / "canteen.md").write_text(OTHER)
    depot, canteen = ingest_paths(ws, [tmp_path / "depot.md", tmp_path / "canteen.md"], embedder=embedder, progress=False)
    for name, docs in (("emb-depot", {"train": [depot.document_id], "held_out": [canteen.document_id]}),
                       ("emb-canteen", {"train": [canteen.document_id], "held_out": []})):
        (ws.home / "embedders" / name).mkdir(parents=True)
        (ws.home / "embedders" / name / "archivist.json").write_text(json.dumps(
            {"kind": "retriever", "name": name, "base": ws.settings.embedder, "collections": ["default"], "documents": docs}))
    report = erase(ws, "depot.md")
    assert report.embedders == ["emb-depot"] and report.leftovers == []
    stale = {e["name"]: e.get("stale") for e in list_embedders(ws)}
    assert stale == {"emb-depot": "trained on a deleted document: depot.md", "emb-canteen": None}
    [m] = [m for m in list_models(ws, 0, "admin") if m["id"] == "emb-depot"]
    assert m["kind"] == "embedding" and m["stale"] == "trained on a deleted document: depot.md"
    [rec] = audit.read(ws, action="document.erased")
    assert rec["detail"]["stale_embedders"] == ["emb-depot"]


def test_a_members_erase_reaches_only_their_own_copies_and_tells_nothing_of_others(ws, tmp_path, embedder):
    """A security test's finding: a member with write on one collection ingested a guessed sentence,
    erased it, and the counts said whether any other user had it (and destroyed those copies); the
    leftover scan named another collection's upload. Now a member's erase looks for the text in
    their own data only, copies citing the document still go from everyone's, shared upload files
    stay while another document uses them, and the report names only what the member may see."""
    from archivist import access
    from archivist.finetune import datasets
    from archivist.ingest.pipeline import document_source, ingest_paths
    from archivist.ingest.uploads import save_upload
    from archivist.retrieval.evaluation import store_evaluation

    secret = "The launch code is ZEBRA-7731, kept in the blue binder."
    (tmp_path / "alpha.md").write_text(f"# Launch\n\n{secret}\n")
    ingest_paths(ws, [tmp_path / "alpha.md"], collection="alpha", embedder=embedder, progress=False)
    for name, level in (("alice", None), ("bob", None)):
        access.add_user(ws, name, "member")
    access.grant(ws, "alice", "alpha", "read")
    access.grant(ws, "bob", "beta", "write")
    cid = conversations.start_conversation(ws, "alice")
    conversations.add_message(ws, cid, "alice", "user", "What is the launch code?")
    conversations.add_message(ws, cid, "alice", "assistant", secret, citations=[{"n": 1, "document": "alpha.md", "collection": "alpha"}])
    feedback.record_feedback(ws, "alice", "What is the launch code?", secret, rating=1, collection="alpha")
    store_evaluation(ws, "answers", "alice-set", {"per_question": [{"question": "code?", "answer": secret}]}, user="alice")
    datasets.build_dataset(ws, ["docs"], collections=["alpha"], embedder=embedder, progress=False, name="admin-alpha")
    shared_path, shared_name = save_upload(ws, "budget.md", b"# Budget\n\nThe budget for 2026 is EUR 1.2 million overall.\n")
    ingest_paths(ws, [shared_path], names=[shared_name], collection="alpha", embedder=embedder, progress=False)
    ingest_paths(ws, [shared_path], names=[shared_name], collection="beta", embedder=embedder, progress=False, user="bob")

    # bob's guess, ingested into his own collection and erased
    (tmp_path / "guess.md").write_text(f"# Guess\n\n{secret}\n")
    ingest_paths(ws, [tmp_path / "guess.md"], collection="beta", embedder=embedder, progress=False, user="bob")
    r = erase(ws, "guess.md", "bob", "beta")
    assert (r.feedback_deleted, r.feedback_anonymized, r.messages, r.evaluations) == (0, 0, 0, 0)
    assert r.dataset_examples == {} and r.leftovers == [] and not r.leftovers_checked
    assert conversations.messages(ws, cid, "alice")[1]["content"] == secret  # alice's answer untouched
    assert feedback.list_feedback(ws, "alice")[0]["answer"] == secret
    # bob's own copy of the shared upload goes; alpha's document still has its file
    erase(ws, "budget.md", "bob", "beta")
    alpha_budget = next(d for d in ws.db.execute("SELECT id FROM documents WHERE path = 'budget.md'"))[0]
    assert document_source(ws, alpha_budget) is not None and shared_path.exists()

    # an admin's erase of the original reaches every copy, and checks every file
    r = erase(ws, "alpha.md", None, "alpha")
    assert r.messages == 1 and r.feedback_deleted == 1 and r.evaluations == 1 and r.dataset_examples == {"admin-alpha": 1}
    assert r.leftovers_checked and r.leftovers == []
    assert conversations.messages(ws, cid, "alice")[1]["content"] == "[erased]"
