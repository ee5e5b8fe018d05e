"""A seventh hostile member against API keys and sign-in, on real workspaces (SQLite, scrypt, a real
`archivist serve` app over HTTP).

Found: a request with two Authorization headers had its key checked by the Guard from the last one,
while DELETE /v1/keys read "the request's key" from the first: a leaked member key sent beside a
made-up key bearing the prefix of her other key revoked that other key, which a key may not do
(docs/api.md: "a leaked key cannot ... lock her out by revoking her others"); the sign-in wait after
failures was the typed name's alone, so anyone who reached the app (no account needed) kept the admin
out of it for good with one wrong password a minute, each sent as the last wait ended; a member who
chose the adapter name of an admin's cut-short run was told that run's id and state ("run X will
register it once resumed; it is cancelled"), where another user's run is otherwise no run to her.
"""

from __future__ import annotations

import httpx
import pytest

from e2e.test_browser import browser  # noqa: F401  (its module-scoped Chromium, for the browser test)

from archivist import access, auth, keys
from archivist.workspace import open_workspace


def test_a_second_authorization_header_does_not_let_a_leaked_key_revoke_her_other_key(settings):
    """Before: 200 and eve's second key revoked, by a request authenticated with her first (leaked) key."""
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread

    with open_workspace(settings) as ws:
        access.add_user(ws, "eve", "member")
        leaked, kept = keys.create_key(ws, "eve"), keys.create_key(ws, "eve")
    kept_prefix = "-".join(kept.split("-")[:2])
    server = serve_in_thread(create_app(settings))
    try:
        url = f"{server.url}/v1/keys/{kept_prefix}"
        r = httpx.delete(url, timeout=60, headers=[("Authorization", f"Bearer {kept_prefix}-{'x' * 43}"),
                                                   ("Authorization", f"Bearer {leaked}")])
        assert r.status_code == 401 and "more than one Authorization header" in r.json()["error"]["message"], r.text
        r = httpx.delete(url, timeout=60, headers={"Authorization": f"Bearer {leaked}"})  # one header: the rule holds
        assert r.status_code == 403, r.text
        r = httpx.get(f"{server.url}/v1/keys", timeout=60, headers={"Authorization": f"Bearer {kept}"})
        assert r.status_code == 200 and {k["prefix"]: k["revoked_at"] for k in r.json()["data"]}[kept_prefix] is None
    finally:
        server.stop()
    with open_workspace(settings) as ws:
        assert [k["revoked_at"] for k in keys.list_keys(ws, "eve", by="admin")] == [None, None]


def test_a_name_held_by_another_users_run_is_refused_without_naming_that_run(settings):
    """Before: eve's run named "merger-notes" was refused with the admin's run id and its state."""
    from archivist import jobs
    from archivist.finetune import runs

    with open_workspace(settings) as ws:
        access.add_user(ws, "eve", "member")
        theirs = runs.create_run(ws, {"name": "merger-notes", "max_steps": 5}, user="admin")
        jobs.cancel(ws, theirs, "admin")  # cut short: a resume registers it later, so it keeps the name
        with pytest.raises(ValueError, match="taken") as refused:
            runs.create_run(ws, {"name": "merger-notes", "max_steps": 5}, user="eve")
        assert str(refused.value) == ("the adapter name 'merger-notes' is taken (another user's run will register it); "
                                      "choose another --name")
        with pytest.raises(ValueError, match=f"run {theirs} will register it once resumed; it is cancelled"):
            runs.create_run(ws, {"name": "merger-notes", "max_steps": 5}, user="admin")  # its owner is told which
        assert [r["owner"] for r in runs.list_runs(ws, "admin")] == ["admin"]


def _lock_out(ws, name: str, t: float) -> float:
    """A stranger's script: wrong passwords for `name`, each sent the moment the last wait ends, until
    the name waits the longest; returns the time of the last failure."""
    for _ in range(auth.FREE_FAILURES + 6):
        t += auth.retry_after(ws, name, t) + 0.01
        with pytest.raises(auth.AuthError, match="wrong user name or password"):
            auth.sign_in(ws, name, "not the password", clock=lambda: t)  # noqa: B023
    assert auth.retry_after(ws, name, t + 1) == pytest.approx(auth.MAX_DELAY - 1)
    return t


