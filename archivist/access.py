"""Who may do what: the one place every entry point asks (CLI, UI, API, fine-tuning datasets).

Levels are ordered read < write < admin. A user with role 'admin' may do anything everywhere;
a 'member' holds per-collection grants. Every document belongs to one collection, so "may read
collection C" is the whole question for search, ask, citations, documents and datasets:

    readable_collections(ws, user)          # the collections retrieval may look in
    require(ws, user, "finance", "write")   # raise AccessDenied unless allowed

Managing users and grants goes through the functions below, each checking its actor (`by`,
default: the acting user of the settings, else the local admin): adding, listing-all and deleting
users and creating collections need the admin role; granting and revoking on a collection need the
admin role or an admin grant on that collection.

Errors: AccessDenied (a PermissionError) when the actor may not; ValueError for a bad name, role or
level or a user that already exists; LookupError for a user or collection that does not exist
(only raised after the actor was shown to be allowed to know).
"""

from __future__ import annotations

import re
import unicodedata

from archivist import audit
from archivist.workspace import LOCAL_ADMIN, Workspace, transaction

LEVELS = {"read": 1, "write": 2, "admin": 3}
ROLES = ("admin", "member")
MAX_NAME = 64

# Names show up in the CLI, the UI and log lines: letters, digits and a few separators, no
# control or format characters, no leading/trailing space, nothing that looks like a path.
_NAME = re.compile(r"^[^\W_][\w .@+-]*$", re.UNICODE)


class AccessDenied(PermissionError):
    """The user may not do this to this collection (or does not exist)."""


def current_user(ws: Workspace, name: str | None = None) -> str:
    """The acting user's name: the explicit one, else settings.user, else the local admin."""
    name = name or ws.settings.user or LOCAL_ADMIN
    if not ws.db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
        # `users add` refuses a name that differs from one only in case: do not suggest it then
        twin = next((r[0] for r in ws.db.execute("SELECT name FROM users") if r[0].casefold() == name.casefold()), None)
        raise AccessDenied(f"no such user: {name!r} (user names are exact here: did you mean {twin!r}?)" if twin else
                           f"no such user: {name!r} (create it with `archivist users add {name}`)")
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
    return [name for name, lvl in rows if LEVELS.get(lvl, 0) >= LEVELS[level]]


def may_read_all(ws: Workspace, user: str | None, collections) -> bool:
    """Whether `user` (None: the acting user) may read every one of `collections`: the rule for
    anything trained on them (adapters, adapted embedders, learned rerankers)."""
    return set(collections) <= set(readable_collections(ws, user))


def readable_collections(ws: Workspace, user: str | None = None) -> list[str]:
    """The collections retrieval may look in for this user. Search, ask, documents and datasets call this."""
    return collections_for(ws, current_user(ws, user), "read")


def can(ws: Workspace, user: str | None, collection: str, level: str) -> bool:
    """Whether `user` (None: the acting user) holds `level` on the existing `collection`."""
    try:
        require(ws, user, collection, level)
    except AccessDenied:
        return False
    return ws.collection_id(collection) is not None


def require(ws: Workspace, user: str | None, collection: str, level: str) -> None:
    """Raise AccessDenied unless `user` holds `level` on `collection`.

    Creating a new collection (one that does not exist yet) needs the admin role. A member gets
    the same message for a collection that does not exist as for one they may not use, so the
    error never tells them which collection names exist.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {sorted(LEVELS)}, got {level!r}")
    user = current_user(ws, user)
    if is_admin(ws, user):
        if ws.collection_id(collection) is None:
            check_name(collection, "collection")
        return
    if collection not in collections_for(ws, user, level):
        raise AccessDenied(f"user {user!r} has no {level} access to collection {collection!r} "
                           "(or it does not exist; only admins create collections)")


def require_admin(ws: Workspace, user: str | None, doing: str = "do this") -> str:
    """Raise AccessDenied unless `user` (None: the acting user) has the admin role; returns the name."""
    user = current_user(ws, user)
    if not is_admin(ws, user):
        raise AccessDenied(f"user {user!r} may not {doing}: it needs the admin role")
    return user


def check_name(name: str, what: str = "name") -> str:
    """Return `name` if it is a valid user or collection name, else raise ValueError saying why."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} name must not be empty")
    if unicodedata.normalize("NFC", name) != name:
        raise ValueError(f"{what} name {name!r} is not in Unicode normal form NFC")
    if len(name) > MAX_NAME:
        raise ValueError(f"{what} name {name[:20]!r}... is longer than {MAX_NAME} characters")
    if name != name.strip() or not _NAME.match(name):
        raise ValueError(f"{what} name {name!r} may hold only letters, digits, space and . @ + - _ "
                         "and must start with a letter or digit")
    return name


def blank_collection(value: str, field: str) -> str | None:
    """Why `value`, a collection name given in `field` (`-c`, the field 'collection'), is refused when
    it is empty or blank, else None: `-c "$C"` or `collection=""` with C unset was read as no collection
    named, and searched, answered or stored into every readable or the default one without a word. One
    wording for the CLI (exit 2) and the API (422)."""
    if value.strip():
        return None
    return f"a collection name is empty ({value!r}): name a collection or leave {field} out"


