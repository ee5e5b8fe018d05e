"""Access gaps around a leaked password and the app's cookies, on real workspaces (SQLite, the CLI's own
`main`, the API's ASGI stack, the Streamlit pages under AppTest, and `archivist ui` in Chromium).

Found: a password changed because it leaked left the user's API keys working (nothing on the CLI, in the
app or in auth offered to revoke them); the CLI could not set a password at all (`archivist users` had no
such action: "an admin sets one on the app's Admin page"); a member could not change her own password in
the app (only the Admin page set passwords); and the session and device cookies were written by the
page's JavaScript (`document.cookie = 'archivist_session=…'`), so they could not be HttpOnly and any
script in the page could read the session token.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest
from conftest import chromium_or_skip, ui_served

from archivist import auth, keys

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")


def _key_works(settings, key: str) -> int:
    """The HTTP status of GET /v1/models with `key`, through the API's real ASGI stack."""
    from starlette.testclient import TestClient

    from archivist.api.app import create_app

    with TestClient(create_app(settings)) as client:
        return client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code


def _app(token: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["_token"] = token
    return at.run()


def test_an_admin_reset_ends_her_sessions_and_asked_revokes_her_api_keys(ws, settings):
    """Before: set_password returned nothing and had no way to revoke keys: the leaked key kept working."""
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "nina", "nina-pass-1", by="alice")
    laptop = auth.create_session(ws, "nina")
    leaked, other = keys.create_key(ws, "nina"), keys.create_key(ws, "nina")
    admins = auth.create_session(ws, "alice")
    assert _key_works(settings, leaked) == 200

    kept = auth.set_password(ws, "nina", "nina-pass-2", by="alice")  # not asked: her keys stay
    assert kept == {"user": "nina", "sessions_ended": 1, "keys_revoked": []}
    assert auth.session_user(ws, laptop) is None and keys.user_for_key(ws, leaked) == "nina"

    phone = auth.create_session(ws, "nina")
    done = auth.set_password(ws, "nina", "nina-pass-3", by="alice", keep_session=admins, revoke_keys=True)
    assert done == {"user": "nina", "sessions_ended": 1, "keys_revoked": [leaked[:11], other[:11]]}
    assert auth.session_user(ws, phone) is None  # keep_session is only ever the actor's own: nina keeps none
    assert _key_works(settings, leaked) == 401 and keys.user_for_key(ws, other) is None
    assert auth.session_user(ws, admins) == "alice"  # the admin's own session is untouched
    from archivist import audit

    rec = audit.read(ws, by="alice", action="auth.password")[-1]
    assert rec["target"] == "nina" and rec["detail"] == {"sessions_ended": 1, "keys_revoked": [leaked[:11], other[:11]]}
    assert {r["target"] for r in audit.read(ws, by="alice", action="key.revoke")} == {leaked[:11], other[:11]}


def test_changing_her_own_password_keeps_this_session_and_ends_the_others(ws):
    """Before: auth.set_password ended every session of hers, this one too (no keep_session)."""
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "nina", "nina-pass-1", by="alice")
    here, elsewhere = auth.create_session(ws, "nina"), auth.create_session(ws, "nina")
    key = keys.create_key(ws, "nina")
    with pytest.raises(auth.AuthError, match="wrong user name or password"):
        auth.change_password(ws, "nina", "not-her-pass", "nina-pass-2", keep_session=here)
    assert auth.verify_password(ws, "nina", "nina-pass-1") and auth.session_user(ws, elsewhere) == "nina"
    done = auth.change_password(ws, "nina", "nina-pass-1", "nina-pass-2", keep_session=here, revoke_keys=True)
    assert done["sessions_ended"] == 1 and done["keys_revoked"] == [key[:11]]
    assert auth.session_user(ws, here) == "nina" and auth.session_user(ws, elsewhere) is None
    assert keys.user_for_key(ws, key) is None and auth.verify_password(ws, "nina", "nina-pass-2")