def test_a_strangers_wrong_passwords_do_not_lock_the_admin_out_of_a_browser_she_signed_in_from(settings):
    """Before: the admin's right password was refused unchecked while the name waited, and a script kept it
    waiting for good; sign_in took no device token (the browser's proof that it signed in before)."""
    with open_workspace(settings) as ws:
        auth.create_first_admin(ws, "admin", "admin password1")
        auth.create_user(ws, "eve", "eve password1", by="admin")
        auth.sign_in(ws, "admin", "admin password1")
        device = auth.device_token(ws, "admin")  # the cookie her browser got with that sign-in
        t = _lock_out(ws, "admin", 1_000_000.0)
        # a browser that never signed in as the admin waits, with the admin's right password too
        altered = device[:-1] + ("1" if device.endswith("0") else "0")
        for other in (None, auth.device_token(ws, "eve"), altered, "x_y", device.replace("_", "")):
            with pytest.raises(auth.AuthError, match="too many failed sign-ins"):
                auth.sign_in(ws, "admin", "admin password1", clock=lambda: t + 2, device=other)
        token = auth.sign_in(ws, "Admin", "admin password1", clock=lambda: t + 2, device=device)
        assert auth.session_user(ws, token) == "admin"
        assert auth.retry_after(ws, "admin", t + 3) > 0  # the stranger still waits
        # a stolen device token guesses no faster: the browser's own failures make it wait as the name's do
        for i in range(auth.FREE_FAILURES):
            with pytest.raises(auth.AuthError, match="wrong user name or password"):
                auth.sign_in(ws, "admin", "guess", clock=lambda: t + 3 + i, device=device)  # noqa: B023
        with pytest.raises(auth.AuthError, match="too many failed sign-ins"):
            auth.sign_in(ws, "admin", "admin password1", clock=lambda: t + 9, device=device)
        # a new password ends the device token: it was bound to the old one
        auth.set_password(ws, "admin", "a new password1", by="admin")
        t = _lock_out(ws, "admin", t)  # the stranger goes on; the browser's own wait is over by now
        with pytest.raises(auth.AuthError, match="too many failed sign-ins"):
            auth.sign_in(ws, "admin", "a new password1", clock=lambda: t + 2, device=device)


@pytest.mark.e2e
def test_in_a_browser_the_admin_signs_in_while_a_stranger_keeps_her_name_waiting(tmp_path_factory, browser):
    """The same against `archivist ui` in Chromium: alice signs in once and out, a stranger's failures make
    her name wait, and she signs in again from that browser, while a new browser with her password is
    still told to wait. Before: her browser was told to wait too ("too many failed sign-ins")."""
    import time

    from e2e.test_browser import _idle, _serve, _sign_in

    from archivist.settings import Settings

    home = tmp_path_factory.mktemp("e2e-h7") / "ws"
    with open_workspace(Settings.from_env(home=home)) as ws:
        auth.create_first_admin(ws, "alice", "alice-pass-1")
    for url in _serve(home, "e2e-hostile7.log", warmup=False):
        mine = browser.new_context()
        page = mine.new_page()
        _sign_in(page, url, "alice", "alice-pass-1")
        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("heading", name="Sign in").wait_for()
        with open_workspace(Settings.from_env(home=home)) as ws:  # what a stranger's script leaves: 20 failures, the last now
            ws.db.execute("INSERT INTO sign_in_failures(name_hash, failures, last_failure) VALUES (?, 20, ?)",
                          (auth._name_hash("alice"), time.time()))
            ws.db.commit()
        stranger = browser.new_context().new_page()
        stranger.goto(url)
        stranger.get_by_role("heading", name="Sign in").wait_for()
        stranger.get_by_label("User name").fill("alice")
        stranger.get_by_label("Password", exact=True).fill("alice-pass-1")
        stranger.get_by_role("button", name="Sign in").click()
        stranger.get_by_text("too many failed sign-ins").wait_for()
        _sign_in(page, url, "alice", "alice-pass-1")  # waits for the Chat page: she is in
        _idle(page)
        mine.close()