# Letters of Cyrillic and Greek that look like Latin ones (lower case: the skeleton is case folded, so
# capitals are covered by theirs, e.g. Cyrillic Н -> н -> h), after Unicode's confusables.txt.
_LOOKALIKE = str.maketrans("авеһнікмјорсѕтухԁԛԝӏүαβεζηικμνορτυχ", "abehhikmjopcstyxdqwlyabezhikmnoptyx")
_CONFUSABLE_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK")  # mixing others (Han and kana in a Japanese name) is ordinary


def skeleton(name: str) -> str:
    """What a name looks like: NFKC (fullwidth and styled letters become plain ones), case folded,
    Cyrillic and Greek look-alikes as the Latin letters they look like. Two names with one skeleton
    are told apart by no reader of a list, a log line or a sign-in form."""
    return unicodedata.normalize("NFKC", name).casefold().translate(_LOOKALIKE)


def check_lookalike(ws: Workspace, name: str) -> None:
    """Raise ValueError for a new user name that mixes Latin, Cyrillic and Greek letters ("аdmin"
    with a Cyrillic а) or that looks like an existing user's (`skeleton`): a look-alike account is how
    someone passes for another in the audit log and the Admin page."""
    letters = {unicodedata.name(c, "").split(" ")[0] for c in unicodedata.normalize("NFKC", name) if c.isalpha()}
    mixed = sorted(letters & set(_CONFUSABLE_SCRIPTS))
    if len(mixed) > 1:
        raise ValueError(f"user name {name!r} mixes {' and '.join(s.title() for s in mixed)} letters, which look alike: "
                         "use one script")
    twin = next((r[0] for r in ws.db.execute("SELECT name FROM users") if skeleton(r[0]) == skeleton(name)), None)
    if twin is not None:
        raise ValueError(f"user name {name!r} looks like the existing user {twin!r} (letters of another script or "
                         "form that look the same): choose a name that reads differently")


# -- users ------------------------------------------------------------------------------------


def _user_id(ws: Workspace, name: str) -> int:
    row = ws.db.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise LookupError(f"no such user: {name!r}")
    return row[0]


def grants_of(ws: Workspace, user: str) -> dict[str, str]:
    """{collection: level} of the grants `user` holds (empty for an unknown user)."""
    rows = ws.db.execute(
        "SELECT c.name, g.level FROM grants g JOIN users u ON u.id = g.user_id "
        "JOIN collections c ON c.id = g.collection_id WHERE u.name = ? ORDER BY c.name", (user,)).fetchall()
    return {c: lvl for c, lvl in rows}


def add_user(ws: Workspace, name: str, role: str = "member", *, by: str | None = None) -> dict:
    """Create user `name` with `role` (admin | member). Needs the admin role.

    Returns {"name", "role"}. Raises ValueError for a bad name or role or a name already taken.
    """
    actor = require_admin(ws, by, "add users")
    check_name(name, "user")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    with transaction(ws.db):
        if ws.db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
            raise ValueError(f"user {name!r} already exists")
        # sign-in matches names without regard to case (auth.account_name): "Nina" beside nina would make it ambiguous
        twin = next((r[0] for r in ws.db.execute("SELECT name FROM users") if r[0].casefold() == name.casefold()), None)
        if twin is not None:
            raise ValueError(f"user {twin!r} already exists (user names differ by more than case: they are "
                             "matched without it at sign-in)")
        check_lookalike(ws, name)
        ws.db.execute("INSERT INTO users(name, role) VALUES (?, ?)", (name, role))
        audit.record(ws, "user.add", user=actor, target=name, detail={"role": role})
    return {"name": name, "role": role}


def set_role(ws: Workspace, name: str, role: str, *, by: str | None = None) -> dict:
    """Make user `name` an admin or a member. Needs the admin role; the last admin stays one."""
    actor = require_admin(ws, by, "change roles")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    with transaction(ws.db):
        _user_id(ws, name)
        if role != "admin" and is_admin(ws, name) and _admins(ws) <= 1:
            raise ValueError(f"{name!r} is the last admin; make another user admin first")
        ws.db.execute("UPDATE users SET role = ? WHERE name = ?", (role, name))
        audit.record(ws, "user.role", user=actor, target=name, detail={"role": role})
    return {"name": name, "role": role}


def _admins(ws: Workspace) -> int:
    return ws.db.execute("SELECT COUNT(*) FROM users WHERE role = 'admin'").fetchone()[0]


