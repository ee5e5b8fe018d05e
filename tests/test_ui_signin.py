"""The browser app's sign-in, first admin and navigation, run headless with Streamlit's AppTest."""

from __future__ import annotations

import os

from pathlib import Path

import pytest

from archivist import auth

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
    name, pw, again = at.text_input
    assert name.value == "admin"  # the CLI's passwordless admin is offered
    pw.set_value("first-admin-pw")
    again.set_value("different-pw")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["The two passwords differ."]
    assert auth.needs_first_admin(ws)
    at.text_input[1].set_value("first-admin-pw")
    at.text_input[2].set_value("first-admin-pw")
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
