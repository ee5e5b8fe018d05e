"""Who may do what: the one place every entry point asks (CLI, UI, API, fine-tuning datasets).

Levels are ordered read < write < admin. A user with role 'admin' may do anything everywhere.
"""

from __future__ import annotations

from archivist.workspace import LOCAL_ADMIN, Workspace

LEVELS = {"read": 1, "write": 2, "admin": 3}


class AccessDenied(PermissionError):
    """The user may not do this to this collection (or does not exist)."""


def current_user(ws: Workspace, name: str | None = None) -> str:
    """The acting user's name: the explicit one, else settings.user, else the local admin."""
    name = name or ws.settings.user or LOCAL_ADMIN
    if not ws.db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
        raise AccessDenied(f"no such user: {name!r} (create it with `archivist users add {name}`)")
    return name


def is_admin(ws: Workspace, user: str) -> bool:
    row = ws.db.execute("SELECT role FROM users WHERE name = ?", (user,)).fetchone()
    return bool(row and row[0] == "admin")


def collections_for(ws: Workspace, user: str, level: str = "read") -> list[str]:
    """Names of the collections `user` holds at least `level` on (every collection for an admin)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {sorted(LEVELS)}, got {level!r}")
    if is_admin(ws, user):
        return ws.collections()
    rows = ws.db.execute(
        "SELECT c.name, g.level FROM grants g JOIN users u ON u.id = g.user_id "
        "JOIN collections c ON c.id = g.collection_id WHERE u.name = ? ORDER BY c.name",
        (user,),
    ).fetchall()
    return [name for name, lvl in rows if LEVELS[lvl] >= LEVELS[level]]


def readable_collections(ws: Workspace, user: str | None = None) -> list[str]:
    """The collections retrieval may look in for this user. Search, ask, documents and datasets call this."""
    return collections_for(ws, current_user(ws, user), "read")


def require(ws: Workspace, user: str | None, collection: str, level: str) -> None:
    """Raise AccessDenied unless `user` holds `level` on `collection`.

    Creating a new collection (one that does not exist yet) needs the admin role.
    """
    user = current_user(ws, user)
    if is_admin(ws, user):
        return
    if ws.collection_id(collection) is None:
        raise AccessDenied(f"user {user!r} may not create collection {collection!r}")
    if collection not in collections_for(ws, user, level):
        raise AccessDenied(f"user {user!r} has no {level} access to collection {collection!r}")