def test_the_cli_sets_a_password_and_revokes_keys_only_when_asked(ws, settings, cli, monkeypatch):
    """Before: `archivist users password` did not exist (argparse: invalid choice, exit 2)."""
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "nina", "nina-pass-1", by="alice")
    session, key = auth.create_session(ws, "nina"), keys.create_key(ws, "nina")
    auth.issue_setup_code(ws)  # left from an `archivist ui` started before: a password set uses it up

    monkeypatch.setattr(sys, "stdin", io.StringIO("nina-pass-2\n"))
    r = cli("users", "password", "nina", "--password-stdin")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "password of nina set; 1 browser sessions ended; API keys revoked: none"
    assert "--revoke-keys" in r.stderr  # the key still works, and it says how to end it
    assert auth.verify_password(ws, "nina", "nina-pass-2") and auth.session_user(ws, session) is None
    assert _key_works(settings, key) == 200 and not auth.has_setup_code(ws)

    monkeypatch.setattr(sys, "stdin", io.StringIO("nina-pass-3\n"))
    r = cli("users", "password", "nina", "--password-stdin", "--revoke-keys", "--json")
    assert r.returncode == 0, r.stderr
    import json

    assert json.loads(r.stdout) == {"user": "nina", "sessions_ended": 0, "keys_revoked": [key[:11]]}
    assert _key_works(settings, key) == 401

    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))  # refused, and nothing changes
    r = cli("users", "password", "nina", "--password-stdin", "--revoke-keys")
    assert r.returncode == 2 and "at least 8 characters" in r.stderr
    assert auth.verify_password(ws, "nina", "nina-pass-3")
    monkeypatch.setattr(sys, "stdin", io.StringIO("nina-pass-4\n"))  # a member may not set another's
    r = cli("users", "password", "alice", "--password-stdin", "--user", "nina")
    assert r.returncode == 2 and "admin" in r.stderr and auth.verify_password(ws, "alice", "alice-pass-1")


def test_the_admin_page_offers_to_revoke_the_keys_and_keeps_her_own_session(ws):
    """Before: the Admin page's password form had no such checkbox (KeyError on its key), and setting her
    own password replaced this browser's session with a new one."""
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "nina", "nina-pass-1", by="alice")
    ninas, key = auth.create_session(ws, "nina"), keys.create_key(ws, "nina")
    mine, my_key, my_laptop = auth.create_session(ws, "alice"), keys.create_key(ws, "alice"), auth.create_session(ws, "alice")
    at = _app(mine)
    at.switch_page("views/admin.py").run()
    at.selectbox(key="edit-user").set_value("nina").run()
    at.text_input(key="edit-pw-nina").set_value("nina-pass-2")
    at.checkbox(key="edit-revoke-nina").check()
    at.button(key="FormSubmitter:set-password-nina-Set password").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert any("their API keys were revoked" in t.value for t in at.toast)
    assert auth.session_user(ws, ninas) is None and keys.user_for_key(ws, key) is None

    at.selectbox(key="edit-user").set_value("alice").run()
    at.text_input(key="edit-pw-current-alice").set_value("alice-pass-1")  # her own: asked, as on the Account page
    at.text_input(key="edit-pw-alice").set_value("alice-pass-2")  # her keys not asked for: they stay
    at.button(key="FormSubmitter:set-password-alice-Set password").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert at.session_state["_token"] == mine and auth.session_user(ws, mine) == "alice"  # this session goes on
    assert auth.session_user(ws, my_laptop) is None and keys.user_for_key(ws, my_key) == "alice"
    assert at.title[0].value == "Admin"


def test_a_member_changes_her_own_password_on_the_account_page(ws):
    """Before: no page let a member change her password (switch_page: no such navigation page)."""
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "nina", "nina-pass-1", by="alice")
    here, elsewhere, key = auth.create_session(ws, "nina"), auth.create_session(ws, "nina"), keys.create_key(ws, "nina")
    at = _app(here)
    at.switch_page("views/account.py").run()
    current, new, again = at.text_input
    current.set_value("wrong-pass-1")
    new.set_value("nina-pass-2")
    again.set_value("nina-pass-2")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["wrong user name or password"]
    assert auth.verify_password(ws, "nina", "nina-pass-1") and auth.session_user(ws, elsewhere) == "nina"
    at.text_input[0].set_value("nina-pass-1")
    at.text_input[1].set_value("nina-pass-2")
    at.text_input[2].set_value("nina-pass-2")
    at.checkbox[0].check()
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert auth.verify_password(ws, "nina", "nina-pass-2")
    assert at.session_state["_token"] == here and auth.session_user(ws, here) == "nina"
    assert auth.session_user(ws, elsewhere) is None and keys.user_for_key(ws, key) is None
    assert at.title[0].value == "Account"


