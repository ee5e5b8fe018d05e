"""An erase and the savers of copies running at once; the audit log's quote check; erasing deleted accounts.

The races are made exact: the erase runs in a thread of its own (its own connection to the real
SQLite file) and is held, by an event, between its scrub of the copies (step 1) and the deletion of
the document (step 2), which is when a saver used to slip a copy through: the scrub had passed, and
the `document.erased` record the savers checked was not yet written.
"""

from __future__ import annotations

import json
import threading

import pytest
from conftest import ingest_texts

from archivist.finetune import dataset_store
from archivist.finetune.dataset_store import DatasetError, Example

SECRET = "The merger with Orion Partners closes on the ninth of March for forty two million."
OTHER = "The canteen opens at eight in the morning and closes at three in the afternoon."


def _held_erase(monkeypatch, document: str):
    """Start `erase(document)` as the local admin in a thread, held after its scrub; returns
    (scrubbed, go, done): wait on `scrubbed`, set `go` to let it finish, join `done` (the thread),
    whose `.error` is what it raised, if anything."""
    from archivist.ingest import erase as erase_module
    from archivist.workspace import open_workspace

    scrubbed, go = threading.Event(), threading.Event()
    delete = erase_module._delete

    def held_delete(ws, doc, actor):
        scrubbed.set()
        assert go.wait(60), "the test never let the erase go on"
        return delete(ws, doc, actor)

    monkeypatch.setattr(erase_module, "_delete", held_delete)

    def run():
        ws = open_workspace()
        try:
            erase_module.erase(ws, document)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            done.error = e
        finally:
            ws.close()

    done = threading.Thread(target=run)
    done.error = None
    done.start()
    assert scrubbed.wait(120), "the erase never reached its scrub's end"
    return go, done


def _finished(go, done) -> None:
    go.set()
    done.join(120)
    assert not done.is_alive() and done.error is None, done.error


def test_a_dataset_saved_between_the_erase_scrub_and_its_record_is_refused(ws, embedder, tmp_path, monkeypatch):
    """Before: the save checked only the `document.erased` record, which the erase writes last; the
    dataset saved after the scrub kept the erased sentence in datasets/late/train.jsonl for good."""
    ingest_texts(ws, embedder, tmp_path / "docs", {"default": {"merger.md": SECRET, "canteen.md": OTHER}})
    doc_id = ws.db.execute("SELECT id FROM documents WHERE path = 'merger.md'").fetchone()[0]
    go, done = _held_erase(monkeypatch, "merger.md")
    train = [Example(messages=[{"role": "user", "content": "When does the merger close?"},
                               {"role": "assistant", "content": SECRET}], source="docs:extractive",
                     group=f"doc:{doc_id}", question="When does the merger close?", answer=SECRET, document_id=doc_id)]
    manifest = {"name": "late", "owner": "admin", "collections": ["default"], "documents": [{"id": doc_id, "path": "merger.md"}]}
    try:
        with pytest.raises(DatasetError, match="dataset 'late' not saved: merger.md was erased while it was built"):
            dataset_store.save_dataset(ws, "late", train, [], manifest)
    finally:
        _finished(go, done)
    assert not (ws.home / "datasets" / "late").exists()
    assert not any("Orion Partners" in f.read_text() for f in (ws.home / "datasets").rglob("*.jsonl"))
    # once the erase ended (its record written, its job done), a dataset from the other document saves
    ok = [Example(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": OTHER}],
                  source="docs:extractive", group="doc:x", question="q", answer=OTHER, document_id=doc_id + 1)]
    dataset_store.save_dataset(ws, "after", ok, [], {**manifest, "name": "after", "documents": [{"id": doc_id + 1}]})
    assert OTHER in (ws.home / "datasets" / "after" / "train.jsonl").read_text()


