"""The workspace: one folder holding all state.

    $ARCHIVIST_HOME/
        archivist.db     SQLite (WAL): the source of truth
        index/           FAISS files, one per collection, rebuildable from SQLite
        adapters/ runs/ uploads/ datasets/

Schema changes are numbered migrations (archivist/schema.py) applied in order on open (PRAGMA user_version);
a process refuses to write once a newer release has migrated the workspace under it (`transaction`).
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from archivist.schema import MIGRATIONS  # migrate reads it from here (tests replace it here)
from archivist.settings import Settings


def _rechain_audit(db: sqlite3.Connection) -> None:
    from archivist import audit  # the audit module imports this one

    audit.rechain(db)


# Steps in Python that run after a migration's SQL, in its transaction: {schema version: step}
AFTER_MIGRATION = {12: _rechain_audit}

LOCAL_ADMIN = "admin"


class WorkspaceError(RuntimeError):
    """A workspace problem the user can act on (disk full, unreadable folder, newer schema)."""


class DatabaseDamaged(WorkspaceError):
    """archivist.db is damaged (`damaged`); `reason` is SQLite's own words, without the path."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class NewerSchema(WorkspaceError):
    """A newer release migrated the workspace to a schema this one does not know (`newer_schema` names
    both): no retry helps, only this process restarted with that release (the API's 503
    `workspace_upgraded`, with no Retry-After)."""


