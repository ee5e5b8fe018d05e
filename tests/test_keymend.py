"""Keys and sign-in against a member who holds a leaked key or guesses passwords, on real workspaces:
the API over a real server (uvicorn in a thread), sign-in through archivist.auth as the app calls it.

Found: a member's API key minted more keys (a leaked key outlived its revocation) and revoked her
other keys (it could lock her out); the sign-in form took ~20 password guesses a second for any name.
"""

from __future__ import annotations

import httpx
import pytest

from archivist import access, audit, auth, keys
from archivist.workspace import open_workspace


@pytest.fixture
def served(settings):
    """A served empty workspace: the local admin and member alice, each with a key, alice with two."""
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread

    with open_workspace(settings) as ws:
        access.add_user(ws, "alice", "member")
        made = {"admin": keys.create_key(ws, "admin"), "alice": keys.create_key(ws, "alice"),
                "alice2": keys.create_key(ws, "alice", by="alice")}  # the CLI as alice: still allowed
    server = serve_in_thread(create_app(settings))
    yield server.url, made
    server.stop()


def _call(url: str, method: str, path: str, key: str, **kw) -> httpx.Response:
    return httpx.request(method, url + path, headers={"Authorization": f"Bearer {key}"}, timeout=60, **kw)


def test_a_members_key_neither_mints_keys_nor_revokes_her_other_keys(served, settings):
    """Before: alice's key got 201 and a working new key from POST /v1/keys, and revoked alice2."""
    url, k = served
    r = _call(url, "POST", "/v1/keys", k["alice"])
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied", r.text
    assert "archivist keys create" in r.json()["error"]["message"]
    second = k["alice2"][:11]  # ak-<8 hex>
    r = _call(url, "DELETE", f"/v1/keys/{second}", k["alice"])
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied", r.text
    assert _call(url, "GET", "/v1/models", k["alice2"]).status_code == 200  # her other key still works
    listed = _call(url, "GET", "/v1/keys", k["alice"]).json()["data"]
    assert [(x["prefix"], x["revoked_at"]) for x in listed] == [(k["alice"][:11], None), (second, None)]  # nothing minted
    with open_workspace(settings) as ws:
        denied = audit.read(ws, by="admin", action="access.denied")
    assert [d["user"] for d in denied] == ["alice", "alice"]  # both refusals on the record
    # her key revokes itself (a leaked key she still holds), at once
    r = _call(url, "DELETE", f"/v1/keys/{k['alice'][:11]}", k["alice"])
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    assert _call(url, "GET", "/v1/models", k["alice"]).status_code == 401
    # an admin's key still provisions and revokes anyone's keys
    r = _call(url, "POST", "/v1/keys", k["admin"], json={"user": "alice"})
    assert r.status_code == 201 and r.json()["user"] == "alice"
    assert _call(url, "GET", "/v1/models", r.json()["key"]).status_code == 200
    assert _call(url, "DELETE", f"/v1/keys/{second}", k["admin"]).status_code == 200
    assert _call(url, "GET", "/v1/models", k["alice2"]).status_code == 401


class Clock:
    """Time that moves only when a test moves it."""

    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _try(ws, name: str, password: str, clock: Clock) -> str:
    """'ok', 'wrong', or the refusal's words."""
    try:
        auth.sign_in(ws, name, password, clock=clock)
        return "ok"
    except auth.AuthError as e:
        return "wrong" if str(e) == "wrong user name or password" else str(e)


