"""Local accounts: passwords hashed with scrypt, browser sessions that expire, the first admin.

Passwords are stored as `scrypt$N$r$p$<salt b64>$<hash b64>` (hashlib.scrypt: memory-hard, in
the standard library). A session is a random token handed to the browser; only its SHA-256 is
stored, so a copy of the database does not let anyone sign in.

The workspace creates a passwordless local user `admin` for the CLI. Nobody can sign in to the
browser app as a user without a password, so a workspace where no user has one needs a first admin
(`needs_first_admin`): the browser app asks whoever opens it while the workspace holds nobody else
(`first_admin_form_open`, `create_first_admin(..., from_app=True)`), for the one-time setup code
printed where the app was started (`issue_setup_code`); otherwise, or instead, it comes from
ARCHIVIST_ADMIN_USER / ARCHIVIST_ADMIN_PASSWORD (`admin_from_env`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import secrets
import time
from collections.abc import Callable

from archivist import access, audit
from archivist.workspace import LOCAL_ADMIN, Workspace, transaction

MIN_PASSWORD = 8  # characters; long enough to stop guessing over a local network form
SESSION_SECONDS = 12 * 3600  # a browser session lasts a working day, then signs out
# sign-in back-off per typed name: FREE_FAILURES wrong passwords in a row pass, then each further
# attempt waits FIRST_DELAY seconds, doubling, at most MAX_DELAY; a pause of FAILURE_WINDOW forgets
# them. The cap is short because a lock-out of the admin is itself an attack: at one guess a minute a
# password of MIN_PASSWORD characters still holds, and the CLI (no sign-in) and API keys never wait.
FREE_FAILURES, FIRST_DELAY, MAX_DELAY, FAILURE_WINDOW = 5, 5.0, 60.0, 15 * 60.0
# scrypt cost: 2**14 * 8 * 128 bytes = 16 MiB per hash, ~50 ms on one core (OWASP's minimum is N=2**17
# with r=8 at 128 MiB; 16 MiB keeps sign-in quick on a shared 2-core box while staying memory-hard).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class AuthError(ValueError):
    """Sign-in or account problem the user can act on (wrong password, weak password, admin exists)."""


# -- passwords ----------------------------------------------------------------------------------


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """The stored form of a password: `scrypt$N$r$p$salt$hash` with a fresh 16-byte salt."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=2 * 128 * n * r + 2**20, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"scrypt${n}${r}${p}${b64(salt)}${b64(digest)}"


def password_matches(stored: str | None, password: str) -> bool:
    """True when `password` hashes to `stored`. A missing or malformed hash never matches."""
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        n, r, p = int(n), int(r), int(p)
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=n, r=r, p=p,
                             maxmem=2 * 128 * n * r + 2**20, dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


_DUMMY_HASH: str | None = None


def verify_password(ws: Workspace, name: str, password: str) -> bool:
    """True when `name` exists, has a password, and `password` is it.

    An unknown user costs the same scrypt work as a known one, so timing does not tell which names exist.
    """
    global _DUMMY_HASH
    row = ws.db.execute("SELECT password_hash FROM users WHERE name = ?", (name,)).fetchone()
    if row is None or not row[0]:
        _DUMMY_HASH = _DUMMY_HASH or hash_password("not a password")
        password_matches(_DUMMY_HASH, password)
        return False
    return password_matches(row[0], password)


def check_new_password(password: str) -> None:
    """Raise AuthError when a new password is too weak to accept."""
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"the password must have at least {MIN_PASSWORD} characters")
    if password.strip() != password:
        raise AuthError("the password must not start or end with spaces")


# -- users (listing, roles, grants and deletion live in archivist.access) ------------------------


def create_user(ws: Workspace, name: str, password: str | None, role: str = "member", *, by: str | None = None) -> dict:
    """Create a user who signs in with `password` (None: a CLI-only user without one).

    `by` is the acting user (needs the admin role; see access.add_user). Returns {name, role}.
    Raises AuthError for a weak password, ValueError for a bad or taken name or role, AccessDenied.
    """
    if password is not None:
        check_new_password(password)
    user = access.add_user(ws, name, role, by=by)
    if password is not None:
        with transaction(ws.db):
            ws.db.execute("UPDATE users SET password_hash = ? WHERE name = ?", (hash_password(password), name))
            # a password lets them sign in to the app: on the record as set_password's is
            audit.record(ws, "auth.password", user=access.current_user(ws, by), target=name)
    return user


