"""A hostile member of a team workspace against the app's cookie tickets, passwords and sessions, on real
workspaces (SQLite, the cookie route through Starlette's ASGI stack).

Found: the cookie route (ui/cookies.py) set its ticket's cookies for a post from any page of the same
site, so a member who kept his own sign-in's ticket unposted (blocking the page's request) could have a
colleague's browser post it from a page on another port of the host: her browser then held his session
and device cookies (session fixation; seen in Chromium: her reload showed "Signed in as mallory").
"""

from __future__ import annotations

from archivist import auth


def _post(ticket: str, **headers):
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from archivist.ui import cookies

    app = Starlette(routes=[Route(cookies.COOKIE_ROUTE, cookies.cookie_route, methods=["POST"])])
    with TestClient(app, base_url="http://127.0.0.1:8611") as client:
        return client.post(cookies.COOKIE_ROUTE, content=ticket, headers=headers)


def test_a_ticket_posted_from_another_origin_of_the_site_sets_no_cookie_and_stays_unused(ws):
    """Before: 204 and `archivist_session=<mallory's token>` for a post from http://127.0.0.1:8612."""
    from archivist.ui import cookies

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "mallory", "mallory-pass-1", by="alice")
    token = auth.sign_in(ws, "mallory", "mallory-pass-1")
    ticket = cookies.issue(("set", token, auth.device_token(ws, "mallory")))
    for origin in ("http://127.0.0.1:8612", "http://evil.127.0.0.1:8611", "null"):
        r = _post(ticket, Origin=origin)
        assert r.status_code == 403 and "set-cookie" not in r.headers, (origin, r.status_code, r.headers)
    own = _post(ticket, Origin="http://127.0.0.1:8611")  # the app's own page: its ticket was not used up
    assert own.status_code == 204 and f"archivist_session={token};" in own.headers["set-cookie"]
    proxied = cookies.issue(("clear", ""))  # behind a proxy that sets X-Forwarded-Host, the public name
    assert _post(proxied, Origin="https://archivist.example", **{"X-Forwarded-Host": "archivist.example"}).status_code == 204


def test_a_huge_post_to_the_cookie_route_is_not_read_whole(ws):
    """The route as ASGI serves it, a post of 64 chunks of 1 MiB arriving as the client sends them.
    Before: the route read all 64 (request.body(): a gigabyte post held whole in memory, twice while
    joined; `archivist ui` peaked at 877 MB after one 400 MB post)."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.routing import Route

    from archivist.ui import cookies

    app = Starlette(routes=[Route(cookies.COOKIE_ROUTE, cookies.cookie_route, methods=["POST"])])
    pulled, sent = [], []
    total = 64

    async def receive():
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * (1 << 20), "more_body": len(pulled) < total}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": cookies.COOKIE_ROUTE, "raw_path": cookies.COOKIE_ROUTE.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"host", b"127.0.0.1:8611"), (b"content-length", str(total << 20).encode())],
             "server": ("127.0.0.1", 8611), "client": ("127.0.0.1", 5555)}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 404  # no such ticket
    assert len(pulled) == 1, f"the route read {len(pulled)} MiB of a post whose ticket is in its first 100 bytes"
