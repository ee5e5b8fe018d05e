"""The browser app's sign-in, first admin and navigation, run headless with Streamlit's AppTest."""

from __future__ import annotations

import os

from pathlib import Path

import pytest

from archivist import access, auth

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")


def app(token: str | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    if token:
        at.session_state["_token"] = token
    return at.run()


def nav_titles(at) -> list[str]:
    return [t.value for t in at.title]


def test_new_workspace_asks_for_first_admin_then_signs_in(ws):
    at = app()
    assert not at.exception
    assert [b.label for b in at.button] == ["Create admin account"]
    name, pw, again, _ = at.text_input  # and the setup code
    assert name.value == "admin"  # the CLI's passwordless admin is offered
    pw.set_value("first-admin-pw")
    again.set_value("different-pw")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["The two passwords differ."]
    assert auth.needs_first_admin(ws)
    at.text_input[1].set_value("first-admin-pw")
    at.text_input[2].set_value("first-admin-pw")
    at.text_input[3].set_value(auth.issue_setup_code(ws))  # `archivist ui` prints it
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert nav_titles(at) == ["Chat"]
    assert not auth.needs_first_admin(ws) and auth.verify_password(ws, "admin", "first-admin-pw")
    token = at.session_state["_token"]
    assert auth.session_user(ws, token) == "admin"
    assert any("Signed in as" in c.value for c in at.sidebar.caption)
    at.switch_page("views/admin.py").run()
    assert nav_titles(at) == ["Admin"] and not at.exception


def test_sign_in_wrong_then_right_then_sign_out(ws):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    at = app()
    assert [b.label for b in at.button] == ["Sign in"]
    at.text_input[0].set_value("alice")
    at.text_input[1].set_value("wrong-pass")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["wrong user name or password"]
    at.text_input[1].set_value("alice-pass-1")
    at.button[0].click().run()
    assert nav_titles(at) == ["Chat"]
    token = at.session_state["_token"]
    at.sidebar.button(key="sign-out").click().run()
    assert [b.label for b in at.button] == ["Sign in"]
    assert auth.session_user(ws, token) is None  # the session row is gone, not just the browser state


def test_expired_or_foreign_token_shows_sign_in(ws):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    expired = auth.create_session(ws, "alice", seconds=-1)
    at = app(expired)
    assert [b.label for b in at.button] == ["Sign in"] and "_token" not in at.session_state
    at = app("not-a-token")
    assert [b.label for b in at.button] == ["Sign in"]


def test_member_pages_render_and_admin_page_is_absent(ws):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    at = app(auth.create_session(ws, "bob"))
    for page, title in [("views/documents.py", "Documents"), ("views/finetune.py", "Fine-tune"),
                        ("views/evaluation.py", "Evaluation"), ("views/chat.py", "Chat")]:
        at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        assert nav_titles(at)[0] == title
    assert any("(member)" in c.value for c in at.sidebar.caption)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("views/admin.py")  # not in a member's navigation at all


def test_ended_session_forgets_the_user_and_the_next_user_starts_clean(ws):
    # bob's session ends without "Sign out" (an admin sets his password); carol signs in in the same tab
    from archivist import conversations

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    auth.create_user(ws, "carol", "carol-pass-12", by="alice")
    conv = conversations.start_conversation(ws, "bob", title="bob's secret plans")
    conversations.add_message(ws, conv, "bob", "user", "What is in bob's drawer?")
    at = app(auth.create_session(ws, "bob"))
    at.switch_page("views/chat.py").run()
    assert at.session_state["conv"] == conv and [m.name for m in at.chat_message] == ["user"]
    auth.set_password(ws, "bob", "bob-new-pass-1", by="alice")
    at.run()
    assert [b.label for b in at.button] == ["Sign in"]
    assert [i.value for i in at.info] == ["Your session ended; sign in again."]
    assert "conv" not in at.session_state and "_token" not in at.session_state
    at.text_input[0].set_value("carol")
    at.text_input[1].set_value("carol-pass-12")
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]  # was: LookupError: no conversation <bob's>
    assert nav_titles(at) == ["Chat"] and not any("session ended" in i.value for i in at.info)
    assert any("Signed in as **carol**" in c.value for c in at.sidebar.caption)
    assert at.session_state["conv"] is None and len(at.chat_message) == 0  # none of bob's conversation
    assert "Conversation" not in [s.label for s in at.sidebar.selectbox]  # carol has none


def test_deleted_user_sees_why_and_explicit_sign_out_says_nothing(ws):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "dave", "dave-pass-12", by="alice")
    at = app(auth.create_session(ws, "dave"))
    assert nav_titles(at) == ["Chat"]
    access.delete_user(ws, "dave", by="alice")
    at.run()
    assert [i.value for i in at.info] == ["Your session ended; sign in again."]
    at = app(auth.create_session(ws, "alice"))
    at.sidebar.button(key="sign-out").click().run()
    assert [b.label for b in at.button] == ["Sign in"] and not at.info  # she chose to leave: no note


def test_a_change_of_user_by_any_route_drops_the_previous_users_keys(ws):
    from archivist import conversations

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    conv = conversations.start_conversation(ws, "bob")
    at = app(auth.create_session(ws, "bob"))
    at.switch_page("views/chat.py").run()
    assert at.session_state["conv"] == conv
    at.session_state["_token"] = auth.create_session(ws, "alice")  # a live token of someone else, no sign-out between
    at.run()
    assert not at.exception and at.session_state["conv"] is None  # not bob's conversation
    assert any("Signed in as **alice**" in c.value for c in at.sidebar.caption)