def has_password(ws: Workspace, name: str) -> bool:
    row = ws.db.execute("SELECT password_hash FROM users WHERE name = ?", (name,)).fetchone()
    return bool(row and row[0])


def set_password(ws: Workspace, name: str, password: str, *, by: str | None = None,
                 keep_session: str | None = None, revoke_keys: bool = False) -> dict:
    """Set (or reset) a user's password, end her browser sessions and, asked, revoke her API keys.

    A password is changed because it may have leaked, and whatever leaked with it must stop working
    too: every session of hers ends (`end_sessions`) except `keep_session`, the token of the browser
    she changes her own password in, which goes on (an admin resetting someone else's keeps none of
    theirs). With `revoke_keys` every API key of hers is revoked as well (`keys.revoke_all`): offered,
    not forced, since a key may run a service that the leak did not reach. One audit record
    `auth.password` says what ended (detail `sessions_ended`, `keys_revoked`), besides each `key.revoke`.

    Users change their own; changing someone else's needs the admin role. Returns {"user",
    "sessions_ended", "keys_revoked": [prefixes]}. Raises AuthError for a weak password, LookupError
    for an unknown user, AccessDenied.
    """
    from archivist import keys

    actor = access.current_user(ws, by)
    if actor != name:
        access.require_admin(ws, actor, "set other users' passwords")
    check_new_password(password)
    hashed = hash_password(password)
    with transaction(ws.db):
        uid = access._user_id(ws, name)
        ws.db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (hashed, uid))
        # someone can sign in now (`archivist users password` on a new workspace): the first-admin form is
        # closed, and its setup code used up as create_first_admin uses it up (it says why)
        ws.db.execute("DELETE FROM setup_code")
        ended = end_sessions(ws, name, by=actor, keep_session=keep_session if actor == name else None)
        revoked = keys.revoke_all(ws, name, by=actor) if revoke_keys else []
        audit.record(ws, "auth.password", user=actor, target=name,
                     detail={"sessions_ended": ended, "keys_revoked": revoked})
    return {"user": name, "sessions_ended": ended, "keys_revoked": revoked}


def change_password(ws: Workspace, name: str, current: str, password: str, *, keep_session: str | None = None,
                    revoke_keys: bool = False, device: str | None = None) -> dict:
    """A signed-in user changing her own password in the app (the Account page, an admin's own row on the
    Admin page): `current` must be her password, checked as a sign-in checks it (the same wait after
    failures; `device` as there), so a browser left signed in can neither take the account over nor
    guess the password faster than the sign-in form. Then `set_password` as her, keeping `keep_session`
    (this browser's). Returns and raises as set_password, and AuthError for a wrong current password."""
    if _check_password(ws, name, current, device=device) != name:  # her stored name, from core.current_user
        raise AuthError("wrong user name or password")
    return set_password(ws, name, password, by=name, keep_session=keep_session, revoke_keys=revoke_keys)


def end_sessions(ws: Workspace, name: str, *, by: str | None = None, keep_session: str | None = None) -> int:
    """Sign `name` out everywhere: end every browser session of hers but `keep_session` (a token of hers:
    the browser she acts from). Her own, or anyone's with the admin role. Returns how many ended.
    Raises LookupError for an unknown user, AccessDenied."""
    actor = access.current_user(ws, by)
    if actor != name:
        access.require_admin(ws, actor, "sign other users out")
    with transaction(ws.db):
        uid = access._user_id(ws, name)
        return ws.db.execute("DELETE FROM sessions WHERE user_id = ? AND token_hash != ?",
                             (uid, _token_hash(keep_session) if keep_session else "")).rowcount


# -- the first admin ----------------------------------------------------------------------------


def needs_first_admin(ws: Workspace) -> bool:
    """True on a new workspace: no user has a password yet, so nobody can sign in."""
    return ws.db.execute("SELECT 1 FROM users WHERE password_hash IS NOT NULL LIMIT 1").fetchone() is None


def first_admin_form_open(ws: Workspace) -> bool:
    """True while the browser app may ask whoever opens it for the first admin account: nobody can
    sign in yet and the workspace holds no user but the passwordless local admin. Once people were
    added on the command line (members working with API keys, docs/api.md), the form would hand the
    workspace to the first of them to open the app (her own name promoted her), so their first admin
    is set where the app is started (ARCHIVIST_ADMIN_USER / ARCHIVIST_ADMIN_PASSWORD)."""
    return needs_first_admin(ws) and ws.db.execute(
        "SELECT 1 FROM users WHERE name != ? LIMIT 1", (LOCAL_ADMIN,)).fetchone() is None