@dataclass
class Workspace:
    settings: Settings
    db: sqlite3.Connection

    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    def path(self, *parts: str) -> Path:
        p = self.home.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- small helpers used everywhere -------------------------------------------------
    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with transaction(self.db):
            self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def collection_id(self, name: str, create: bool = False) -> int | None:
        row = self.db.execute("SELECT id FROM collections WHERE name = ?", (name,)).fetchone()
        if row:
            return row[0]
        if not create:
            return None
        with transaction(self.db):
            cur = self.db.execute("INSERT OR IGNORE INTO collections(name) VALUES (?)", (name,))
        return cur.lastrowid or self.collection_id(name)

    def collections(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM collections ORDER BY name")]


def connect(path: Path) -> sqlite3.Connection:
    """Open SQLite in WAL mode with a generous busy timeout, so several processes share it.
    Raises WorkspaceError, naming the file and the reason, when the folder cannot be written (a
    read-only mount, another user's files) or the disk is full: WAL needs to write even to read."""
    path = Path(path)
    try:
        present = path.exists()
    except OSError:  # a folder this user may not enter: unwritable_database names it
        present = True
    if present and (problem := unwritable_database(path)) is not None:  # SQLite would open it read-only, and
        raise _unwritable_error(path, "not writable", *problem)  # fail at the first write (an audit record)
    try:
        db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=60000")
        db.execute("PRAGMA secure_delete=ON")  # a delete zeroes what it frees, whatever the build's default
    except sqlite3.OperationalError as e:
        raise _open_error(e, path) or e from e
    return db


def _open_error(e: sqlite3.OperationalError, path: Path) -> WorkspaceError | None:
    """The WorkspaceError for SQLite failing to open `path` because of the machine, not the data:
    a full disk, a read-only filesystem, files or a folder this user may not write. None otherwise."""
    import shutil

    folder = path.parent
    text = str(e)
    try:
        full = _is_disk_full(e) or ("disk I/O error" in text and shutil.disk_usage(folder).free < 1 << 20)
    except OSError:
        full = False
    if full:
        return _disk_full_error(folder, e)
    if "readonly" not in text and "unable to open" not in text:
        return None
    problem = unwritable_database(path)
    return None if problem is None else _unwritable_error(path, text, *problem)


def unwritable_database(path: Path) -> tuple[str, str] | None:
    """(why, what to do) when this process may not write the database `path`, its -wal/-shm files
    or its folder (a read-only filesystem, another user's files); None when it may."""
    folder = path.parent
    owner_fix = "run archivist as the user that owns the workspace, or give this user write access to the folder and its files"
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "it is on a read-only filesystem", "mount it read-write, or copy the workspace folder to a writable disk"
    except OSError:
        pass
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"this user (uid {os.geteuid()}) may not write the folder, owned by uid {folder.stat().st_uid}", owner_fix
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        # another connection closing removes -wal and -shm at any moment: a file gone is no obstacle
        try:
            owner = p.stat().st_uid
        except FileNotFoundError:
            continue
        if not os.access(p, os.R_OK | os.W_OK) and p.exists():
            return f"this user (uid {os.geteuid()}) may not write {p.name} (owner uid {owner})", owner_fix
    return None


def _disk_full_error(home: Path, e: BaseException) -> WorkspaceError:
    return WorkspaceError(f"cannot open the workspace at {home}: the disk is full ({e}); "
                          "free some space and run the command again (nothing stored was changed)")


def _unwritable_error(path: Path, text: str, why: str, fix: str) -> WorkspaceError:
    return WorkspaceError(f"cannot open the workspace database {path} ({text}): {why}; archivist writes to its workspace "
                          f"even to read it (SQLite's write-ahead log, the audit log): {fix}")


class transaction:
    """`with transaction(db):` BEGIN IMMEDIATE ... COMMIT, retrying when another writer holds the lock."""

    def __init__(self, db: sqlite3.Connection, retries: int = 20):
        self.db, self.retries = db, retries

    def __enter__(self):
        if self.db.in_transaction:  # nested: the outer one commits
            self.nested = True
            return self.db
        self.nested = False
        for attempt in range(self.retries):
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
                continue
            _refuse_newer(self.db)
            return self.db
        raise WorkspaceError("the workspace database stayed locked by another process; try again")

    def __exit__(self, exc_type, exc, tb):
        if self.nested:
            return False
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
            except sqlite3.OperationalError as e:
                if self.db.in_transaction:  # SQLite may have rolled back already (e.g. SQLITE_FULL)
                    self.db.execute("ROLLBACK")
                raise _disk_error(e) from e
        else:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and _is_disk_full(exc):
                raise _disk_error(exc) from exc
        return False


def _refuse_newer(db: sqlite3.Connection) -> None:
    """Roll back the write transaction just begun, and raise WorkspaceError, when a newer release has
    migrated the workspace since this process opened it (a server left running across an upgrade):
    this code does not know that schema, so it must not write to it. Every write goes through
    `transaction`, and under BEGIN IMMEDIATE no other process can change user_version until the
    commit, so one PRAGMA here (a read of the cached header page) guards them all. Reads go on."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version <= len(MIGRATIONS):
        return
    home = Path(next(r[2] for r in db.execute("PRAGMA database_list") if r[1] == "main")).parent
    db.execute("ROLLBACK")
    raise NewerSchema(f"cannot write to the workspace {home}, which a newer release migrated while this process had "
                      f"it open: {newer_schema(version)}, and restart this process with it; nothing was written")


def truncate_wal(db: sqlite3.Connection, wait_ms: int | None = None) -> bool:
    """Checkpoint and empty the WAL, which still holds pages as they were before a delete; returns
    whether it was emptied (a process reading at that moment holds it: then at its next checkpoint).
    It waits for such readers up to the busy timeout (60 s), or `wait_ms`: a plain delete should not hang on them."""
    before = db.execute("PRAGMA busy_timeout").fetchone()[0]
    db.execute(f"PRAGMA busy_timeout = {before if wait_ms is None else int(wait_ms)}")
    try:
        return not db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    finally:
        db.execute(f"PRAGMA busy_timeout = {before}")


def compact(db: sqlite3.Connection) -> bool:
    """After a secure delete (erase, users erase): VACUUM, so the file keeps no free page, then
    `truncate_wal`. Returns whether the WAL was emptied. A VACUUM that another process's write
    holds back past the busy timeout is let be: secure_delete zeroed the freed pages already."""
    try:
        db.execute("VACUUM")
    except sqlite3.OperationalError:
        pass
    return truncate_wal(db)


def _is_disk_full(e: BaseException) -> bool:
    return "disk is full" in str(e) or "database or disk is full" in str(e)


def _disk_error(e: BaseException) -> BaseException:
    if _is_disk_full(e):
        return WorkspaceError("the disk is full: nothing was written for this step, and what was stored before is intact")
    return e


def newer_schema(version: int) -> str:
    """Why a workspace a newer archivist wrote is refused: by every open (`migrate`), and as a problem
    by `archivist doctor`, which says so before a command fails on it."""
    return f"workspace schema {version} is newer than this archivist ({len(MIGRATIONS)}); upgrade archivist"


def schema_version(db: sqlite3.Connection) -> int:
    """The workspace's schema version (PRAGMA user_version). Raises WorkspaceError when a newer
    archivist wrote it (`newer_schema`)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise NewerSchema(newer_schema(version))
    return version


def migrate(db: sqlite3.Connection) -> int:
    """Apply the migrations this database has not seen yet; returns the schema version."""
    version = schema_version(db)
    for n in range(version, len(MIGRATIONS)):
        with transaction(db):
            if db.execute("PRAGMA user_version").fetchone()[0] > n:
                continue  # another process opening the workspace applied it while this one waited for the lock
            for statement in _split_sql(MIGRATIONS[n]):
                db.execute(statement)
            if n + 1 in AFTER_MIGRATION:
                AFTER_MIGRATION[n + 1](db)
            db.execute(f"PRAGMA user_version = {n + 1}")
    return len(MIGRATIONS)


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (BEGIN ... END;) whole."""
    statements, buf = [], []
    for line in script.splitlines():
        buf.append(line)
        text = "\n".join(buf).strip()
        if text and sqlite3.complete_statement(text):
            statements.append(text)
            buf = []
    rest = "\n".join(buf).strip()
    if rest:
        statements.append(rest)
    return statements


def open_workspace(settings: Settings | None = None, upgrade: bool = True) -> Workspace:
    """Open (creating if needed) the workspace under settings.home and bring its schema up to date.
    With upgrade=False its schema is left as it is (`archivist backup`: a copy the release that
    wrote it can still open), but for schema 0, which no release wrote; a schema from a newer
    version is refused all the same.

    The files derived from SQLite (FAISS, the lexical index) are the stages' business: to have them
    checked and repaired, open with `archivist.retrieval.repair.open_checked`.
    Raises WorkspaceError when the folder cannot be created or the schema is from a newer version.
    """
    settings = settings or Settings.from_env()
    try:
        # a new workspace is its owner's alone (like a database server's data folder): it holds every
        # collection's documents, the chats and the password hashes, and the server's other users
        # must not read it; an existing folder keeps whatever mode the administrator gave it
        settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in ("index", "adapters", "runs", "uploads", "datasets"):
            (settings.home / sub).mkdir(exist_ok=True)
    except OSError as e:
        home = settings.home
        if home.is_file():
            why = "it is a file, not a folder"
        elif home.is_dir() and not os.access(home, os.W_OK | os.X_OK):
            why = (f"this user (uid {os.geteuid()}) may not write the folder, owned by uid {home.stat().st_uid}; "
                   "run archivist as the user that owns the workspace, or give this user write access to it")
        else:
            why = e.strerror
        raise WorkspaceError(f"cannot create the workspace at {home}: {why}") from e
    try:
        db = connect(settings.home / "archivist.db")
        # schema 0 holds nothing a release wrote (a first open killed before its first migration, an
        # empty file): it is made as a new workspace is, upgrade or not
        if upgrade or schema_version(db) == 0:  # schema_version refuses a newer schema
            migrate(db)
        ws = Workspace(settings=settings, db=db)
        _ensure_local_admin(ws)
    except sqlite3.OperationalError as e:
        import shutil

        # A full disk shows up as "disk I/O error" when even the WAL index cannot be created.
        if _is_disk_full(e) or shutil.disk_usage(settings.home).free < 1 << 20:
            raise _disk_full_error(settings.home, e) from e
        raise _open_error(e, settings.home / "archivist.db") or e from e
    except sqlite3.DatabaseError as e:  # a truncated, overwritten or half-copied archivist.db
        raise damaged(e, settings.home) or e from e
    return ws


def damaged(e: BaseException, home: Path) -> DatabaseDamaged | None:
    """The DatabaseDamaged error naming the workspace's database file when `e` says that file is damaged
    (SQLite's "file is not a database", "database disk image is malformed": a truncated or
    overwritten file, a copy cut short), else None. Opening finds a damaged header; a damaged page
    shows when a command reads it (the CLI turns that error into this one too)."""
    text = str(e)
    if not isinstance(e, sqlite3.DatabaseError) or not ("malformed" in text or "not a database" in text):
        return None
    return DatabaseDamaged(f"the workspace database {home / 'archivist.db'} is damaged ({text}): it is the only copy "
                           "of the documents, users and jobs, so restore it from a backup of the workspace folder "
                           "(the files under index/ are rebuilt from it on the next open)", text)


def _ensure_local_admin(ws: Workspace) -> None:
    if ws.db.execute("SELECT 1 FROM users LIMIT 1").fetchone():
        return
    with transaction(ws.db):
        ws.db.execute("INSERT OR IGNORE INTO users(name, role) VALUES (?, 'admin')", (LOCAL_ADMIN,))
