"""API keys: one or more per user, stored hashed, revocable.

A key reads `ak-<prefix>-<secret>`: the 8-hex-digit prefix names the key (it is stored in clear so
a key can be listed and revoked by it), the secret is 32 random bytes. Only the sha256 of the whole
key is stored: a high-entropy random key needs no slow password hash, and a stolen database
yields no usable key. The key itself is shown once, when it is created.

Keys are their owner's: the admin role creates, lists and revokes anyone's; a member (`by`, None:
the acting user of the settings) only their own, and learns nothing of other users' keys or names.

A member acting with an API key (the HTTP API: `with_key`) may list her keys and revoke that key
alone, as OpenAI's project keys and GitHub's tokens cannot manage keys: a leaked key that could mint
keys would outlive its revocation, and one that could revoke her others would lock her out. She
creates keys, and revokes the others, with `archivist keys` (or an admin does). An admin's key keeps
every key right: it already carries the whole workspace (every collection, every user's keys, which
it lists and revokes), so refusing it would add no protection and would take away provisioning keys
over HTTP for people and services that have no shell on the server.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from archivist import access, audit
from archivist.workspace import Workspace, transaction

KEY_SCHEME = "ak"
_KEY = re.compile(r"^ak-([0-9a-f]{8})-([A-Za-z0-9_-]{20,})$")
_PREFIX = re.compile(r"^(?:ak-)?([0-9a-f]{8})$")


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(ws: Workspace, user: str, by: str | None = None, *, with_key: bool = False) -> str:
    """Create a new key for `user` and return it (the only time it is ever visible). `by` (None: the
    acting user) must be `user` or have the admin role: a key acts as its owner. `with_key`: `by`
    asks with an API key (the HTTP API), which must then be an admin's (see the module's docstring).

    Raises AccessDenied for a member asking for another user's key (whether or not that user exists)
    or asking with a key, LookupError when there is no such user.
    """
    actor = _may_manage(ws, by, user, "create an API key for")
    if with_key and not access.is_admin(ws, actor):
        raise access.AccessDenied(f"an API key of user {actor!r} cannot create API keys (only an admin's can): "
                                  "create one with `archivist keys create` on the server, or ask an admin")
    row = _user_row(ws, user)
    for _ in range(5):  # a prefix collision is a 1-in-4-billion event; retry rather than fail
        prefix = secrets.token_hex(4)
        key = f"{KEY_SCHEME}-{prefix}-{secrets.token_urlsafe(32)}"
        with transaction(ws.db):
            if ws.db.execute("SELECT 1 FROM api_keys WHERE prefix = ?", (prefix,)).fetchone():
                continue
            ws.db.execute("INSERT INTO api_keys(user_id, prefix, key_hash) VALUES (?, ?, ?)", (row[0], prefix, _hash(key)))
            audit.record(ws, "key.create", user=actor, target=f"ak-{prefix}", detail={"owner": user})
        return key
    raise RuntimeError("could not find a free key prefix")


def _prefix_of(prefix_or_key: str) -> str | None:
    text = (prefix_or_key or "").strip()
    m = _KEY.match(text) or _PREFIX.match(text)
    return m.group(1) if m else None


def revoke_key(ws: Workspace, prefix_or_key: str, by: str | None = None, *, with_key: str | None = None) -> dict:
    """Revoke a key given by its prefix (`ak-1a2b3c4d` or `1a2b3c4d`) or in full, as `by` (None: the
    acting user): an admin any key, a member their own; a member asking with the API key `with_key`
    (the HTTP API) only that key (see the module's docstring).

    Returns the key's listing (see list_keys). Raises LookupError when no such key exists, or it is
    another user's and `by` is a member (the same words), AccessDenied for a member's key naming
    another of her keys, and ValueError when the text looks like neither a key nor a prefix.
    Revoking twice is harmless.
    """
    actor = access.current_user(ws, by)
    prefix = _prefix_of(prefix_or_key)
    if prefix is None:
        raise ValueError(f"{prefix_or_key!r} is neither an API key nor a key prefix like ak-1a2b3c4d")
    row = ws.db.execute("SELECT k.key_hash, u.name FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.prefix = ?",
                        (prefix,)).fetchone()
    if row is None or (row[1] != actor and not access.is_admin(ws, actor)):
        raise LookupError(f"no API key with prefix ak-{prefix}")
    if _KEY.match(prefix_or_key.strip()) and not hmac.compare_digest(row[0], _hash(prefix_or_key.strip())):
        raise LookupError(f"no API key with prefix ak-{prefix} matches that key")
    if with_key is not None and _prefix_of(with_key) != prefix and not access.is_admin(ws, actor):
        raise access.AccessDenied(f"an API key of user {actor!r} can revoke only itself, not ak-{prefix}: revoke "
                                  "that key with `archivist keys revoke` on the server, or ask an admin")
    with transaction(ws.db):
        _revoke(ws, prefix, actor)
    return next(k for k in list_keys(ws, by=actor) if k["prefix"] == f"{KEY_SCHEME}-{prefix}")


def revoke_all(ws: Workspace, user: str, by: str | None = None) -> list[str]:
    """Revoke every live key of `user` (a password change that may have leaked with them, auth.set_password),
    each audited as `key.revoke`, in the caller's transaction when there is one. `by` (None: the acting
    user) is `user` or an admin. Returns the revoked prefixes (`ak-1a2b3c4d`), oldest first. Raises
    AccessDenied, LookupError for no such user."""
    actor = _may_manage(ws, by, user, "revoke the API keys of")
    with transaction(ws.db):
        rows = ws.db.execute("SELECT prefix FROM api_keys WHERE user_id = ? AND revoked_at IS NULL ORDER BY created_at, id",
                             (_user_row(ws, user)[0],)).fetchall()
        for (prefix,) in rows:
            _revoke(ws, prefix, actor, {"owner": user})
    return [f"{KEY_SCHEME}-{prefix}" for (prefix,) in rows]


def _revoke(ws: Workspace, prefix: str, actor: str, detail: dict | None = None) -> None:
    """Revoke key `prefix` and audit it as `key.revoke`, in the caller's transaction (`revoke_key`,
    `revoke_all`). A key revoked already keeps the time it was revoked at."""
    ws.db.execute("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, (julianday('now') - 2440587.5) * 86400.0) "
                  "WHERE prefix = ?", (prefix,))
    audit.record(ws, "key.revoke", user=actor, target=f"ak-{prefix}", detail=detail)


def user_for_key(ws: Workspace, key: str | None) -> str | None:
    """The user a valid, unrevoked key belongs to; None for anything else (malformed, unknown, revoked)."""
    m = _KEY.match((key or "").strip())
    if not m:
        return None
    row = ws.db.execute(
        "SELECT k.key_hash, k.revoked_at, u.name FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.prefix = ?",
        (m.group(1),)).fetchone()
    if row is None:
        return None
    # constant-time comparison, so response timing says nothing about how much of a guess was right
    if not hmac.compare_digest(row["key_hash"], _hash(key.strip())):
        audit.key_rejected(ws, m.group(1), row["name"], "wrong secret")
        return None
    if row["revoked_at"] is not None:
        audit.key_rejected(ws, m.group(1), row["name"], "revoked")  # someone still uses it: on the record
        return None
    audit.key_used(ws, m.group(1), row["name"])
    return row["name"]


def list_keys(ws: Workspace, user: str | None = None, by: str | None = None) -> list[dict]:
    """Keys (never their secrets): [{"prefix", "user", "created_at", "revoked_at"}], oldest first;
    `user`'s only when given. A member `by` (None: the acting user) sees their own keys alone.
    Raises AccessDenied for a member naming another user (as create_key: not their own keys, shown
    under that name, nor a confirmed user name), LookupError for no such user (not an empty list,
    which would say the user exists and has no key)."""
    actor = access.current_user(ws, by)
    if user is not None:
        _may_manage(ws, actor, user, "list the API keys of")
        _user_row(ws, user)
    elif not access.is_admin(ws, actor):
        user = actor
    sql = ("SELECT 'ak-' || k.prefix AS prefix, u.name AS user, k.created_at, k.revoked_at "
           "FROM api_keys k JOIN users u ON u.id = k.user_id")
    args: tuple = ()
    if user is not None:
        sql += " WHERE u.name = ?"
        args = (user,)
    return [dict(r) for r in ws.db.execute(sql + " ORDER BY k.created_at, k.id", args)]


def _user_row(ws: Workspace, user: str):
    """The users row of `user`. Raises LookupError naming the user when there is none."""
    row = ws.db.execute("SELECT id FROM users WHERE name = ?", (user,)).fetchone()
    if row is None:
        raise LookupError(f"no such user: {user!r} (create it with `archivist users add {user}`)")
    return row


def _may_manage(ws: Workspace, by: str | None, owner: str, doing: str) -> str:
    """The acting user, if they may manage `owner`'s keys (theirs, or anyone's with the admin role).
    Raises AccessDenied otherwise, before `owner` is looked up (so a member confirms no user name)."""
    actor = access.current_user(ws, by)
    if actor != owner and not access.is_admin(ws, actor):
        raise access.AccessDenied(f"user {actor!r} may not {doing} another user: it needs the admin role")
    return actor