FIRST_ADMIN_FROM_ENV = ("Nobody can sign in yet, and this workspace already has users, so the app does not ask for its "
                        "first admin: whoever runs the server sets `ARCHIVIST_ADMIN_USER` and `ARCHIVIST_ADMIN_PASSWORD` "
                        "and starts `archivist ui` again.")


_SETUP_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a terminal, typed by hand


def _setup_hash(code: str) -> str:
    return hashlib.sha256("".join(code.split()).replace("-", "").upper().encode("utf-8")).hexdigest()


def issue_setup_code(ws: Workspace) -> str:
    """A new one-time setup code for the first-admin form, replacing any earlier one; only its hash is
    stored. Whoever starts the app prints it to their terminal (as Jupyter's token, Jenkins' initial
    password): the form is open to anyone who reaches the page, and the code keeps the first admin
    with whoever can see that terminal. 12 characters of 32: 60 bits, beyond guessing over a form."""
    code = "-".join("".join(secrets.choice(_SETUP_ALPHABET) for _ in range(4)) for _ in range(3))
    with transaction(ws.db):
        ws.db.execute("INSERT INTO setup_code(id, code_hash) VALUES (1, ?) "
                      "ON CONFLICT(id) DO UPDATE SET code_hash = excluded.code_hash", (_setup_hash(code),))
    return code


def has_setup_code(ws: Workspace) -> bool:
    return ws.db.execute("SELECT 1 FROM setup_code").fetchone() is not None


def setup_code_line(code: str) -> str:
    """What the terminal shows of a setup code (`archivist ui`, or the app started another way)."""
    return f"archivist: no account can sign in yet: open the app and create the admin account with setup code {code}"


def create_first_admin(ws: Workspace, name: str, password: str, *, from_app: bool = False,
                       setup_code: str | None = None) -> dict:
    """Create the first account that can sign in, as an admin.

    Naming the passwordless local admin (`admin`) gives it this password; any other name creates a
    new admin. Raises AuthError once some user already has a password (someone got there first), and
    with `from_app` (the sign-in page's form, open to anyone who reaches the app) also when the
    workspace has users besides the local admin (`first_admin_form_open`), or `setup_code` is not the
    one issued (`issue_setup_code`), which it uses up.
    """
    name = access.check_name((name or "").strip(), "user")
    check_new_password(password)
    hashed = hash_password(password)
    with transaction(ws.db):
        if not needs_first_admin(ws):
            raise AuthError("this workspace already has an admin; sign in instead")
        if from_app and not first_admin_form_open(ws):
            raise AuthError(FIRST_ADMIN_FROM_ENV)
        if from_app:
            row = ws.db.execute("SELECT code_hash FROM setup_code").fetchone()
            if row is None or not hmac.compare_digest(row[0], _setup_hash(setup_code or "")):
                raise AuthError("wrong setup code: it is printed in the terminal where the app was started "
                                "(`archivist ui`); starting it again prints a new one")
        # used up however the admin came (the environment too): left, it would still pass the form the day this
        # workspace next has nobody who can sign in, for whoever kept that old terminal's or log's line
        ws.db.execute("DELETE FROM setup_code")
        name = account_name(ws, name)  # "Admin" is the local admin, not a second user beside it
        row = ws.db.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
        if row:
            ws.db.execute("UPDATE users SET password_hash = ?, role = 'admin' WHERE id = ?", (hashed, row[0]))
        else:
            access.check_lookalike(ws, name)  # "аdmin" (Cyrillic а) beside the local admin: raises ValueError
            ws.db.execute("INSERT INTO users(name, role, password_hash) VALUES (?, 'admin', ?)", (name, hashed))
        audit.record(ws, "auth.first_admin", user=name, target=name)
    return {"name": name, "role": "admin"}


def admin_from_env(ws: Workspace, env: dict | None = None) -> dict | None:
    """On a new workspace, create the first admin from ARCHIVIST_ADMIN_USER / ARCHIVIST_ADMIN_PASSWORD.

    Returns the user created, or None when the variables are unset or an admin exists already.
    Raises AuthError when they are set but not acceptable (a weak password says so at start-up).
    """
    env = os.environ if env is None else env
    name, password = env.get("ARCHIVIST_ADMIN_USER"), env.get("ARCHIVIST_ADMIN_PASSWORD")
    if not name or not password or not needs_first_admin(ws):
        return None
    try:
        return create_first_admin(ws, name, password)
    except AuthError as e:
        if not needs_first_admin(ws):  # another server process did it at the same moment
            return None
        raise AuthError(f"ARCHIVIST_ADMIN_USER/ARCHIVIST_ADMIN_PASSWORD: {e}") from None