def test_sign_in_backs_off_per_name_across_processes_and_a_success_resets_it(settings):
    """Before: every guess was checked at once, however many came before (no wait, no refusal)."""
    clock = Clock()
    with open_workspace(settings) as ws:
        auth.create_user(ws, "nina", "nina-pass-12", by="admin")
        auth.create_user(ws, "omar", "omar-pass-12", by="admin")
        assert [_try(ws, "nina", f"guess-{i}", clock) for i in range(auth.FREE_FAILURES)] == ["wrong"] * auth.FREE_FAILURES
        # the right password now is refused unchecked, and says when to come back
        assert _try(ws, "Nina", "nina-pass-12", clock) == "too many failed sign-ins for this name: try again in 5 seconds"
        assert _try(ws, "omar", "omar-pass-12", clock) == "ok"  # per name: omar is not held up
    clock.now += 5
    with open_workspace(settings) as ws:  # another process (or a restart) sees the same count
        assert _try(ws, "nina", "guess-5", clock) == "wrong"
        assert _try(ws, "nina", "nina-pass-12", clock).endswith("try again in 10 seconds")  # doubled
        for wait in (10, 20, 40, 60, 60):  # ... up to the cap
            clock.now += wait
            assert _try(ws, "nina", "again", clock) == "wrong"
        assert _try(ws, "nina", "nina-pass-12", clock).endswith("try again in 60 seconds")
        clock.now += 60
        assert _try(ws, "nina", "nina-pass-12", clock) == "ok"
        assert auth.retry_after(ws, "nina", clock.now) == 0  # a success resets it
        assert [_try(ws, "nina", "x-guess", clock) for _ in range(auth.FREE_FAILURES)] == ["wrong"] * auth.FREE_FAILURES
        failed = audit.read(ws, by="admin", action="auth.sign_in_failed")
        assert [r["detail"].get("throttled") for r in failed if r["detail"].get("throttled")] == [5, 10, 60]
        assert {r["target"] for r in failed} == {"nina"}
        assert "nina-pass-12" not in str(ws.db.execute("SELECT * FROM sign_in_failures").fetchall())
        clock.now += auth.FAILURE_WINDOW + 1  # a quarter of an hour without failures forgets them
        assert _try(ws, "nina", "nina-pass-12", clock) == "ok"


def test_a_name_no_user_has_waits_like_a_real_one_and_is_not_kept(settings):
    """The wait must not tell which names exist, and a password typed as a name is stored nowhere."""
    clock = Clock()
    with open_workspace(settings) as ws:
        auth.create_user(ws, "nina", "nina-pass-12", by="admin")
        for name in ("nina", "my secret pw"):
            assert [_try(ws, name, "guess", clock) for _ in range(auth.FREE_FAILURES + 1)][-1].endswith("in 5 seconds")
        failed = audit.read(ws, by="admin", action="auth.sign_in_failed")
        assert [(r["target"], r["detail"]) for r in failed if "throttled" in r["detail"]] == [
            ("nina", {"throttled": 5}), (None, {"name": "unknown", "throttled": 5})]
        assert "my secret pw" not in str(ws.db.execute("SELECT * FROM sign_in_failures").fetchall())


def test_the_first_admin_form_needs_the_setup_code_that_archivist_ui_printed(settings, tmp_path):
    """Before: whoever reached the page of a new workspace first made herself its admin with any name
    and password; now she also needs the code printed in the terminal of `archivist ui`."""
    import os
    import re
    import socket
    import subprocess
    import sys
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ARCHIVIST_HOME": str(settings.home), "ARCHIVIST_UI_WARMUP": "0", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "archivist.cli", "ui", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=str(tmp_path))
    try:
        lines = [proc.stderr.readline() for _ in range(2)]  # the workspace, then the code: printed before streamlit starts
    finally:
        proc.kill()
        proc.wait(30)
    code = re.search(r"with setup code ([A-Z0-9-]{14})$", lines[1].strip()).group(1)

    os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "ui" / "app.py"), default_timeout=60).run()
    name, pw, again, typed = at.text_input
    pw.set_value("first-admin-pw")
    again.set_value("first-admin-pw")
    for wrong in ("", "ABCD-EFGH-JKLM"):
        typed.set_value(wrong)
        at.button[0].click().run()
        assert [e.value.replace("\\", "") for e in at.error] == [
            "wrong setup code: it is printed in the terminal where the app was started (`archivist ui`); "
            "starting it again prints a new one"]  # as Markdown-escaped on the page
    with open_workspace(settings) as ws:
        assert auth.needs_first_admin(ws)  # nobody got in
        assert code.replace("-", "") not in str(ws.db.execute("SELECT * FROM setup_code").fetchall())  # a hash only
    at.text_input[3].set_value(code.lower().replace("-", " "))  # typed by hand: case and separators do not matter
    at.button[0].click().run()
    assert not at.exception and not at.error and at.session_state["_user"] == "admin"
    with open_workspace(settings) as ws:
        assert auth.verify_password(ws, "admin", "first-admin-pw") and not auth.has_setup_code(ws)  # used up
