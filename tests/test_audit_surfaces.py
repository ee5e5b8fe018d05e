"""The audit log in the app (the Audit page, AppTest) and over HTTP (`GET /v1/audit`, a real server):
admins read, filter and download it; members see nothing of it."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from archivist import access, audit, auth, keys

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")


def _page(ws, user: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, user)
    at.run()
    return at.switch_page("views/audit.py").run()


def test_the_audit_page_lists_filters_verifies_and_downloads_for_admins(ws):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    access.add_user(ws, "bob", by="alice")
    access.grant(ws, "bob", "finance", "read", by="alice")
    at = _page(ws, "alice")
    assert not at.exception and [t.value for t in at.title] == ["Audit"]
    grid = at.dataframe[0].value
    assert list(grid["action"]) == ["access.grant", "collection.create", "user.add", "auth.first_admin"]  # newest first
    at.selectbox(key="audit-action").set_value("access.").run()
    assert list(at.dataframe[0].value["action"]) == ["access.grant"]
    at.selectbox(key="audit-action").set_value("any").run()
    at.selectbox(key="audit-user").set_value("bob").run()
    assert not at.dataframe  # bob did nothing himself
    at.button(key="audit-verify").click().run()
    assert at.success and "intact: 8 records" in at.success[0].value  # the 4 above and the page's 4 reads (audit.read)
    assert [b.label for b in at.get("download_button")] == ["Download CSV"]


def test_a_member_sees_no_audit_page(ws):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, "bob")
    at.run()
    with pytest.raises(ValueError, match="Could not find a navigation page"):  # not in a member's navigation
        at.switch_page("views/audit.py")
    direct = AppTest.from_file(str(Path(APP).parent / "views" / "audit.py"), default_timeout=60)  # its URL typed in
    direct.session_state["_token"] = at.session_state["_token"]
    direct.run()
    assert [e.value for e in direct.error] == ["This page is for admins."] and not direct.dataframe


@pytest.fixture
def server(ws):
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread

    access.add_user(ws, "rita", by="admin")
    access.grant(ws, "rita", "finance", "admin", by="admin")
    k = {"admin": keys.create_key(ws, "admin"), "rita": keys.create_key(ws, "rita")}
    srv = serve_in_thread(create_app(ws.settings))
    yield srv.url, k
    srv.stop()


def test_get_v1_audit_for_admins_only(ws, server):
    url, k = server
    get = lambda path, who, **kw: httpx.get(url + path, headers={"Authorization": f"Bearer {k[who]}"}, timeout=60, **kw)  # noqa: E731
    r = get("/v1/audit", "admin", params={"action": "access."})
    assert r.status_code == 200, r.text
    assert [(x["action"], x["target"]) for x in r.json()["data"]] == [("access.grant", "rita")]
    r = get("/v1/audit", "admin", params={"format": "csv", "action": "key."})
    assert r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    assert lines[0] == "id,time,user,action,target,detail,hash"
    assert [ln.split(",")[3] for ln in lines[1:]] == ["key.create", "key.create", "key.use"]  # the admin's key, used once today
    assert get("/v1/audit", "admin", params={"since": "last tuesday"}).status_code == 400
    assert get("/v1/audit/verify", "admin").json()["ok"] is True
    for path in ("/v1/audit", "/v1/audit/verify"):
        r = get(path, "rita")
        assert r.status_code == 403 and "admin role" in r.json()["error"]["message"]
        assert "access.grant" not in r.text
    # the member's attempts are themselves on the record (their key's first use)
    assert [x["user"] for x in audit.read(ws, by="admin", action="key.use")] == ["admin", "rita"]
    # a question over the API is recorded as the key's user's, surface api (nothing to read: answered without generating)
    r = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {k['rita']}"}, timeout=120,
                   json={"model": "archivist", "messages": [{"role": "user", "content": "What is the travel allowance?"}]})
    assert r.status_code == 200, r.text
    [q] = audit.read(ws, by="admin", action="question")
    assert (q["user"], q["detail"]["surface"], q["detail"]["question"]) == ("rita", "api", "What is the travel allowance?")
    assert q["detail"]["collections"] == ["finance"] and q["detail"]["status"] == "not_found"