def test_an_answer_saved_between_the_erase_scrub_and_its_record_is_withheld(ws, embedder, tmp_path, monkeypatch):
    """The API (api/chat.py) and the app's chat page check `withhold_erased` in the transaction that
    saves an answer. Before: in the window it said nothing, and the saved answer kept the erased text."""
    from archivist.retrieval.answer import withhold_erased
    from archivist.retrieval.search import search

    ingest_texts(ws, embedder, tmp_path / "docs", {"default": {"merger.md": SECRET, "canteen.md": OTHER}})
    hits = search(ws, "When does the Orion merger close?", k=2, embedder=embedder)
    assert {h.document for h in hits} >= {"merger.md"}
    go, done = _held_erase(monkeypatch, "merger.md")
    try:
        with pytest.raises(LookupError, match="merger.md was erased while the answer was prepared"):
            withhold_erased(ws, hits)
        canteen = [h for h in hits if h.document == "canteen.md"]
        withhold_erased(ws, canteen)  # an answer drawn from the other document alone is saved
    finally:
        _finished(go, done)
    with pytest.raises(LookupError, match="merger.md was erased"):  # and after, through the record
        withhold_erased(ws, hits)


def test_a_cancelled_erase_leaves_the_document_usable(ws, embedder, tmp_path):
    """A cancelled erase job is no mark: the user chose to keep the document."""
    from archivist import jobs
    from archivist.retrieval.answer import withhold_erased
    from archivist.retrieval.search import search

    ingest_texts(ws, embedder, tmp_path / "docs", {"default": {"merger.md": SECRET}})
    doc_id = ws.db.execute("SELECT id FROM documents WHERE path = 'merger.md'").fetchone()[0]
    job = jobs.create(ws, "erase", "admin", spec={"document": "merger.md", "document_id": doc_id, "collection": "default"})
    hits = search(ws, "Orion merger", k=1, embedder=embedder)
    with pytest.raises(LookupError, match="merger.md was erased"):
        withhold_erased(ws, hits)
    jobs.end(ws, job.id, "cancelled")
    withhold_erased(ws, hits)
    assert json.loads(ws.db.execute("SELECT spec FROM jobs WHERE id = ?", (job.id,)).fetchone()[0])["document_id"] == doc_id


def test_the_audit_log_is_read_once_for_every_sentence_an_erase_looks_for(ws, monkeypatch):
    """`audit.quotes` (an admin's erase asks it when the database still holds the text). Before: one
    search of the whole log per sentence, 400 reads of the log here, thousands for a long document."""
    from archivist import audit

    sentences = [f"Clause {i} of the supply contract binds the buyer to \"net sixty\" payment terms." for i in range(400)]
    for i in range(30):
        audit.record(ws, "search", user="admin", detail={"query": f"what are the payment terms of contract {i}?"})
    reads: list[str] = []
    ws.db.set_trace_callback(lambda sql: reads.append(sql) if "FROM audit" in sql else None)
    assert audit.quotes(ws, sentences) is False
    assert len(reads) == 1
    audit.record(ws, "search", user="admin", detail={"query": f"why does {sentences[217]} matter"})
    monkeypatch.setattr(audit, "_QUOTE_BATCH", 200)  # the log searched a few records at a time: found in any batch
    reads.clear()
    assert audit.quotes(ws, sentences) is True and len(reads) == 1
    assert audit.quotes(ws, sentences[:217] + ["Clause 217 of the supply contract binds the seller."]) is False
    ws.db.set_trace_callback(None)


def _two_former_maras(ws) -> tuple[int, int]:
    """Two people named mara, each added, giving feedback and deleted; returns their feedback ids."""
    from archivist import access, feedback

    ids = []
    for q in ("First mara asks about her medical leave dates?", "Second mara asks about her visa renewal?"):
        access.add_user(ws, "mara", by="admin")
        ids.append(feedback.record_feedback(ws, "mara", q, "An answer.", rating=1))
        access.delete_user(ws, "mara", by="admin")
    return ids[0], ids[1]


def _formers(ws, fid: int) -> str:
    return ws.db.execute("SELECT former_owner FROM feedback WHERE id = ?", (fid,)).fetchone()[0]


def test_a_name_two_deleted_accounts_had_is_refused_and_each_is_erased_by_its_own_name(ws):
    """Before: `users erase mara`, no current user of the name, erased both former maras at once."""
    from archivist import feedback, user_erase

    first, second = _two_former_maras(ws)
    one, two = _formers(ws, first), _formers(ws, second)
    assert one != two and one.startswith("mara#deleted-") and two.startswith("mara#deleted-")
    with pytest.raises(ValueError, match=rf"2 deleted accounts had that name \({one}, {two}\).*users erase '{one}'"):
        user_erase.erase_user(ws, "mara", by="admin")
    assert sorted(f["id"] for f in feedback.list_feedback(ws, "admin")) == [first, second]  # nothing erased
    report = user_erase.erase_user(ws, two, by="admin")
    assert report.feedback == 1 and [f["id"] for f in feedback.list_feedback(ws, "admin")] == [first]