def delete_user(ws: Workspace, name: str, *, by: str | None = None) -> None:
    """Remove user `name` with its grants, keys and sessions (the schema cascades). Needs the
    admin role. Raises LookupError for an unknown user, ValueError for the last admin.

    What records its owner (jobs and runs, saved datasets, feedback, evaluations) passes to a name no user can
    have (`former_owner`): a user created later under the same name inherits none of it (a
    security test saw a new "dave" list the old dave's uploads and their collections)."""
    actor = require_admin(ws, by, "delete users")
    with transaction(ws.db):
        uid = _user_id(ws, name)
        if is_admin(ws, name) and _admins(ws) <= 1:
            raise ValueError(f"{name!r} is the last admin and cannot be deleted")
        former = former_owner(name, audit.record(ws, "user.delete", user=actor, target=name))
        ws.db.execute("UPDATE jobs SET owner = ? WHERE owner = ?", (former, name))
        for table in ("feedback", "evaluations"):  # their user_id goes NULL below: `users erase` finds them by this
            ws.db.execute(f"UPDATE {table} SET former_owner = ? WHERE user_id = ?", (former, uid))
        ws.db.execute("DELETE FROM users WHERE name = ?", (name,))
    from archivist.finetune import dataset_store

    dataset_store.disown(ws, name, former)


def former_owner(name: str, record: int) -> str:
    """The owner recorded for what deleted user `name` owned: not a valid user name. Numbered by the
    id of its `user.delete` audit record, which is never reused; the user's id was (SQLite gives a
    new user the id of the last one deleted), so two people who had one name got one former owner."""
    return f"{name}#deleted-{record}"


def list_users(ws: Workspace, *, by: str | None = None) -> list[dict]:
    """[{"name", "role", "grants": {collection: level}}] by name.

    An admin sees every user; anyone else sees only their own entry (the full list would tell
    them which collections exist and who reads them).
    """
    actor = current_user(ws, by)
    rows = ws.db.execute("SELECT name, role FROM users ORDER BY name").fetchall()
    if not is_admin(ws, actor):
        rows = [r for r in rows if r[0] == actor]
    return [{"name": n, "role": r, "grants": grants_of(ws, n)} for n, r in rows]


# -- collections and grants -------------------------------------------------------------------


def create_collection(ws: Workspace, name: str, *, by: str | None = None) -> int:
    """Create collection `name` (no-op if it exists); returns its id. Needs the admin role."""
    actor = require_admin(ws, by, "create collections")
    check_name(name, "collection")
    with transaction(ws.db):
        if ws.collection_id(name) is None:
            audit.record(ws, "collection.create", user=actor, target=name)
        return ws.collection_id(name, create=True)


def list_collections(ws: Workspace, *, by: str | None = None) -> list[dict]:
    """[{"name", "level", "documents"}] for the collections the actor may read, by name.
    `level` is "admin" for admins, else the grant's level."""
    actor = current_user(ws, by)
    admin = is_admin(ws, actor)
    mine = grants_of(ws, actor)
    out = []
    for name in collections_for(ws, actor, "read"):
        n = ws.db.execute("SELECT COUNT(*) FROM documents d JOIN collections c ON c.id = d.collection_id "
                          "WHERE c.name = ?", (name,)).fetchone()[0]
        out.append({"name": name, "level": "admin" if admin else mine[name], "documents": n})
    return out


def _require_collection_admin(ws: Workspace, by: str | None, collection: str) -> str:
    actor = current_user(ws, by)
    if is_admin(ws, actor):
        return actor
    if ws.collection_id(collection) is None or grants_of(ws, actor).get(collection) != "admin":
        raise AccessDenied(f"user {actor!r} may not manage access to collection {collection!r}: "
                           "it needs the admin role or an admin grant on that collection")
    return actor


def grant(ws: Workspace, user: str, collection: str, level: str, *, by: str | None = None) -> dict:
    """Give `user` `level` (read | write | admin) on `collection`, replacing a previous grant.

    The actor needs the admin role (then a missing collection is created) or an admin grant on
    the collection. Returns {"user", "collection", "level"}. Raises ValueError for a bad level,
    LookupError for an unknown user, AccessDenied when the actor may not.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    actor = _require_collection_admin(ws, by, collection)
    uid = _user_id(ws, user)
    cid = ws.collection_id(collection)
    if cid is None:
        cid = create_collection(ws, collection, by=actor)
    with transaction(ws.db):
        ws.db.execute("INSERT INTO grants(user_id, collection_id, level) VALUES (?, ?, ?) "
                      "ON CONFLICT(user_id, collection_id) DO UPDATE SET level = excluded.level", (uid, cid, level))
        audit.record(ws, "access.grant", user=actor, target=user, detail={"collection": collection, "level": level})
    return {"user": user, "collection": collection, "level": level}


def revoke(ws: Workspace, user: str, collection: str, *, by: str | None = None) -> bool:
    """Remove `user`'s grant on `collection`; returns whether there was one. Same actor rule as
    `grant`. Raises LookupError for an unknown user or collection."""
    actor = _require_collection_admin(ws, by, collection)
    uid = _user_id(ws, user)
    cid = ws.collection_id(collection)
    if cid is None:
        raise LookupError(f"no such collection: {collection!r}")
    with transaction(ws.db):
        cur = ws.db.execute("DELETE FROM grants WHERE user_id = ? AND collection_id = ?", (uid, cid))
        if cur.rowcount:
            audit.record(ws, "access.revoke", user=actor, target=user, detail={"collection": collection})
    return cur.rowcount > 0