# -- sessions -----------------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def account_name(ws: Workspace, name: str) -> str:
    """The stored user name that a typed one means: itself when a user has it exactly, else the one
    user whose name is the same without regard to case ("Nina" for nina). Two users whose names differ
    only in case (possible before access.add_user refused that) are told apart by exact typing only:
    an inexact name then matches neither. Returns `name` unchanged when nothing matches."""
    if ws.db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
        return name
    folded = name.casefold()
    same = [r[0] for r in ws.db.execute("SELECT name FROM users") if r[0].casefold() == folded]
    return same[0] if len(same) == 1 else name


def sign_in(ws: Workspace, name: str, password: str, seconds: float = SESSION_SECONDS,
            clock: Callable[[], float] = time.time, device: str | None = None) -> str:
    """Check the password and open a session; returns its token. The name is matched without regard to
    case when that names one user (`account_name`). Raises AuthError on a wrong name or password, and,
    without checking the password, while that name waits after failures (`retry_after`; `clock`
    gives the time, for tests). Names no user has wait alike, so the wait tells no name apart.
    `device`: the browser's `device_token`; a valid one of this name counts and waits on that browser's
    failures alone."""
    return create_session(ws, _check_password(ws, name, password, clock, device), seconds, signed_in=True)


def _check_password(ws: Workspace, name: str, password: str, clock: Callable[[], float] = time.time,
                    device: str | None = None) -> str:
    """The account `name` means, once `password` proved hers: sign_in's wait after failures, count and
    audit (its docstring says how). Raises AuthError."""
    name = account_name(ws, (name or "").replace("\0", "").strip())  # no NUL: _counted_as keeps those keys apart
    counted = _counted_as(ws, name, device)
    # a name no user has is often a password typed into the wrong field: it is not kept
    known = ws.db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is not None
    who = {"target": name[:64] if known else None, "detail": {} if known else {"name": "unknown"}}
    # the gate and the count in one transaction, the attempt counted as a failure before its password is
    # checked (and cleared if it proves right): counted after the check, guesses sent at the same moment
    # all passed the gate, each reading the count before any of them had added to it
    with transaction(ws.db):
        now = clock()
        wait = retry_after(ws, counted, now)
        if wait <= 0:
            _count_failure(ws, counted, now)
    if wait > 0:
        if _first_refusal(ws, counted):
            audit.record(ws, "auth.sign_in_failed", target=who["target"], detail={**who["detail"], "throttled": round(wait)})
        raise AuthError(f"too many failed sign-ins for this name: try again in {math.ceil(wait)} seconds")
    if not verify_password(ws, name, password):
        audit.record(ws, "auth.sign_in_failed", **who)
        raise AuthError("wrong user name or password")
    with transaction(ws.db):
        ws.db.execute("DELETE FROM sign_in_failures WHERE name_hash = ?", (_name_hash(counted),))
    return name


def device_token(ws: Workspace, name: str) -> str:
    """A token for the browser that has just signed in as `name` (OWASP's device cookie). The wait after
    failures is the name's, and anyone may fail for any name: a script sending one wrong password a
    minute kept the admin out of the app for good. A browser holding this token counts and waits on its
    own failures instead, so strangers' guesses do not lock out the browsers the owner signed in from.
    It opens nothing by itself (the password is still checked), and it is an HMAC under the stored
    password hash: a new password ends it. Raises LookupError for a name with no password."""
    nonce = secrets.token_hex(16)
    mac = _device_mac(ws, name, nonce)
    if mac is None:
        raise LookupError(f"no user {name!r} with a password")
    return f"{nonce}_{mac}"


def _device_mac(ws: Workspace, name: str, nonce: str) -> str | None:
    row = ws.db.execute("SELECT password_hash FROM users WHERE name = ?", (name,)).fetchone()
    if row is None or not row[0]:
        return None
    return hmac.new(row[0].encode("utf-8"), f"device\0{name}\0{nonce}".encode("utf-8"), hashlib.sha256).hexdigest()


