"""The workspace database's schema: numbered migrations, applied in order on open by
`archivist.workspace.migrate` (PRAGMA user_version). A migration is only ever appended: a
workspace at version N has run the first N, and an archivist older than the workspace refuses it.
"""

from __future__ import annotations

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
    # 13: feedback and stored evaluations keep whose they were once `users delete` empties their
    # user_id (access.delete_user writes `NAME#deleted-ID`), so `users erase` still finds them after
    # audit retention purged the records that named them; rows of users deleted before get the
    # name the log still gives (`NAME#deleted`, the id being gone)
    """
    ALTER TABLE feedback ADD COLUMN former_owner TEXT;
    ALTER TABLE evaluations ADD COLUMN former_owner TEXT;
    UPDATE feedback SET former_owner = (SELECT a.user || '#deleted' FROM audit a WHERE a.action = 'feedback.given'
        AND a.target = CAST(feedback.id AS TEXT) AND a.redacted_by IS NULL ORDER BY a.id DESC LIMIT 1) WHERE user_id IS NULL;
    UPDATE evaluations SET former_owner = (SELECT a.user || '#deleted' FROM audit a WHERE a.action = 'evaluation.stored'
        AND a.target = CAST(evaluations.id AS TEXT) AND a.redacted_by IS NULL ORDER BY a.id DESC LIMIT 1) WHERE user_id IS NULL;
    """,
    # 14: failed sign-ins per typed name, so that guessing a password slows down (archivist/auth.py
    # `sign_in`) in every app process and across restarts; the name is kept as a hash because people
    # type their password into the name field. And the first admin's setup code, kept as a hash too.
    """
    CREATE TABLE sign_in_failures (
        name_hash TEXT PRIMARY KEY,     -- sha256 of the name as typed, casefolded (auth._name_hash)
        failures INTEGER NOT NULL,      -- in a row, each within auth.FAILURE_WINDOW of the one before
        last_failure REAL NOT NULL      -- Unix time
    );
    -- the one-time code the first-admin form asks for, printed where the app was started (auth.issue_setup_code)
    CREATE TABLE setup_code (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        code_hash TEXT NOT NULL         -- sha256 of the code, normalised (auth._setup_hash)
    );
    """,
    # 15: what a deleted adapter learned from outlives its row, however the row goes (archivist/adapters.py
    # `answered_from`): answers, feedback and stored evaluations name their adapter, and are withheld
    # by its training collections. Only the lineage's collections and documents are kept (`trained_on`
    # reads those), not its settings, which name who trained it. IF NOT EXISTS: tests downgrade a
    # workspace by its user_version alone.
    """
    CREATE TABLE IF NOT EXISTS deleted_adapters (
        name TEXT NOT NULL,             -- not unique: a name registered again after a deletion keeps each one's
        lineage TEXT,                   -- JSON: {"collections", "documents"} of the adapters row's lineage
        deleted_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
    );
    CREATE INDEX IF NOT EXISTS deleted_adapters_name ON deleted_adapters(name);
    CREATE TRIGGER IF NOT EXISTS adapters_ad AFTER DELETE ON adapters BEGIN
        INSERT INTO deleted_adapters(name, lineage) VALUES (old.name, CASE WHEN json_valid(old.lineage) THEN
            json_object('collections', json_extract(old.lineage, '$.collections'),
                        'documents', json_extract(old.lineage, '$.documents')) END);
    END;
    """,
    # 16: a deleted registration's time, kept in its lineage JSON (`registered_at`: the row's created_at),
    # so an answer is judged by the adapter that wrote it, not by every adapter that ever had its name
    # (archivist/adapters.py `registrations`): counting them all refused a reused name's answers to
    # members for what only the deleted one learned from. A trigger alone: tests downgrade a workspace by
    # its user_version and migrate again, and a column cannot be added twice.
    """
    DROP TRIGGER IF EXISTS adapters_ad;
    CREATE TRIGGER adapters_ad AFTER DELETE ON adapters BEGIN
        INSERT INTO deleted_adapters(name, lineage) VALUES (old.name, CASE WHEN json_valid(old.lineage) THEN
            json_object('collections', json_extract(old.lineage, '$.collections'),
                        'documents', json_extract(old.lineage, '$.documents'), 'registered_at', old.created_at)
            ELSE json_object('registered_at', old.created_at) END);
    END;
    """,
    # 17: a member's correction is training data only once an admin approved it (archivist/feedback.py
    # `review_correction`): one member's words had gone unread into the adapter that answers everyone. A table
    # of its own, not columns, so it runs again (tests downgrade by user_version); an admin's own corrections
    # stored before count as approved by them, as those written from now on do.
    """
    CREATE TABLE IF NOT EXISTS feedback_reviews (
        feedback_id INTEGER PRIMARY KEY REFERENCES feedback(id) ON DELETE CASCADE,
        review TEXT NOT NULL CHECK (review IN ('approved', 'rejected')),
        reviewed_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
        reviewed_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
    );
    INSERT OR IGNORE INTO feedback_reviews(feedback_id, review, reviewed_by)
        SELECT f.id, 'approved', f.user_id FROM feedback f JOIN users u ON u.id = f.user_id
        WHERE u.role = 'admin' AND trim(COALESCE(f.correction, '')) != '';
    """,
]
