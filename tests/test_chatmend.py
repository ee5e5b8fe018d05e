"""The chat page (AppTest, real tiny models) when an answer is cut short while it is written: a click or
another question in the same browser session ends the run, and the page says so instead of blaming a
reload; a second question is answered and the first stays, marked as stopped."""

from __future__ import annotations

import threading
import time

import pytest

from archivist import auth, conversations
from conftest import ingest_texts
from test_ui_chat import PARKING
from test_ui_members import app

pytestmark = pytest.mark.slow  # the chat model generates

FIRST = "What is the gate code for visitor parking in lot C?"
CUT = "Explain in great detail everything about visitor parking, lot A, lot C and the gate, step by step."
THIRD = "Where do visitors park?"


def _chat(ws, user: str):
    """The chat page, signed in as `user` (test_ui_members.app: the page the app opens on)."""
    return app(auth.create_session(ws, user))


def _stored(ws) -> list[tuple[str, str]]:
    (conv,) = conversations.list_conversations(ws, "alice")
    return [(m["role"], m["content"]) for m in conversations.messages(ws, conv["id"], "alice")]


def _click_while_drafting() -> None:
    """Do what a click in the browser does while the answer's draft is shown: ask the running script to
    rerun (with the widgets' states a click sends; the chat box is empty again). The harness reaches into
    AppTest's runner for that; the page itself runs as it does on a server."""
    from streamlit.runtime.scriptrunner_utils.script_requests import RerunData
    from streamlit.proto.WidgetStates_pb2 import WidgetStates

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runner = next((t._target.__self__ for t in threading.enumerate() if t.name == "ScriptRunner.scriptThread"), None)
        if runner is not None and any("Draft" in str(m) for m in list(runner.forward_msgs())):
            runner.request_rerun(RerunData(widget_states=WidgetStates()))
            return
        time.sleep(0.005)


def _captions(message) -> str:
    return " ".join(c.value for c in message.caption)


def test_an_answer_stopped_by_a_click_says_so_and_a_second_question_is_answered(ws, embedder, tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHIVIST_MAX_NEW_TOKENS", "24")
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    ingest_texts(ws, embedder, tmp_path, {"facilities": {"parking.md": PARKING}}, "alice")
    at = _chat(ws, "alice")
    at.chat_input(key="chat-input").set_value(FIRST).run()  # answered in full: the models are loaded now
    assert not at.exception and [m.name for m in at.chat_message] == ["user", "assistant"]

    # the run writing the next answer (up to the default 200 tokens) is asked to rerun at its first draft words
    monkeypatch.delenv("ARCHIVIST_MAX_NEW_TOKENS")
    clicker = threading.Thread(target=_click_while_drafting, daemon=True)
    clicker.start()
    at.chat_input(key="chat-input").set_value(CUT).run()
    clicker.join(5)
    assert [r for r, _ in _stored(ws)] == ["user", "assistant", "user"], "the run was not cut mid-answer"
    assert "stopped because you clicked something" in _captions(at.chat_message[2])  # the rerun the click made
    monkeypatch.setenv("ARCHIVIST_MAX_NEW_TOKENS", "24")

    # a reload is a new browser session: it cannot know, and keeps the old words
    reloaded = _chat(ws, "alice")
    cut = reloaded.chat_message[2]
    assert cut.text[0].value == CUT and "reloaded or left" in _captions(cut)

    # the same session asks another question: the cut one stays, says it was stopped, and the new one is answered
    at.chat_input(key="chat-input").set_value(THIRD).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [m.name for m in at.chat_message] == ["user", "assistant", "user", "user", "assistant"]
    cut = at.chat_message[2]
    assert cut.text[0].value == CUT
    assert "stopped because you clicked something, asked another question" in _captions(cut)
    assert "reloaded" not in _captions(cut)
    assert at.chat_message[3].text[0].value == THIRD and at.chat_message[4].text
    assert [r for r, _ in _stored(ws)] == ["user", "assistant", "user", "user", "assistant"]
    assert not [b for b in at.button if b.label == "Ask again"]  # only an unanswered last question offers it

    # a thumb on the answer reruns the page: the words stay with the cut question
    at.chat_message[4].feedback[0].set_value(1).run()
    assert "stopped because you clicked" in _captions(at.chat_message[2])