def _counted_as(ws: Workspace, name: str, device: str | None) -> str:
    """Whose failures a sign-in attempt for `name` counts and waits on: the name's, or with a valid
    `device_token` of that name, that browser's own (a key no typed name can have: sign_in drops NULs)."""
    nonce, _, mac = (device or "").partition("_")
    want = _device_mac(ws, name, nonce) if nonce and mac else None
    return f"{name}\0device {nonce}" if want is not None and hmac.compare_digest(want.encode(), mac.encode()) else name


_REFUSALS_NOTED: dict[tuple[str, str], float] = {}  # (workspace, name hash): the failure whose wait is audited


def _first_refusal(ws: Workspace, name: str) -> bool:
    """Whether this is the first refusal this process sees in `name`'s current wait. A refused try costs
    no scrypt check, so auditing each let a script with no password add thousands of audit rows a
    second; one per wait (and app process) still says that someone kept trying, and for how long."""
    key = (str(ws.home), _name_hash(name))
    row = ws.db.execute("SELECT last_failure FROM sign_in_failures WHERE name_hash = ?", (key[1],)).fetchone()
    if row is not None and _REFUSALS_NOTED.get(key) == row[0]:
        return False
    if len(_REFUSALS_NOTED) >= 10_000:  # each name here cost FREE_FAILURES scrypt checks first: few, bounded still
        _REFUSALS_NOTED.clear()
    _REFUSALS_NOTED[key] = row[0] if row is not None else -1.0
    return True


def _name_hash(name: str) -> str:
    return hashlib.sha256(name.casefold().encode("utf-8")).hexdigest()


def _count_failure(ws: Workspace, name: str, now: float) -> None:
    """One more failure for `name` (an attempt counts as one until its password proves right), in one
    statement so that two app processes both count theirs; a failure FAILURE_WINDOW after the one
    before starts the count again. Tidies forgotten rows."""
    ws.db.execute("DELETE FROM sign_in_failures WHERE last_failure < ?", (now - FAILURE_WINDOW,))
    ws.db.execute("INSERT INTO sign_in_failures(name_hash, failures, last_failure) VALUES (?, 1, ?) "
                  "ON CONFLICT(name_hash) DO UPDATE SET failures = failures + 1, last_failure = excluded.last_failure",
                  (_name_hash(name), now))


def retry_after(ws: Workspace, name: str, now: float | None = None) -> float:
    """Seconds until `name` may try a password again (0: now): after FREE_FAILURES failures in a row,
    FIRST_DELAY seconds from the last one, doubling with each further failure, at most MAX_DELAY."""
    now = time.time() if now is None else now
    row = ws.db.execute("SELECT failures, last_failure FROM sign_in_failures WHERE name_hash = ?",
                        (_name_hash(name),)).fetchone()
    if row is None or row[0] < FREE_FAILURES or now - row[1] > FAILURE_WINDOW:
        return 0.0
    # the exponent capped: 2 ** 1030 is no float, and a day of one guess a minute reaches it
    delay = min(MAX_DELAY, FIRST_DELAY * 2 ** min(row[0] - FREE_FAILURES, 32))
    return max(0.0, row[1] + delay - now)


def create_session(ws: Workspace, user: str, seconds: float = SESSION_SECONDS, signed_in: bool = False) -> str:
    """A new session token for `user`, valid for `seconds`. Only its hash is stored; with `signed_in`
    (a password was checked) the sign-in is audited with it. Raises LookupError."""
    token = secrets.token_urlsafe(32)
    with transaction(ws.db):
        uid = access._user_id(ws, user)
        ws.db.execute("DELETE FROM sessions WHERE expires_at < ?", (time.time(),))  # tidy as we go
        ws.db.execute("INSERT INTO sessions(token_hash, user_id, expires_at) VALUES (?, ?, ?)",
                      (_token_hash(token), uid, time.time() + seconds))
        if signed_in:
            audit.record(ws, "auth.sign_in", user=user, target=user)
    return token


def session_user(ws: Workspace, token: str | None) -> str | None:
    """The user a live session token belongs to, or None (unknown, expired, or the user was removed)."""
    if not token:
        return None
    row = ws.db.execute("SELECT u.name, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id "
                        "WHERE s.token_hash = ?", (_token_hash(token),)).fetchone()
    if row is None:
        return None
    if row["expires_at"] < time.time():
        end_session(ws, token)
        return None
    return row["name"]


def end_session(ws: Workspace, token: str | None) -> None:
    """Sign out: forget the session (nothing happens for an unknown token)."""
    if token:
        with transaction(ws.db):
            ws.db.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))