@pytest.mark.slow
def test_the_session_cookie_is_httponly_and_no_script_in_the_page_reads_it(tmp_path):
    """`archivist ui` in Chromium. Before: document.cookie held `archivist_session=<token>` (and the
    device token), both set by the page's JavaScript without HttpOnly."""
    import time

    chromium, sync_playwright = chromium_or_skip()
    home = tmp_path / "ws"
    with ui_served(home, tmp_path, ARCHIVIST_ADMIN_USER="alice", ARCHIVIST_ADMIN_PASSWORD="alice-pass-1") as url:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--headless=new", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(url)
            page.get_by_role("heading", name="Sign in").wait_for(timeout=60_000)
            page.get_by_label("User name").fill("alice")
            page.get_by_label("Password", exact=True).fill("alice-pass-1")
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("heading", name="Chat", exact=True, level=1).wait_for(timeout=60_000)
            deadline = time.monotonic() + 20  # the page posts its ticket as it renders
            while not {"archivist_session", "archivist_device"} <= {c["name"] for c in page.context.cookies()}:
                assert time.monotonic() < deadline, page.context.cookies()
                page.wait_for_timeout(200)
            jar = {c["name"]: c for c in page.context.cookies()}
            session = jar["archivist_session"]
            seen = page.evaluate("document.cookie")
            assert "archivist_session" not in seen and session["value"] not in seen and "archivist_device" not in seen
            assert session["httpOnly"] and session["sameSite"] == "Strict" and not session["secure"]  # http here
            assert jar["archivist_device"]["httpOnly"]
            from archivist.settings import Settings
            from archivist.workspace import open_workspace

            with open_workspace(Settings.from_env(home=home)) as ws:
                assert auth.session_user(ws, session["value"]) == "alice"  # the cookie is the live session
            page.reload()  # the server reads the HttpOnly cookie: still signed in
            page.get_by_role("heading", name="Chat", exact=True, level=1).wait_for(timeout=60_000)
            page.get_by_role("button", name="Sign out").click()
            page.get_by_role("heading", name="Sign in").wait_for()
            deadline = time.monotonic() + 20  # a script cannot clear an HttpOnly cookie: the server does
            while "archivist_session" in {c["name"] for c in page.context.cookies()}:
                assert time.monotonic() < deadline
                page.wait_for_timeout(200)
            page.reload()
            page.get_by_role("heading", name="Sign in").wait_for(timeout=60_000)
            browser.close()


def test_a_cookie_ticket_sets_httponly_cookies_once_and_only_over_its_route(ws):
    """The cookie route (ui/cookies.py) as `ui/server.py` mounts it: a ticket sets the session and device
    cookies HttpOnly, SameSite=Strict, Secure behind https; a second post, or a made-up ticket, sets nothing."""
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from archivist.ui import cookies

    app = Starlette(routes=[Route(cookies.COOKIE_ROUTE, cookies.cookie_route, methods=["POST"])])
    ticket = cookies.issue(("set", "the-token", "the-device"))
    with TestClient(app) as client:
        r = client.post(cookies.COOKIE_ROUTE, content=ticket, headers={"X-Forwarded-Proto": "https"})
        again = client.post(cookies.COOKIE_ROUTE, content=ticket)
        made_up = client.post(cookies.COOKIE_ROUTE, content="not-a-ticket")
        cleared = client.post(cookies.COOKIE_ROUTE, content=cookies.issue(("clear", "")))
    assert r.status_code == 204
    set_cookies = sorted(r.headers.get_list("set-cookie"))
    assert set_cookies[1].startswith("archivist_device=the-device;") and set_cookies[0].startswith("__Host-archivist_session=the-token;")
    for line in set_cookies:
        assert {"HttpOnly", "SameSite=strict", "Secure", "Path=/"} <= {p.strip() for p in line.split(";")}, line
    assert f"Max-Age={auth.SESSION_SECONDS}" in set_cookies[0]  # over https the session's is `__Host-` (sorts first)
    assert again.status_code == made_up.status_code == 404 and "set-cookie" not in again.headers
    assert cleared.status_code == 204 and cleared.headers.get_list("set-cookie") == [
        'archivist_session=""; HttpOnly; Max-Age=0; Path=/; SameSite=strict']
