"""The workspace: one folder holding all state.

    $ARCHIVIST_HOME/
        archivist.db     SQLite (WAL): the source of truth
        index/           FAISS files, one per collection, rebuildable from SQLite
        adapters/ runs/ uploads/ datasets/

Schema changes are numbered migrations applied in order on open (PRAGMA user_version).
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from archivist.settings import Settings

MIGRATIONS: list[str] = [
    # 1: documents, chunks, full-text search, ingest jobs
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE collections (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
    );
    CREATE TABLE documents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        collection_id INTEGER NOT NULL REFERENCES collections(id),
        path TEXT NOT NULL,             -- the name it was ingested under (unique per collection)
        source TEXT,                    -- absolute path it was read from, if any
        content_hash TEXT NOT NULL,     -- sha256 of the file bytes
        kind TEXT NOT NULL,             -- reader: pdf, docx, html, markdown, text, csv, xlsx, pptx
        size INTEGER NOT NULL,
        pages INTEGER,
        title TEXT,
        text TEXT NOT NULL DEFAULT '',  -- extracted text; chunk spans index into it
        status TEXT NOT NULL DEFAULT 'ready',
        added_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
        updated_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
        UNIQUE (collection_id, path)
    );
    CREATE INDEX documents_hash ON documents(content_hash);
    CREATE TABLE chunks (
        -- AUTOINCREMENT: a deleted chunk's id is never reused, so a FAISS index that another
        -- process has not synced yet can never hold an old vector under a new chunk's id
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        text TEXT NOT NULL,
        heading TEXT NOT NULL DEFAULT '',  -- heading path joined by ' > '
        page INTEGER,
        start INTEGER NOT NULL,
        end INTEGER NOT NULL,
        n_tokens INTEGER NOT NULL,
        hash TEXT NOT NULL,                -- sha256 of heading + text (what was embedded)
        embedding BLOB                     -- float32, normalized; FAISS is rebuilt from these
    );
    CREATE INDEX chunks_document ON chunks(document_id);
    CREATE INDEX chunks_hash ON chunks(hash);
    CREATE VIRTUAL TABLE chunks_fts USING fts5(
        text, heading, content='chunks', content_rowid='id', tokenize='porter unicode61'
    );
    CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts(rowid, text, heading) VALUES (new.id, new.text, new.heading);
    END;
    CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts(chunks_fts, rowid, text, heading) VALUES ('delete', old.id, old.text, old.heading);
    END;
    CREATE TABLE ingest_jobs (
        id INTEGER PRIMARY KEY,
        started_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
        finished_at REAL,
        status TEXT NOT NULL DEFAULT 'running',  -- running | done | failed
        collection TEXT,
        user TEXT,
        summary TEXT                              -- JSON per-file results
    );
    """,
    # 2: users, grants, keys, sessions, feedback, conversations, fine-tuning runs, adapters, evaluations
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL DEFAULT 'member',      -- admin | member
        password_hash TEXT,
        created_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
    );
    CREATE TABLE grants (
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
        level TEXT NOT NULL,                      -- read | write | admin
        PRIMARY KEY (user_id, collection_id)
    );
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        prefix TEXT NOT NULL UNIQUE,
        key_hash TEXT NOT NULL,
        created_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
        revoked_at REAL
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        expires_at REAL NOT NULL
    );
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
        title TEXT,
        created_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL,                       -- user | assistant
        content TEXT NOT NULL,
        citations TEXT,                           -- JSON list for assistant messages
        adapter TEXT,
        created_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
    );
    CREATE TABLE feedback (
        id INTEGER PRIMARY KEY,
        user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
        collection TEXT,
        question TEXT NOT NULL,
        answer TEXT NOT NULL,
        rating INTEGER NOT NULL DEFAULT 0,        -- +1 up, -1 down, 0 none
        correction TEXT,                          -- the answer the user says is right
        citations TEXT,                           -- JSON: the passages shown with the answer
        adapter TEXT,
        created_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
    );
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,                      -- runs/<id>/ holds config, metrics.jsonl, checkpoints
        status TEXT NOT NULL,                     -- queued | running | done | failed | cancelled
        pid INTEGER,
        config TEXT NOT NULL,                     -- JSON
        adapter TEXT,
        error TEXT,
        started_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
        finished_at REAL
    );
    CREATE TABLE adapters (
        name TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        base_model TEXT NOT NULL,
        run_id TEXT,
        metrics TEXT,                             -- JSON: base vs adapter
        lineage TEXT,                             -- JSON
        active INTEGER NOT NULL DEFAULT 0,
        note TEXT,
        created_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
    );
    CREATE TABLE evaluations (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,                       -- retrieval | answers
        set_name TEXT,
        results TEXT NOT NULL,                    -- JSON
        created_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
    );
    """,
    # 3: an ingest job remembers its files and its process, so one cut short (a crash, a restart) can resume
    """
    ALTER TABLE ingest_jobs ADD COLUMN files TEXT;  -- JSON [[path, stored name], ...]
    ALTER TABLE ingest_jobs ADD COLUMN pid INTEGER;
    """,
    # 4: each chunk's word 3-grams, hashed, for near-duplicate collapsing without re-reading its text
    """
    ALTER TABLE chunks ADD COLUMN shingles BLOB;  -- sorted unique uint32 CRC-32s of the text's word 3-grams
    """,
    # 5: an evaluation belongs to the user who ran it (its questions and gold answers can be secret);
    #    the runs stored before were the local admin's (a member sees only their own, an admin all)
    """
    ALTER TABLE evaluations ADD COLUMN user_id INTEGER REFERENCES users(id) ON DELETE SET NULL;
    UPDATE evaluations SET user_id = (SELECT id FROM users WHERE name = 'admin');
    """,
    # 6: where a chunk's text lies on its page (for citations shown on the page image), and the
    #    OCR confidence of the pages of a document that were read by OCR
    """
    ALTER TABLE chunks ADD COLUMN boxes TEXT;     -- JSON [[x0, y0, x1, y1], ...]: page fractions, origin top left
    ALTER TABLE documents ADD COLUMN ocr TEXT;    -- JSON {"page": mean confidence} for OCRed pages
    """,
    # 7: one `jobs` table for every background job (ingestion, uploads, fine-tuning runs), owned by
    # archivist/jobs.py; the rows of ingest_jobs and runs move into it, and those tables go
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,                      -- a fine-tuning run's id is its job's id (runs/<id>/)
        kind TEXT NOT NULL,                       -- ingest | upload | train
        owner TEXT NOT NULL,                      -- the user it runs as: only they (and admins) see it
        state TEXT NOT NULL DEFAULT 'queued',     -- queued | running | done | failed | cancelled | interrupted
        done INTEGER NOT NULL DEFAULT 0,          -- progress: done of total (files, steps)
        total INTEGER,
        message TEXT,
        spec TEXT NOT NULL DEFAULT '{}',          -- JSON: what is needed to run or resume it
        result TEXT,                              -- JSON: its summary (per-file results, the adapter …)
        error TEXT,
        pid INTEGER,                              -- the process working on it, started at pid_started on host
        pid_started REAL,
        host TEXT,
        heartbeat REAL,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        resumed INTEGER NOT NULL DEFAULT 0,
        dismissed INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
        started_at REAL,
        finished_at REAL
    );
    CREATE INDEX jobs_owner ON jobs(owner, created_at);
    CREATE INDEX jobs_state ON jobs(state);
    -- an ingest job's process was judged by its start time (pid_started); one marked interrupted was
    -- already resumed as a later job; one with a failed file had still finished its batch
    INSERT INTO jobs(id, kind, owner, state, done, total, spec, result, error, pid, pid_started, created_at, started_at, finished_at)
    SELECT 'ingest-' || id, 'ingest', COALESCE(user, 'admin'),
           CASE status WHEN 'running' THEN 'running' WHEN 'interrupted' THEN 'failed' ELSE 'done' END,
           CASE WHEN summary IS NULL THEN 0 ELSE json_array_length(summary) END,
           CASE WHEN files IS NULL THEN NULL ELSE json_array_length(files) END,
           json_object('collection', collection, 'files', json(COALESCE(files, '[]'))),
           CASE WHEN summary IS NULL THEN NULL ELSE json_object('files', json(summary)) END,
           CASE status WHEN 'interrupted' THEN 'cut short; it was resumed as a later job' END,
           pid, started_at, started_at, started_at, finished_at
    FROM ingest_jobs;
    INSERT INTO jobs(id, kind, owner, state, spec, result, error, pid, created_at, started_at, finished_at)
    SELECT id, 'train', COALESCE(json_extract(config, '$.user'), 'admin'), status, config,
           CASE WHEN adapter IS NULL THEN NULL ELSE json_object('adapter', adapter) END,
           error, pid, started_at, started_at, finished_at
    FROM runs;
    DROP TABLE ingest_jobs;
    DROP TABLE runs;
    """,
    # 8: the audit log (archivist/audit.py): append-only, each record holding the hash of the one before
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,         -- consecutive; never reused (a purge leaves a checkpoint)
        ts REAL NOT NULL,               -- epoch seconds
        user TEXT,                      -- who acted
        action TEXT NOT NULL,           -- a kind of archivist.audit.KINDS
        target TEXT,                    -- what it acted on (a user, a document, an adapter, a key prefix)
        detail TEXT NOT NULL,           -- JSON
        prev TEXT NOT NULL,             -- hash of the record before (the checkpoint's, or 64 zeros)
        hash TEXT NOT NULL              -- sha256(prev + [id, ts, user, action, target, detail]); from 12: see audit.py
    );
    CREATE INDEX audit_ts ON audit(ts);
    CREATE INDEX audit_action ON audit(action, target, ts);
    CREATE TABLE audit_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);  -- head, checkpoint_id, checkpoint_hash
    """,
    # 9: an adapter trained on a document that was erased since is stale until retrained (archivist/adapters.py)
    """
    ALTER TABLE adapters ADD COLUMN stale TEXT;   -- why: "trained on a deleted document: <name>"
    """,
    # 10: the reader version a document was read with (ingest/readers.py READER_VERSIONS): an
    # unchanged file read by an older reader is read again when it is ingested again
    """
    ALTER TABLE documents ADD COLUMN reader INTEGER NOT NULL DEFAULT 1;
    """,
    # 11: feedback belongs to the chat message it rates (archivist/feedback.py), not to its text
    """
    ALTER TABLE feedback ADD COLUMN message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL;
    """,
    # 12: the audit chain hashes a salted digest of each record's personal part (user, target,
    # detail) instead of the part itself, so a person's records can be redacted (archivist users
    # erase) and the log still verifies; the records there are re-hashed (archivist/audit.py `rechain`)
    """
    ALTER TABLE audit ADD COLUMN salt TEXT;            -- random, per record; removed when it is redacted
    ALTER TABLE audit ADD COLUMN digest TEXT;          -- sha256(salt + [user, target, detail])
    ALTER TABLE audit ADD COLUMN redacted_by INTEGER;  -- the user.erased record that emptied it
    """,
]


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
                return self.db
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
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


@contextmanager
def secure_delete(db: sqlite3.Connection):
    """While this block runs, freed SQLite pages are zeroed, not left holding the deleted text
    (whatever SQLite's build default); the setting is restored after. For erase and purges."""
    before = db.execute("PRAGMA secure_delete").fetchone()[0]
    db.execute("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        db.execute(f"PRAGMA secure_delete = {int(before)}")


def truncate_wal(db: sqlite3.Connection) -> bool:
    """Checkpoint and empty the WAL, which still holds pages as they were before a delete; returns
    whether it was emptied (a process reading at that moment holds it: then at its next checkpoint)."""
    return not db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]


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


def migrate(db: sqlite3.Connection) -> int:
    """Apply the migrations this database has not seen yet; returns the schema version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise WorkspaceError(f"workspace schema {version} is newer than this archivist ({len(MIGRATIONS)}); upgrade archivist")
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


def open_workspace(settings: Settings | None = None) -> Workspace:
    """Open (creating if needed) the workspace under settings.home and bring its schema up to date.

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
