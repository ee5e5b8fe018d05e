"""The app's cookies, set by the server with HttpOnly, so no script in the page can read them.

Streamlit talks to the browser over a WebSocket, and a WebSocket message cannot set a cookie; a
cookie written by the page's JavaScript (`document.cookie = …`) cannot be HttpOnly, so any script
that ever ran in the page (a Streamlit component, a hole in our escaping) could read the session
token and use it elsewhere for 12 hours. Instead the page run that signs someone in leaves a
one-time ticket here (`issue`), and a line of JavaScript posts the ticket (never the token) to
COOKIE_ROUTE, which `ui/server.py` mounts on Streamlit's own server (`st.App`); its answer sets the
cookies with `Set-Cookie: …; HttpOnly; SameSite=Strict` (and `Secure` and the session cookie's `__Host-`
name over https, `session_cookie`). The browser sends
them with the WebSocket's handshake, where `st.context.cookies` reads them (ui/core.py).

A ticket opens nothing by itself, lives TICKET_SECONDS and is used up by the first post; it is only
in the page at the moment of a sign-in, when a script in the page could read the typed password anyway.
"""

from __future__ import annotations

import secrets
import threading
import time

import streamlit as st

COOKIE = "archivist_session"
SECURE_COOKIE = f"__Host-{COOKIE}"  # its name over https (`session_cookie`)
DEVICE_COOKIE, DEVICE_SECONDS = "archivist_device", 180 * 86400  # auth.device_token: kept across sign-outs
COOKIE_ROUTE = "/_archivist/cookie"  # below server.baseUrlPath; "_archivist" as Streamlit's own "_stcore"
TICKET_SECONDS = 30.0  # the page posts its ticket as it renders: seconds are plenty

# ticket: (expiry, the `pending` of ui/core.sync_cookie); this process's only: several app processes need a
# balancer sticky for the cookie route (docs/ui.md)
_tickets: dict[str, tuple[float, tuple]] = {}
_lock = threading.Lock()  # page runs are threads; the route runs on the server's event loop


def route_path() -> str:
    """COOKIE_ROUTE under the server's base URL path (server.baseUrlPath, as Streamlit's routes)."""
    from streamlit import config

    base = (config.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}{COOKIE_ROUTE}" if base else COOKIE_ROUTE


def session_cookie(https: bool) -> str:
    """The session cookie's name for a page served over https or not. Over https it is `__Host-archivist_session`,
    which a browser takes only from a secure page of this very host (Secure, Path=/, no Domain): a page of a
    sibling subdomain cannot set it ("cookie tossing", which signed a signed-out visitor in as the tosser, her
    uploads and questions going to his account). Over http no prefix is possible (a browser takes `__Host-`
    only with Secure), so the plain name stays."""
    return SECURE_COOKIE if https else COOKIE


def over_https(page_url: str | None, headers, scheme: str = "http") -> bool:
    """Whether the browser has the page over https: the scheme of `page_url` as the browser sees it (the cookie
    post's Origin, a page run's st.context.url), else the request's own `scheme` or a proxy's X-Forwarded-Proto.
    The route that sets the cookie and the page run that reads it decide alike, so the name set is the name
    read, also behind a proxy that terminates TLS without saying so."""
    from urllib.parse import urlsplit

    seen = urlsplit(page_url or "").scheme
    if seen in ("http", "https"):
        return seen == "https"
    return scheme == "https" or (headers.get("x-forwarded-proto") or "").split(",")[0].strip() == "https"


def session_from(jar, page_url: str | None, headers) -> str | None:
    """The session token among a browser's cookies `jar`, under the one name its page's scheme gives: over https
    a plain `archivist_session`, which any page of the site may have set, is never read (`session_cookie`)."""
    value = jar.get(session_cookie(over_https(page_url, headers)))
    return value if isinstance(value, str) else None


def issue(pending: tuple) -> str:
    """A one-time ticket for `pending`: ("set", session token, device token…) or ("clear", "")."""
    ticket = secrets.token_urlsafe(32)
    now = time.time()
    with _lock:
        for old in [t for t, (expiry, _) in _tickets.items() if expiry < now]:  # unposted ones (a tab closed)
            del _tickets[old]
        _tickets[ticket] = (now + TICKET_SECONDS, pending)
    return ticket


def write(pending: tuple) -> None:
    """Have this browser's cookies set (or the session's cleared) by the server: a script in the page
    posts a new ticket for `pending` to the cookie route."""
    ticket = issue(pending)  # token_urlsafe: nothing to escape; the path is the server's configuration
    st.html(f"<script>fetch('{route_path()}', {{method: 'POST', body: '{ticket}', credentials: 'same-origin'}});</script>",
            unsafe_allow_javascript=True)


def _redeem(ticket: str) -> tuple | None:
    with _lock:
        expiry, pending = _tickets.pop(ticket, (0.0, None))
    return pending if expiry >= time.time() else None


def _same_origin(request) -> bool:
    """Whether the post came from the app's own page: its Origin (browsers send one with every POST) names
    the host the request was sent to (Host, or X-Forwarded-Host behind a proxy) or one the operator listed
    (server.corsAllowedOrigins). SameSite=Strict does not stop another page of the same site (another
    port of the host, a sibling subdomain) from posting a ticket of its own, whose cookies the browser
    then takes: the victim's browser signed in as someone else (session fixation), her uploads and
    questions going to his account. No Origin is no browser, which could not set a victim's cookies."""
    from urllib.parse import urlsplit

    from streamlit.web.server.server_util import is_allowed_origin

    origin = request.headers.get("origin")
    if origin is None:
        return True
    hosts = {request.headers.get("host", ""), request.headers.get("x-forwarded-host", "").split(",")[0].strip()}
    return urlsplit(origin).netloc in hosts - {""} or is_allowed_origin(origin)


async def _posted_ticket(request, limit: int = 100) -> str:
    """The ticket a post carries: its body's first `limit` bytes, the rest never read. The route is open to
    anyone, and `request.body()` held a whole post in memory, twice over while joining it: one post of 400 MB
    took the app's server to 877 MB, and a few of a few gigabytes from anywhere on the network exhaust it."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) >= limit:
            break
    return body[:limit].decode("ascii", "replace").strip()


async def cookie_route(request):
    """POST COOKIE_ROUTE with a ticket as the body: 204 with the ticket's cookies set (HttpOnly,
    SameSite=Strict, Secure and `__Host-` over https), 404 for a ticket unknown, used or expired, or 403 from
    another origin (`_same_origin`; the ticket stays unused)."""
    from archivist import auth
    from starlette.responses import Response

    if not _same_origin(request):
        return Response("the cookie route takes posts from the app's own page only", status_code=403)
    pending = _redeem(await _posted_ticket(request))
    if pending is None:
        return Response("no such ticket", status_code=404)
    action, token, *device = pending
    https = over_https(request.headers.get("origin"), request.headers, request.url.scheme)
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})

    def cookie(name: str, value: str, age: int) -> None:
        response.set_cookie(name, value, max_age=age, path="/", secure=https, httponly=True, samesite="strict")

    cookie(session_cookie(https), token, int(auth.SESSION_SECONDS) if action == "set" else 0)
    for d in device:
        cookie(DEVICE_COOKIE, d, DEVICE_SECONDS)
    return response
