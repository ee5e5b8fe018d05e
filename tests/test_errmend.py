"""API errors: refusals counted on the audit log rather than written one by one, and a workspace a
newer release migrated under the server answered as what it is (no retry helps).

A real workspace, real API keys, the real app (starlette's TestClient), the real audit chain."""

from __future__ import annotations

import json
import time

from conftest import members_with_keys


def _denied(ws) -> list[tuple]:
    """(user, target, detail) of every access.denied record, oldest first, as stored."""
    return [(u, t, json.loads(d)) for u, t, d in ws.db.execute(
        "SELECT user, target, detail FROM audit WHERE action = 'access.denied' ORDER BY id")]


def test_a_refusal_repeated_within_a_minute_is_counted_not_written_and_the_chain_stays_whole(ws, cli, monkeypatch):
    """Before: each refused request wrote its own access.denied record: 30 refused requests by eve's key
    were 30 records (300 in 3 s on a shared box), growing archivist.db and the chain without limit and
    pushing her earlier records out of the newest an admin reads. Now the first is written, the same
    refusal again within the window is counted, and one summary record says how many more came."""
    from starlette.testclient import TestClient

    from archivist import audit
    from archivist.api.app import create_app

    keys = members_with_keys(ws, {"eve": ("team", "read")})
    ws.collection_id("secret", create=True)
    eve = {"Authorization": f"Bearer {keys['eve']}"}
    message = "user 'eve' has no read access to collection 'secret' (or it does not exist)"
    with TestClient(create_app(ws.settings)) as client:
        answers = [client.get("/v1/documents", params={"collection": "secret"}, headers=eve) for _ in range(30)]
        assert {(r.status_code, r.json()["error"]["code"]) for r in answers} == {(403, "permission_denied")}
        assert {r.json()["error"]["message"] for r in answers} == {message}  # each one still told why
        other = client.get("/v1/documents/plan.md", params={"collection": "secret"}, headers=eve)
        assert other.status_code == 403 and other.json()["error"]["message"] == message, other.text
        # one record for the 30 refusals; another attempt (another path) is a refusal of its own
        assert _denied(ws) == [("eve", "GET /v1/documents", {"surface": "api", "reason": message}),
                               ("eve", "GET /v1/documents/plan.md", {"surface": "api", "reason": message})]

        # the admin reads the log: the count so far is written first, as a summary of the first record
        rows = audit.read(ws, by="admin", action="access.denied")
        gets = [r for r in rows if r["target"] == "GET /v1/documents"]
        assert [(r["user"], r["detail"].get("repeats"), r["detail"].get("first")) for r in gets] == [
            ("eve", None, None), ("eve", 29, gets[0]["id"])]
        assert {k: gets[1]["detail"][k] for k in ("surface", "reason")} == {"surface": "api", "reason": message}

        # a window that ended is summed up by the next refusal, which opens a new window of its own
        from archivist import audit_refusals

        monkeypatch.setattr(audit_refusals, "WINDOW", 1.0)  # a minute, made a second for the test
        for _ in range(4):
            assert client.get("/v1/documents", params={"collection": "secret"}, headers=eve).status_code == 403
        time.sleep(1.2)
        for _ in range(2):
            assert client.get("/v1/documents", params={"collection": "secret"}, headers=eve).status_code == 403
    gets = [d.get("repeats") for u, t, d in _denied(ws) if t == "GET /v1/documents"]
    assert gets == [None, 29, None, 3, None]  # first, its 29 repeats; first, its 3 repeats; a new first (+1 counted)

    # erasing eve writes the count still open before its user.erased record, not after it with her name
    from archivist.user_erase import erase_user

    erased = erase_user(ws, "eve", by="admin").record
    summary = ws.db.execute("SELECT id, user, detail FROM audit WHERE action = 'access.denied' ORDER BY id DESC").fetchone()
    assert summary["id"] < erased and summary["user"] == "eve" and '"repeats":1' in summary["detail"]
    assert "eve" not in str([tuple(r) for r in ws.db.execute("SELECT user, target, detail FROM audit WHERE id > ?",
                                                             (erased,))])
    verdict = audit.verify(ws)
    assert verdict.ok, verdict.problems
    r = cli("audit", "verify", "--home", ws.settings.home)
    assert r.returncode == 0 and "intact" in r.stdout, r.stdout + r.stderr


def test_a_workspace_a_newer_release_migrated_under_the_server_is_a_503_no_retry_helps(ws):
    """Before: writes refused because a newer release migrated the workspace under a running server
    were 503 `workspace_unavailable` with `Retry-After: 5`, the answer of a database locked a moment,
    so clients and load balancers retried forever; only a restart with the newer release helps. Now
    it is 503 `workspace_upgraded`, without Retry-After, naming both schema versions; reads go on."""
    import sqlite3

    from starlette.testclient import TestClient

    from archivist.api.app import create_app
    from archivist.schema import MIGRATIONS

    keys = members_with_keys(ws, {"eve": ("team", "read")})
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    with TestClient(create_app(ws.settings)) as client:
        made = client.post("/v1/keys", json={"user": "eve"}, headers=admin)
        assert made.status_code == 201, made.text
        newer = sqlite3.connect(ws.settings.home / "archivist.db")  # a newer release's migration, from another process
        newer.execute("CREATE TABLE newer_release (x)")
        newer.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
        newer.commit()
        newer.close()
        keys_before = ws.db.execute("SELECT count(*) FROM api_keys").fetchone()[0]
        refused = client.post("/v1/keys", json={"user": "eve"}, headers=admin)
        assert (refused.status_code, refused.json()["error"]["code"]) == (503, "workspace_upgraded"), refused.text
        assert "retry-after" not in refused.headers
        message = refused.json()["error"]["message"]
        assert (f"workspace schema {len(MIGRATIONS) + 1} is newer than this archivist ({len(MIGRATIONS)})" in message
                and "restart this process" in message and str(ws.settings.home) not in message), message
        assert ws.db.execute("SELECT count(*) FROM api_keys").fetchone()[0] == keys_before  # nothing written
        assert client.get("/v1/documents", headers=admin).status_code == 200  # reads go on
        # the Guard's own write (a new key's first use, key.use) is refused the same way
        first_use = client.get("/v1/documents", headers={"Authorization": f"Bearer {made.json()['key']}"})
        assert (first_use.status_code, first_use.json()["error"]["code"]) == (503, "workspace_upgraded"), first_use.text
        assert "retry-after" not in first_use.headers