def test_the_admin_page_erases_a_deleted_account(ws):
    """Before: the Admin page listed current users only, so a deleted account could be erased from
    the command line alone. Now its name is typed; a name several deleted accounts had is refused there
    with the names to use."""
    import os
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from archivist import auth, feedback

    os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    first, second = _two_former_maras(ws)
    one = _formers(ws, first)
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "ui" / "app.py"), default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, "alice")
    at.run()
    at = at.switch_page("views/admin.py").run()
    at.text_input(key="erase-deleted-name").input("mara").run()
    at.button(key="erase-deleted").click().run()
    at.button(key="erase-deleted-yes").click().run()
    assert not at.exception
    assert any("2 deleted accounts had that name" in e.value.replace("\\", "") for e in at.error), [e.value for e in at.error]
    at.text_input(key="erase-deleted-name").input(one).run()
    at.button(key="erase-deleted").click().run()
    at.button(key="erase-deleted-yes").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [f["id"] for f in feedback.list_feedback(ws, "admin")] == [second]
    erased = ws.db.execute("SELECT target, user FROM audit WHERE action = 'user.erased'").fetchall()
    assert [tuple(r) for r in erased] == [(one, "alice")]


@pytest.mark.slow  # the chat model generates
def test_the_chat_page_does_not_save_an_answer_drawn_from_a_document_being_erased(ws, embedder, tmp_path, monkeypatch):
    """The app's chat page saved every answer it prepared, with no check at all: an answer drawn from
    a document whose erase had started (its job under way, between its scrub and its record) kept the
    erased text in the conversation. Now it is checked and saved in one transaction, like the API's."""
    import os
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from archivist import auth, conversations, jobs

    os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")
    monkeypatch.setenv("ARCHIVIST_MAX_NEW_TOKENS", "16")
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    ingest_texts(ws, embedder, tmp_path / "docs", {"facilities": {"parking.md": "# Visitor parking\n\nVisitors park "
                 "in lot C behind the warehouse. The gate code for lot C is 4417.\n"}}, "alice")
    doc_id = ws.db.execute("SELECT id FROM documents WHERE path = 'parking.md'").fetchone()[0]
    jobs.create(ws, "erase", "alice", spec={"document": "parking.md", "document_id": doc_id, "collection": "facilities"})
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "ui" / "app.py"), default_timeout=180)
    at.session_state["_token"] = auth.create_session(ws, "alice")
    at.run()
    at.chat_input(key="chat-input").set_value("What is the gate code for visitor parking in lot C?").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("parking.md was erased while the answer was prepared" in e.value.replace("\\", "") for e in at.error), \
        [e.value for e in at.error]
    (conv,) = conversations.list_conversations(ws, "alice")
    assert [m["role"] for m in conversations.messages(ws, conv["id"], "alice")] == ["user"]


def test_an_evaluation_run_that_drew_on_a_document_being_erased_is_not_stored(ws, embedder, tmp_path):
    """`archivist eval answers` stores its answers (quotes of the passages); the store had no erase
    check: a run that quoted a document erased while it ran was stored after the erase's scrub."""
    from archivist import jobs
    from archivist.retrieval.evaluate import Question, evaluate_answers
    from archivist.retrieval.evaluation import store_evaluation

    ingest_texts(ws, embedder, tmp_path / "docs", {"default": {"merger.md": SECRET}})
    doc_id = ws.db.execute("SELECT id FROM documents WHERE path = 'merger.md'").fetchone()[0]
    results = evaluate_answers(ws, [Question("When does the Orion merger close?", answer="ninth of March")],
                               embedder=embedder, mode="extractive")
    assert results["documents"] == [doc_id]
    job = jobs.create(ws, "erase", "admin", spec={"document": "merger.md", "document_id": doc_id, "collection": "default"})
    with pytest.raises(ValueError, match="evaluation not stored: merger.md was erased while it ran"):
        store_evaluation(ws, "answers", "set.jsonl", results, user="admin")
    assert ws.db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0] == 0
    jobs.end(ws, job.id, "cancelled")  # the erase called off: the run is stored
    assert store_evaluation(ws, "answers", "set.jsonl", results, user="admin") > 0
