"""An eighth hostile member (and two admins at once) against adapter delete, on real workspaces (SQLite,
the real Streamlit page under AppTest).

Found: the Fine-tune page's delete confirmation ("Yes, delete NAME") was kept under a key of the name
alone, and the Delete button forced the delete whenever the adapter was active when clicked. An admin
who confirmed the delete of a spare adapter, and clicked Delete after another admin had made that
adapter the one everyone's chat uses, deleted the active adapter: the page had never asked her to
(the active one needs the confirmation that names it active, adapters.delete's `force`).

An admin who set her own password on the Admin page (what she does when someone is guessing it) was
signed out by it, and her browser's device token (auth.device_token, an HMAC under the old password's
hash) ended with it: signing in again she waited on the stranger's failed sign-ins for her name, the
lockout the device cookie exists to prevent. Now that browser stays signed in with a new session and
device token; her sessions elsewhere still end.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import adapter_trained_on
from test_ui_members import app

from archivist import access, adapters, auth

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")


def test_a_delete_confirmed_for_a_spare_adapter_does_not_delete_it_once_another_admin_activated_it(ws, tmp_path):
    """Before: `spare` deleted with force, the chat switched to the base model, on a confirmation that
    never said it was the active adapter."""

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "carol", "carol-pass-1", role="admin", by="alice")
    access.create_collection(ws, "team", by="alice")
    adapter_trained_on(ws, tmp_path / "a", "team-tuned", ["team"])
    adapter_trained_on(ws, tmp_path / "b", "spare", ["team"])
    adapters.activate(ws, "team-tuned", user="alice")

    at = app(auth.create_session(ws, "alice"), "finetune")
    assert not at.exception, [e.value for e in at.exception]
    at.selectbox(key="ft-delete-pick").select("spare").run()
    sure = [c for c in at.checkbox if c.key.startswith("ft-delete-sure") and "spare" in c.label][0]
    assert "active adapter" not in sure.label
    sure.check().run()
    assert not at.button(key="ft-delete-go").disabled
    adapters.activate(ws, "spare", user="carol")  # another admin, in her own browser, meanwhile
    at.button(key="ft-delete-go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert adapters.active(ws, "alice") == "spare"  # still there, still what the chat uses
    assert not [s.value for s in at.success if "Deleted" in s.value]
    sure = [c for c in at.checkbox if c.key.startswith("ft-delete-sure") and "spare" in c.label][0]
    assert "it is the active adapter" in sure.label and not sure.value  # asked again, naming it active
    sure.check().run()
    at.button(key="ft-delete-go").click().run()  # confirmed as the active one: deleted, with force
    assert not at.exception and adapters.active(ws, "alice") is None
    assert "Deleted adapter spare." in [s.value for s in at.success]


def test_an_admin_who_sets_her_own_password_is_not_locked_out_by_a_strangers_guesses(ws):
    """Before: the page went to the sign-in form, and her sign-in with the new password was refused
    ("too many failed sign-ins for this name") while the stranger kept guessing."""
    from streamlit.testing.v1 import AppTest

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    elsewhere = auth.create_session(ws, "alice")  # her laptop, say
    t = [1_000_000.0]
    for _ in range(auth.FREE_FAILURES + 3):  # a stranger, guessing her name's password
        with pytest.raises(auth.AuthError):
            auth.sign_in(ws, "alice", "guess-1234", clock=lambda: t[0])
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["_token"] = auth.create_session(ws, "alice")
    at.run()
    at.switch_page("views/admin.py")
    at.run()
    at.selectbox(key="edit-user").set_value("alice").run()
    at.text_input(key="edit-pw-current-alice").set_value("alice-pass-1")
    at.text_input(key="edit-pw-alice").set_value("alice-new-pass-2")
    at.button(key="FormSubmitter:set-password-alice-Set password").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert auth.verify_password(ws, "alice", "alice-new-pass-2")
    assert auth.session_user(ws, elsewhere) is None  # her other sessions ended, as before
    assert auth.session_user(ws, at.session_state["_token"]) == "alice"  # this browser is still hers
    assert any("Your password is set" in x.value for x in at.toast)
    assert at.title[0].value == "Admin"  # still on the page, not the sign-in form
    # the cookie script written for this browser carries a device token of the new password: with it her
    # next sign-in counts its own failures, not the stranger's
    # (the script posts a one-time ticket to the cookie route, which sets the cookies HttpOnly: ui/cookies.py)
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from archivist.ui import cookies

    script = [e.proto.body for e in at.get("html") if cookies.COOKIE_ROUTE in e.proto.body][-1]
    with TestClient(Starlette(routes=[Route(cookies.COOKIE_ROUTE, cookies.cookie_route, methods=["POST"])])) as client:
        device = client.post(cookies.COOKIE_ROUTE, content=script.split("body: '")[1].split("'")[0]).cookies["archivist_device"]
    for _ in range(auth.FREE_FAILURES + 3):  # her current password, right, reset the name's count: he goes on
        with pytest.raises(auth.AuthError):
            auth.sign_in(ws, "alice", "guess-1234", clock=lambda: t[0])
    assert auth.sign_in(ws, "alice", "alice-new-pass-2", clock=lambda: t[0], device=device)
    with pytest.raises(auth.AuthError, match="too many failed sign-ins"):  # without it: the stranger's wait
        auth.sign_in(ws, "alice", "alice-new-pass-2", clock=lambda: t[0])
