"""The app's session cookie and an admin's own password, on real workspaces (the cookie route through
ui/server.py's own ASGI app, the Admin page under Streamlit's AppTest).

Found: over https the session cookie was the plain `archivist_session`, which a page of a sibling subdomain
can set for the whole site ("cookie tossing"): a signed-out visitor opened the app signed in as the tosser.
And the Admin page set an admin's own password without asking for the current one (the Account page asks),
so whoever sat at a browser she left signed in could take the admin account over.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import chromium_or_skip, ui_served

from archivist import auth, keys

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")


def _set_cookies(response) -> dict[str, list[str]]:
    """The Set-Cookie lines of `response`, by cookie name: [value, attribute, …]."""
    out = {}
    for line in response.headers.get_list("set-cookie"):
        parts = [p.strip() for p in line.split(";")]
        name, value = parts[0].split("=", 1)
        out[name] = [value, *parts[1:]]
    return out


def test_over_https_the_session_cookie_is_host_prefixed_and_a_tossed_plain_one_is_never_read(ws):
    """Before: `archivist_session=<token>; …; Secure` over https, and the page read `archivist_session`
    whichever way it was served, so one set by evil.example.com for Domain=example.com signed her in."""
    from starlette.testclient import TestClient

    from archivist.ui import cookies, server

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    token = auth.sign_in(ws, "alice", "alice-pass-1")
    route = cookies.route_path()
    with TestClient(server.app, base_url="http://127.0.0.1:8611") as client:
        https = client.post(route, content=cookies.issue(("set", token, "her-device")), headers={"X-Forwarded-Proto": "https"})
        # a proxy that terminates TLS and says nothing: the page's own Origin names https
        proxied = client.post(route, content=cookies.issue(("set", token)), headers={"Origin": "https://127.0.0.1:8611"})
        plain = client.post(route, content=cookies.issue(("set", token)), headers={"Origin": "http://127.0.0.1:8611"})
        cleared = client.post(route, content=cookies.issue(("clear", "")), headers={"X-Forwarded-Proto": "https"})
    assert https.status_code == proxied.status_code == plain.status_code == cleared.status_code == 204
    jar = _set_cookies(https)
    assert set(jar) == {"__Host-archivist_session", "archivist_device"}, jar
    value, *attributes = jar["__Host-archivist_session"]
    assert value == token and {"Secure", "Path=/", "HttpOnly", "SameSite=strict"} <= set(attributes)
    assert not any(a.lower().startswith("domain") for a in attributes)  # `__Host-` forbids one
    assert set(_set_cookies(proxied)) == {"__Host-archivist_session"}
    assert _set_cookies(plain)["archivist_session"][0] == token and "Secure" not in _set_cookies(plain)["archivist_session"]
    assert _set_cookies(cleared)["__Host-archivist_session"][:2] == ['""', "HttpOnly"]

    # the reading side, as a page run reads st.context: the browser's cookies, its URL, the handshake's headers
    mallorys = auth.create_session(ws, "alice")  # any valid token the tosser holds
    browser = {"__Host-archivist_session": token, "archivist_session": mallorys}  # both sent over https
    assert cookies.session_from(browser, "https://archivist.example.com/", {}) == token
    assert cookies.session_from({"archivist_session": mallorys}, "https://archivist.example.com/", {}) is None
    assert cookies.session_from({"archivist_session": mallorys}, None, {"x-forwarded-proto": "https"}) is None
    assert cookies.session_from({"archivist_session": token}, "http://127.0.0.1:8611/", {}) == token  # over http
    assert cookies.session_from({"__Host-archivist_session": mallorys}, "http://127.0.0.1:8611/", {}) is None


def _admin_page(token: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["_token"] = token
    at.run()
    at.switch_page("views/admin.py").run()
    at.selectbox(key="edit-user").set_value("alice").run()
    return at


def test_the_admin_page_asks_an_admin_for_her_current_password_before_setting_her_own(ws):
    """Before: the own row had no current-password field (KeyError on its key), and a new password alone
    replaced hers, ended her other sessions and could revoke her API keys."""
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    here, laptop, key = auth.create_session(ws, "alice"), auth.create_session(ws, "alice"), keys.create_key(ws, "alice")
    at = _admin_page(here)
    at.text_input(key="edit-pw-current-alice").set_value("wrong-pass-1")
    at.text_input(key="edit-pw-alice").set_value("taken-over-1")
    at.checkbox(key="edit-revoke-alice").check()
    at.button(key="FormSubmitter:set-password-alice-Set password").click().run()
    assert [e.value for e in at.error] == ["wrong user name or password"]
    assert auth.verify_password(ws, "alice", "alice-pass-1") and not auth.verify_password(ws, "alice", "taken-over-1")
    assert auth.session_user(ws, laptop) == "alice" and keys.user_for_key(ws, key) == "alice"

    at.text_input(key="edit-pw-current-alice").set_value("alice-pass-1")
    at.text_input(key="edit-pw-alice").set_value("alice-pass-2")
    at.button(key="FormSubmitter:set-password-alice-Set password").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert auth.verify_password(ws, "alice", "alice-pass-2") and any("Your password is set" in t.value for t in at.toast)
    assert auth.session_user(ws, here) == "alice" and auth.session_user(ws, laptop) is None  # this browser goes on
    assert at.title[0].value == "Admin"
    # another person's row asks for nothing of the kind: the admin sets it (auth.set_password)
    auth.create_user(ws, "nina", "nina-pass-1", by="alice")
    at.run()
    at.selectbox(key="edit-user").set_value("nina").run()
    assert "edit-pw-current-nina" not in {t.key for t in at.text_input}


@pytest.mark.slow
def test_over_https_in_chromium_a_tossed_cookie_signs_nobody_in_and_her_own_survives_a_reload(tmp_path):
    """`archivist ui` served over https (a self-signed certificate) in Chromium. Before: a plain
    `archivist_session` cookie holding mallory's session (as a sibling subdomain can set one) opened the
    app signed in as mallory."""
    import subprocess
    import time

    chromium, sync_playwright = chromium_or_skip()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    home = tmp_path / "ws"
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    with open_workspace(Settings.from_env(home=home)) as ws:
        auth.create_first_admin(ws, "alice", "alice-pass-1")
        auth.create_user(ws, "mallory", "mallory-pass-1", by="alice")
        tossed = auth.sign_in(ws, "mallory", "mallory-pass-1")
    with ui_served(home, tmp_path, STREAMLIT_SERVER_SSL_CERT_FILE=str(cert), STREAMLIT_SERVER_SSL_KEY_FILE=str(key)) as url:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--headless=new", "--no-sandbox", "--disable-gpu"])
            context = browser.new_context(ignore_https_errors=True)
            context.add_cookies([{"name": "archivist_session", "value": tossed, "url": url}])
            page = context.new_page()
            page.goto(url)
            first = page.get_by_role("heading", name=re.compile("^(Sign in|Chat)$")).first
            first.wait_for(timeout=60_000)
            assert first.inner_text() == "Sign in", "the tossed cookie signed the browser in as mallory"
            page.get_by_label("User name").fill("alice")
            page.get_by_label("Password", exact=True).fill("alice-pass-1")
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("heading", name="Chat", exact=True, level=1).wait_for(timeout=60_000)
            deadline = time.monotonic() + 20  # the page posts its ticket as it renders
            while "__Host-archivist_session" not in {c["name"] for c in context.cookies()}:
                assert time.monotonic() < deadline, context.cookies()
                page.wait_for_timeout(200)
            session = {c["name"]: c for c in context.cookies()}["__Host-archivist_session"]
            assert session["secure"] and session["httpOnly"] and session["path"] == "/"
            page.reload()  # her own cookie is read, the tossed one beside it is not
            page.get_by_role("heading", name="Chat", exact=True, level=1).wait_for(timeout=60_000)
            page.get_by_text("alice").first.wait_for(timeout=30_000)
            assert not page.get_by_text("mallory").count()
            browser.close()
