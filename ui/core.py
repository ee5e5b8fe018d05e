"""What every page shares: settings, this browser session's workspace, the signed-in user, the models.

Pages import this module and call stage functions; nothing here decides anything about documents,
answers or access — it only wires Streamlit's session to the stage functions.

Sign-in survives a page reload through a cookie holding the session token (set HttpOnly by the
server, ui/cookies.py; read back from `st.context.cookies` when the next browser session starts); the token
is checked against the sessions table on every run, so expiry, sign-out and a deleted user take
effect at once.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
import threading
import unicodedata

import streamlit as st

from archivist import access, audit, auth
from archivist.retrieval.repair import open_checked
from archivist.settings import Settings
from archivist.ui import cookies
from archivist.ui import models as models_
from archivist.workspace import Workspace, open_workspace

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&=/^])")
# where GitHub-flavoured Markdown would start a link, after escaping: "http\:", "www\.", "@host\.": the word joiner goes after
_AUTOLINK = re.compile(r"(https?(?=\\:)|www(?=\\\.)|@(?=(?:\w|\\-)+\\\.))", re.IGNORECASE)


def settings() -> Settings:
    """The settings of this server (ARCHIVIST_* environment variables)."""
    return Settings.from_env()


@st.cache_resource(show_spinner=False)
def _prepare_workspace(home: str) -> bool:
    """Once per server and workspace: repair FAISS from SQLite, create the admin from the environment
    (or, started without `archivist ui`, print the first-admin form's setup code to the server's
    terminal), and resume the ingest jobs a crash or restart cut short."""
    from archivist.ui import library

    s = settings()
    with open_checked(s) as ws:
        auth.admin_from_env(ws)
        if auth.first_admin_form_open(ws) and not auth.has_setup_code(ws):
            print(auth.setup_code_line(auth.issue_setup_code(ws)), file=sys.stderr, flush=True)
    library.resume_interrupted(s)
    return True


def workspace() -> Workspace:
    """This browser session's workspace connection (one SQLite connection per session; runs of one
    session never overlap, and the background ingestion opens its own)."""
    s = settings()
    ws = st.session_state.get("_ws")
    if ws is None or ws.home != s.home:
        _prepare_workspace(str(s.home))
        ws = open_workspace(s)
        st.session_state["_ws"] = ws
    return ws


# -- models: loaded once per server, warmed up in the background at start ---------------------


@st.cache_resource(show_spinner="Loading the models (once per server)…")
def _models(llm: str, cache: str, device: str, quantize: str, embedder: str, backend: str):
    s = settings()
    return models_.llm(s), models_.embedder(s)


def models():
    """(llm, embedder) of this server, loaded on first use and kept for every session."""
    s = settings()
    return _models(s.llm, str(s.cache), s.device, s.quantize, s.embedder, s.embed_backend)


def embedder():
    """The embedder alone (ingestion needs no LLM)."""
    return models_.embedder(settings())


@st.cache_resource(show_spinner=False)
def _warm(llm: str, embedder_name: str) -> threading.Thread:
    # Load both models while the user signs in, so the first question only waits for what is not
    # loaded yet. ui/models.py loads one model at a time, whoever asks first.
    def load():
        s = settings()
        try:
            models_.embedder(s)
            models_.llm(s)
        except Exception:  # the chat page shows the real error when it loads them itself
            pass

    t = threading.Thread(target=load, name="archivist-warm-models", daemon=True)
    t.start()
    return t


def warm_models() -> None:
    """Start loading the models in the background, unless ARCHIVIST_UI_WARMUP=0 (the AppTest tests set
    it: they load models where they need them, and a load racing another one in the same process
    can leave torch's device state broken for every later load)."""
    if os.environ.get("ARCHIVIST_UI_WARMUP", "1") == "0":
        return
    s = settings()
    _warm(s.llm, s.embedder)


def adapter_names(ws: Workspace, user: str | None) -> list[str]:
    """Names of the adapters `user` may use, newest first (archivist.adapters.list_for)."""
    from archivist import adapters

    return [r["name"] for r in adapters.list_for(ws, user)]


# -- the signed-in user -------------------------------------------------------------------------


SESSION_ENDED = "Your session ended; sign in again."


def current_user() -> str | None:
    """The signed-in user of this browser session, or None. Checks the session token each run.

    A session that ended without "Sign out" (a password reset, the 12 h expiry, the user deleted)
    is forgotten as sign-out forgets it: every per-user key goes, so the next person to sign in in
    this tab starts clean, and the sign-in page says why (`ended_note`). A change of user by any
    other route also drops the previous user's keys.
    """
    ws = workspace()
    live = st.session_state.get("_token")
    token = live
    if token is None:
        token = _session_cookie()
    name = auth.session_user(ws, token)
    if name is None:
        if live is not None:  # it was signed in during this browser session, and has ended since
            forget_user()
            st.session_state["_ended"] = SESSION_ENDED
            st.session_state["_cookie"] = ("clear", "")
        return None
    if st.session_state.get("_user") != name:
        forget_user()
        st.session_state["_user"] = name
    st.session_state["_token"] = token
    return name


def _cookie(name: str) -> str | None:
    """The browser's cookie `name`, or None (none, or no browser context: tests)."""
    try:
        value = st.context.cookies.get(name)
    except Exception:
        return None
    return value if isinstance(value, str) else None


def _session_cookie() -> str | None:
    """This browser's session token, under the cookie name its page's scheme gives (`cookies.session_from`:
    over https only `__Host-archivist_session`), or None (none, or no browser context: tests)."""
    try:
        return cookies.session_from(st.context.cookies, st.context.url, st.context.headers)
    except Exception:
        return None


def ended_note() -> str | None:
    """Why nobody is signed in, when a session of this browser session ended by itself; else None."""
    return st.session_state.get("_ended")


def forget_user() -> None:
    """Drop every key of this browser session except the workspace connection: the open conversation,
    built datasets, widget values, confirmations, the token and the note of an ended session."""
    for key in list(st.session_state):
        if key != "_ws":
            del st.session_state[key]


def is_admin(user: str) -> bool:
    return access.is_admin(workspace(), user)


def sign_in(name: str, password: str) -> str:
    """Check the password, open a session and remember it in this browser. Raises AuthError."""
    ws = workspace()
    token = auth.sign_in(ws, name, password, device=_cookie(cookies.DEVICE_COOKIE))
    forget_user()  # nothing of whoever used this tab before
    user = auth.session_user(ws, token)
    _remember(ws, token, user)
    return user  # the name as stored ("nina" for "Nina")


def stay_signed_in() -> None:
    """After the signed-in user set her own password (`auth.set_password` keeping this browser's session):
    a new device token for this browser. The new hash ends her device tokens, so without one this browser,
    signing in again, waited on strangers' failed sign-ins for her name: an admin changing her password
    because someone was guessing it was locked out by those guesses."""
    _remember(workspace(), st.session_state["_token"], st.session_state["_user"])


def change_password(current: str, new: str, revoke_keys: bool) -> dict:
    """The signed-in user changes her own password (`auth.change_password`, her current one checked as
    this browser's sign-in would be); this browser stays signed in (`stay_signed_in`). Raises AuthError."""
    done = auth.change_password(workspace(), st.session_state["_user"], current, new, keep_session=session_token(),
                                revoke_keys=revoke_keys, device=_cookie(cookies.DEVICE_COOKIE))
    stay_signed_in()
    return done


def session_token() -> str | None:
    """This browser session's session token (None: nobody signed in)."""
    return st.session_state.get("_token")


def _remember(ws, token: str, user: str) -> None:
    """This browser session is `user`'s, on session `token`: kept in its state, and its cookies (the
    session's and a new device token, `auth.device_token`) set on the next `sync_cookie`."""
    st.session_state["_token"] = token
    st.session_state["_user"] = user
    st.session_state["_cookie"] = ("set", token, auth.device_token(ws, user))


def sign_out() -> None:
    """End this browser session's session, forget every per-user key and clear the cookie."""
    auth.end_session(workspace(), st.session_state.get("_token"))
    forget_user()
    st.session_state["_cookie"] = ("clear", "")


def sync_cookie() -> None:
    """Have the server set or clear the session cookie after a sign-in or sign-out (runs once), HttpOnly
    (`cookies.write`)."""
    pending = st.session_state.pop("_cookie", None)
    if pending is not None:
        cookies.write(pending)


# -- showing things safely ----------------------------------------------------------------------


def plain(text) -> str:
    """A string someone chose (a file or collection name, a heading, an error quoting them) as it should
    be seen: characters that are invisible or reorder what follows are shown as "[U+202E]", so a
    right-to-left override cannot disguise "invoice\u202efdp.exe" as "invoiceexe.pdf" and a zero-width
    space cannot make "hand\u200bbook.md" look like "handbook.md". Tabs and line breaks stay; a zero-width
    (non-)joiner between two non-ASCII characters stays too (Persian, Indic scripts and emoji need it).
    For cells of st.dataframe and other plain-text places; Markdown places take `md_escape`."""
    text = str(text).replace("\r\n", "\n")
    if text.isprintable():  # nearly every string, checked at C speed (the audit page shows thousands of cells)
        return text
    out = []
    for i, ch in enumerate(text):
        if ch in "\n\t" or not _invisible(ch):
            out.append(ch)
        elif ch in "\u200c\u200d" and 0 < i < len(text) - 1 and ord(text[i - 1]) > 127 and ord(text[i + 1]) > 127 \
                and not _invisible(text[i - 1]) and not _invisible(text[i + 1]):
            out.append(ch)
        else:
            out.append(f"[U+{ord(ch):04X}]")
    return "".join(out)


def _invisible(ch: str) -> bool:
    # control (Cc: \r, \x00 …; `plain` keeps \n and \t), format (Cf: bidi controls, zero-width, soft hyphen,
    # tags), line and paragraph separators, unassigned, private use and lone surrogate code points
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cn", "Co", "Cs")


def md_escape(text) -> str:
    """Text someone chose, made inert for every place Streamlit renders Markdown (st.markdown, captions,
    alerts, toasts, expander, button and metric labels, image captions): shown as the plain text it is.

    On top of `plain`: every Markdown character is backslash-escaped (no link, image, heading, table,
    HTML, LaTeX `$…$`, `:red[…]` directive or `:emoji:` shortcode; "/" too, because Streamlit turns
    ":material/x:" into an icon before it parses anything); a word joiner (U+2060) goes into "http://",
    "www." and after the "@" of an address, the only way to stop GitHub-flavoured Markdown from making a
    bare URL or address a link; every line break is a line break (never a paragraph, a setext heading or
    an indented code block). The app's own formatting goes around the escaped text: f"**{md_escape(name)}**".
    """
    lines = []
    for line in plain(text).split("\n"):
        line = _MD_SPECIAL.sub(r"\\\1", line.replace("\t", "    "))
        line = _AUTOLINK.sub("\\1\u2060", line)
        # a line's leading spaces as no-break spaces: not an indented code block, and an empty line does not
        # end the paragraph (a blank line would split ":gray[…]" or a "**…**" around the text)
        stripped = line.lstrip(" ")
        lines.append("\u00a0" * (len(line) - len(stripped)) + stripped or "\u00a0")
    return "  \n".join(lines)


def plain_frame(frame):
    """`frame` (a pandas DataFrame) for st.dataframe, with `plain` applied to every text cell and column
    name: the grid shows no Markdown, but a bidi override or a zero-width space works there as anywhere."""
    frame = frame.map(lambda v: plain(v) if isinstance(v, str) else v)
    return frame.rename(columns=lambda c: plain(c) if isinstance(c, str) else c)


def when(ts: float | None) -> str:
    """A Unix time as local 'YYYY-MM-DD HH:MM'."""
    if not ts:
        return ""
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def require_user() -> str:
    """The signed-in user; stops the page (after a message) when nobody is signed in."""
    user = current_user()
    if user is None:
        st.warning("Please sign in.")
        st.stop()
    return user


def require_admin() -> str:
    user = require_user()
    if not is_admin(user):
        _refused(user, "This page is for admins.")
        st.error("This page is for admins.")
        st.stop()
    return user


def _refused(user: str, reason: str) -> None:
    """Record a refusal on the audit log (`access.denied`, surface app, the page's path as target).
    A failure to record is logged; the page still says no."""
    from urllib.parse import urlparse

    try:
        page = urlparse(st.context.url or "").path or "/"
    except Exception:  # noqa: BLE001 - no browser request (a script run headless)
        page = "an admin page"
    try:
        audit.denied(workspace(), user, "app", f"page {page}", reason)
    except Exception as e:  # noqa: BLE001
        import logging

        logging.getLogger(__name__).error("could not record a refusal of %s on %s in the audit log: %s", user, page, e)
