"""The chat page with the real tiny models (AppTest): a streamed answer, its sources, history and feedback."""

from __future__ import annotations

import os

import json
from pathlib import Path

import pytest

from archivist import access, auth, conversations
from archivist.retrieval.answer import UNCERTAIN
from conftest import ingest_texts

pytestmark = pytest.mark.slow  # the chat model generates

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")
PARKING = ("# Visitor parking\n\nVisitors park in lot C behind the warehouse. The gate code for lot C is 4417. "
           "Parking in lot A is reserved for delivery trucks.\n")
LUNCH = "# Canteen\n\nThe canteen serves lunch from 11:30 to 14:00. Soup costs EUR 3.\n"


@pytest.fixture
def workspace_with_docs(ws, embedder, tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHIVIST_MAX_NEW_TOKENS", "24")  # a short answer keeps the test quick on a CPU
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    ingest_texts(ws, embedder, tmp_path, {"facilities": {"parking.md": PARKING}, "canteen": {"canteen.md": LUNCH}}, "alice")
    access.grant(ws, "bob", "canteen", "read", by="alice")
    return ws


def chat(ws, user: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["_token"] = auth.create_session(ws, user)
    return at.run()


def test_answer_cites_the_document_and_feedback_is_stored(workspace_with_docs):
    ws = workspace_with_docs
    at = chat(ws, "alice")
    assert [t.value for t in at.title] == ["Chat"] and not at.exception
    assert at.sidebar.selectbox(key="chat-collection").options == ["All my collections", "canteen", "facilities"]
    assert at.sidebar.selectbox(key="chat-adapter").options == ["base"]
    at.chat_input(key="chat-input").set_value("What is the gate code for visitor parking in lot C?").run()
    assert not at.exception, [e.value for e in at.exception]
    roles = [m.name for m in at.chat_message]
    assert roles == ["user", "assistant"]
    sources = [e for e in at.chat_message[1].expander if e.label.startswith("\\[1\\]")]
    assert sources and "parking\\.md" in sources[0].label  # the source, Markdown-escaped, names the document
    assert "4417" in sources[0].text[0].value  # the passage itself, as plain text
    answer = at.chat_message[1].text[0].value
    assert "4417" in answer  # the checked answer, not a draft: every sentence shown is supported by its source
    # stored per user: the conversation survives a new browser session
    (conv,) = conversations.list_conversations(ws, "alice")
    msgs = conversations.messages(ws, conv["id"], "alice")
    assert [m["role"] for m in msgs] == ["user", "assistant"] and msgs[1]["citations"][0]["document"] == "parking.md"
    # where a correction is written, the app says who it may reach
    assert "teach the model that answers everyone" in " ".join(c.value for c in at.chat_message[1].caption)
    at.chat_message[1].feedback[0].set_value(0).run()  # thumbs down
    row = ws.db.execute("SELECT f.question, f.answer, f.rating, f.citations, f.adapter, f.message_id, u.name FROM feedback f "
                        "JOIN users u ON u.id = f.user_id").fetchall()
    assert len(row) == 1 and row[0]["rating"] == -1 and row[0]["name"] == "alice" and row[0]["message_id"] == msgs[1]["id"]
    # the answer as the user read it: an uncertain answer's notice is the app's, not the answer
    assert row[0]["question"].startswith("What is the gate code") and row[0]["answer"] == answer
    assert not row[0]["answer"].startswith(UNCERTAIN) and msgs[1]["content"].endswith(answer)
    assert json.loads(row[0]["citations"])[0]["document"] == "parking.md"
    at.chat_message[1].feedback[0].set_value(1).run()  # changed its mind: the same row, now up
    assert ws.db.execute("SELECT COUNT(*), MAX(rating) FROM feedback").fetchone()[:] == (1, 1)
    at2 = chat(ws, "alice")
    assert [m.name for m in at2.chat_message] == ["user", "assistant"]  # history after a reload
    assert at2.chat_message[1].feedback[0].value == 1


def test_member_never_gets_unreadable_documents_cited(workspace_with_docs):
    ws = workspace_with_docs
    at = chat(ws, "bob")
    assert at.sidebar.selectbox(key="chat-collection").options == ["All my collections", "canteen"]
    at.chat_input(key="chat-input").set_value("What is the gate code for visitor parking in lot C?").run()
    assert not at.exception
    reply = at.chat_message[1]
    assert all("parking" not in e.label for e in reply.expander)
    stored = conversations.messages(ws, conversations.list_conversations(ws, "bob")[0]["id"], "bob")[1]
    assert all(c["document"] != "parking.md" for c in stored["citations"])
    assert all(p["document"] != "parking.md" for p in stored["passages"])
    assert "4417" not in stored["content"]
    assert stored["not_found"] == bool(reply.info)  # "not in the documents" is shown as such


def test_an_uncertain_answer_shows_the_closest_passage_as_such(workspace_with_docs, monkeypatch):
    """Uncertain (no quote is sure enough here): the page says what the CLI and the API say, the closest
    passage not confirmed to answer, in the notice, and shows the passage's sentence under it as it stands."""
    from archivist.retrieval.answer import UNCERTAIN
    from archivist.ui.core import md_escape

    monkeypatch.setenv("ARCHIVIST_ANSWER_MODE", "extractive")
    monkeypatch.setenv("ARCHIVIST_KEY_ANSWERED", "1.01")
    monkeypatch.setenv("ARCHIVIST_QUOTE_ANSWERED", "99")
    monkeypatch.setenv("ARCHIVIST_KEY_NOT_FOUND", "0")
    at = chat(workspace_with_docs, "alice")
    at.chat_input(key="chat-input").set_value("What is the gate code for visitor parking in lot C?").run()
    assert not at.exception, [e.value for e in at.exception]
    reply = at.chat_message[1]
    assert [w.value for w in reply.warning] == [f"**Uncertain.** {md_escape(UNCERTAIN)}"]
    stored = conversations.messages(workspace_with_docs, conversations.list_conversations(workspace_with_docs, "alice")[0]["id"],
                                    "alice")[1]
    assert stored["status"] == "uncertain" and stored["notice"] == UNCERTAIN
    quoted = reply.text[0].value
    assert stored["content"] == UNCERTAIN + "\n" + quoted and quoted.endswith("[1]")
    assert any(e.label.startswith("\\[1\\] parking\\.md — Visitor parking") for e in reply.expander)


def test_feedback_belongs_to_its_message_and_a_revoked_collection_is_withheld(workspace_with_docs, monkeypatch):
    """A second answer to the same question starts unrated (feedback is the message's, not the text's);
    once bob's read access to the canteen is revoked, his old answer from it is withheld on the page,
    in `conversations.messages` and in the history a follow-up is asked with; a question of spaces is
    not asked, and a question too long to ask stays on the page to be shortened."""
    monkeypatch.setenv("ARCHIVIST_ANSWER_MODE", "extractive")
    ws = workspace_with_docs
    question = "When does the canteen serve lunch?"
    at = chat(ws, "bob")
    at.chat_input(key="chat-input").set_value(question).run()
    assert not at.exception, [e.value for e in at.exception]
    at.chat_message[1].feedback[0].set_value(0).run()  # thumbs down on the first answer
    first = conversations.list_conversations(ws, "bob")[0]["id"]
    at.sidebar.button(key="new-chat").click().run()
    at.chat_input(key="chat-input").set_value(question).run()
    assert not at.exception and len(conversations.list_conversations(ws, "bob")) == 2
    assert at.chat_message[1].feedback[0].value is None  # the new answer: nobody rated it
    assert ws.db.execute("SELECT COUNT(*), MIN(rating) FROM feedback").fetchone()[:] == (1, -1)

    at.chat_input(key="chat-input").set_value("   ").run()  # only spaces: nothing asked, nothing stored
    assert not at.exception and len(at.chat_message) == 2
    too_long = "Why " + "really " * 700 + "is lunch at 11:30?"
    at.chat_input(key="chat-input").set_value(too_long).run()
    assert at.text_area(key="too-long").value == too_long and "Could not answer" in at.error[0].value
    assert len(conversations.messages(ws, conversations.list_conversations(ws, "bob")[0]["id"], "bob")) == 2
    assert len(conversations.list_conversations(ws, "bob")) == 2

    access.revoke(ws, "bob", "canteen", by="alice")
    kept = conversations.messages(ws, first, "bob")
    assert kept[1]["status"] == "withheld" and kept[1]["withheld"] == ["canteen"] and not kept[1]["citations"]
    assert "11:30" not in json.dumps(kept) and "11:30" not in json.dumps(conversations.history(ws, first, "bob"))
    at = chat(ws, "bob")
    at.sidebar.selectbox(key=next(k for k in (w.key for w in at.sidebar.selectbox) if k.startswith("conv-pick"))).select(first).run()
    assert not at.exception, [e.value for e in at.exception]
    reply = at.chat_message[1]
    assert any("no longer read" in i.value for i in reply.info) and not reply.text and not reply.expander


def test_an_empty_workspace_tells_an_admin_to_upload_and_a_member_to_ask_for_access(ws):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    assert [i.value for i in chat(ws, "alice").info] == ["There are no documents to ask about yet: upload some on the Documents page."]
    assert "Ask an admin for read access." in chat(ws, "bob").info[0].value
