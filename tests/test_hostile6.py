"""The first-admin setup code and the sign-in throttle against a hostile user, on real workspaces
(SQLite, scrypt, archivist.auth as the app and `archivist ui` call it).

Found: a setup code printed by `archivist ui` stayed valid after the first admin came from
ARCHIVIST_ADMIN_USER instead, so the old terminal's (or log's) line created an admin the next time
the workspace had nobody who could sign in; after about 1,030 failures in a row for one name (a day of
one guess a minute) the sign-in back-off overflowed a float and the name could not sign in at all for
15 minutes instead of the documented minute at most; an admin's key asking POST /v1/keys for
`{"user": ""}` (an unset variable in a provisioning script) got a new admin key; each refused try of a
waiting name wrote an audit record without a password check (about 5,000 a second from one process).
"""

from __future__ import annotations

import httpx
import pytest

from archivist import access, audit, auth, keys
from archivist.workspace import open_workspace


def test_a_setup_code_is_used_up_when_the_first_admin_comes_from_the_environment(settings):
    """Before: the code printed by `archivist ui` still created an admin after nina (from the environment)
    was deleted, though it was printed before she existed."""
    with open_workspace(settings) as ws:
        old = auth.issue_setup_code(ws)  # what `archivist ui` printed on the fresh workspace
        made = auth.admin_from_env(ws, {"ARCHIVIST_ADMIN_USER": "nina", "ARCHIVIST_ADMIN_PASSWORD": "correct horse"})
        assert made == {"name": "nina", "role": "admin"}
        assert not auth.has_setup_code(ws)
        access.delete_user(ws, "nina", by="admin")
        assert auth.first_admin_form_open(ws)  # nobody can sign in again: the form is back
        with pytest.raises(auth.AuthError, match="wrong setup code"):
            auth.create_first_admin(ws, "eve", "eve password1", from_app=True, setup_code=old)
        assert auth.needs_first_admin(ws)
        assert ws.db.execute("SELECT 1 FROM users WHERE name = 'eve'").fetchone() is None
        # a code issued now (the app started again) works, once
        fresh = auth.issue_setup_code(ws)
        assert auth.create_first_admin(ws, "rosa", "rosa password1", from_app=True, setup_code=fresh)["role"] == "admin"
        assert auth.sign_in(ws, "rosa", "rosa password1")


def test_a_day_of_failures_still_waits_a_minute_at_most(settings):
    """Before: with 1,100 failures in a row on record (one guess a minute for 18 hours), sign-in raised
    OverflowError ('int too large to convert to float') instead of asking to wait, until 15 quiet minutes."""
    t = 1_000_000.0
    with open_workspace(settings) as ws:
        auth.create_user(ws, "bob", "bob password1", by="admin")
        # what those hours of guessing leave (each counted failure is one scrypt check, too slow to replay here)
        ws.db.execute("INSERT INTO sign_in_failures(name_hash, failures, last_failure) VALUES (?, 1100, ?)",
                      (auth._name_hash("bob"), t))
        assert auth.retry_after(ws, "bob", t + 30) == pytest.approx(auth.MAX_DELAY - 30)
        with pytest.raises(auth.AuthError, match="try again in 30 seconds"):
            auth.sign_in(ws, "Bob", "bob password1", clock=lambda: t + 30)
        token = auth.sign_in(ws, "bob", "bob password1", clock=lambda: t + auth.MAX_DELAY + 1)
        assert auth.session_user(ws, token) == "bob"
        assert auth.retry_after(ws, "bob", t + auth.MAX_DELAY + 2) == 0


def test_an_empty_user_name_gets_no_key_rather_than_an_admin_key(settings):
    """Before: POST /v1/keys with the admin's key and {"user": ""} answered 201 with a key acting as the
    admin (the empty name fell back to the caller), meant for a member or a service."""
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread

    with open_workspace(settings) as ws:
        access.add_user(ws, "alice", "member")
        admin_key = keys.create_key(ws, "admin")
    server = serve_in_thread(create_app(settings))
    try:
        post = lambda body: httpx.post(server.url + "/v1/keys", json=body, timeout=60,  # noqa: E731
                                       headers={"Authorization": f"Bearer {admin_key}"})
        r = post({"user": ""})
        assert r.status_code == 422 and r.json()["error"]["param"] == "user", r.text
        assert post({"user": "alice"}).json()["user"] == "alice"  # a name still works, and no name is the caller's own
        assert post({}).json()["user"] == "admin"
    finally:
        server.stop()
    with open_workspace(settings) as ws:
        assert [k["user"] for k in keys.list_keys(ws, by="admin")] == ["admin", "alice", "admin"]


def test_a_flood_of_refused_tries_writes_one_audit_record_per_wait(settings):
    """Before: 200 tries while the name waited wrote 200 `throttled` audit records (a refused try costs no
    scrypt, so a script filled the log at thousands a second); now the first of each wait is recorded."""
    t = 1_000_000.0
    with open_workspace(settings) as ws:
        auth.create_user(ws, "nina", "nina-pass-12", by="admin")
        for _ in range(auth.FREE_FAILURES):
            with pytest.raises(auth.AuthError, match="wrong user name or password"):
                auth.sign_in(ws, "nina", "guess", clock=lambda: t)
        for _ in range(200):
            with pytest.raises(auth.AuthError, match="try again in 5 seconds"):
                auth.sign_in(ws, "NINA", "nina-pass-12", clock=lambda: t)
        with pytest.raises(auth.AuthError, match="wrong user name or password"):  # the wait over: one more guess
            auth.sign_in(ws, "nina", "guess", clock=lambda: t + 5)
        for _ in range(50):
            with pytest.raises(auth.AuthError, match="try again in 10 seconds"):
                auth.sign_in(ws, "nina", "guess", clock=lambda: t + 5)
        failed = audit.read(ws, by="admin", action="auth.sign_in_failed")
        assert sorted(r["detail"].get("throttled", 0) for r in failed) == [0] * (auth.FREE_FAILURES + 1) + [5, 10]
        assert {r["target"] for r in failed} == {"nina"}
        assert auth.sign_in(ws, "nina", "nina-pass-12", clock=lambda: t + 15)  # and the right password still works
