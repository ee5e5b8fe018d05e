"""Upgrading with a way back: `archivist backup` of a workspace an older release wrote copies it at
its schema (the older release opens the copy; this one migrates it once restored), and a process
left running while a newer release migrates its workspace refuses to write to it."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from archivist.schema import MIGRATIONS


def _user_version(home) -> int:
    db = sqlite3.connect(home / "archivist.db")
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def test_backup_keeps_an_older_schema_which_that_release_opens_and_a_restore_migrates(ws, embedder, tmp_path, cli,
                                                                                      monkeypatch):
    # Before: backup migrated the workspace first, so both it and the copy were at schema 16, which the
    # release that wrote them (schema 14) refuses: "workspace schema 16 is newer than this archivist (14)".
    from archivist import audit, workspace
    from archivist.ingest.pipeline import ingest_paths
    from archivist.settings import Settings

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "leave.md").write_text("# Leave\n\nStaff take 27 days of paid leave a year, booked in the HR portal.\n")
    ingest_paths(ws, [tmp_path / "docs"], embedder=embedder, progress=False)
    home = ws.settings.home
    # schema 14 by its user_version alone, as tests/test_upgrade3.py builds it (migrations 15 and 16 run again)
    ws.db.executescript("DROP TRIGGER IF EXISTS adapters_ad; DROP TABLE IF EXISTS deleted_adapters; PRAGMA user_version = 14;")
    ws.close()

    dest = tmp_path / "bk"
    r = cli("backup", "--json", dest, "--home", home)
    assert r.returncode == 0, r.stderr
    assert _user_version(home) == 14 and _user_version(dest) == 14  # neither the workspace nor its copy migrated
    assert {k: json.loads(r.stdout)[k] for k in ("documents", "schema")} == {"documents": 1, "schema": 14}
    db = sqlite3.connect(dest / "archivist.db")
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'deleted_adapters'").fetchone() is None
    db.close()
    r = cli("backup", tmp_path / "bk2", "--home", home)
    assert "at schema 14 to" in r.stderr and "the backup keeps the workspace's schema 14" in r.stderr

    # the release that wrote it (its migrations stop at 14) opens the copy as it is
    monkeypatch.setattr(workspace, "MIGRATIONS", MIGRATIONS[:14])
    with workspace.open_workspace(Settings.from_env(home=dest)) as old:
        assert old.db.execute("SELECT path FROM documents").fetchall()[0][0] == "docs/leave.md"
    monkeypatch.undo()
    assert _user_version(dest) == 14

    # restored (copied back) and opened by this release: migrated, searchable, its audit chain whole
    restored = tmp_path / "restored"
    shutil.copytree(dest, restored)
    r = cli("search", "How many days of paid leave?", "--json", "--home", restored)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["hits"][0]["document"] == "docs/leave.md"
    assert _user_version(restored) == len(MIGRATIONS)
    with workspace.open_workspace(Settings.from_env(home=restored)) as back:
        assert audit.verify(back).ok
        assert [x["target"] for x in audit.read(back, by="admin", action="workspace.backup")] == [str(dest)]


def test_a_workspace_older_than_the_salted_audit_log_is_backed_up_unrecorded_and_restores(tmp_path, cli):
    # Schema 11's audit table has no salt column: this release's record cannot go there without
    # migrating, so the copy is taken, unrecorded, and the command says so.
    from archivist.workspace import _split_sql, connect

    home = tmp_path / "old"
    home.mkdir()
    db = connect(home / "archivist.db")
    for script in MIGRATIONS[:11]:
        for statement in _split_sql(script):
            db.execute(statement)
    db.execute("PRAGMA user_version = 11")
    db.execute("INSERT INTO users(name, role) VALUES ('admin', 'admin')")
    db.close()
    r = cli("backup", tmp_path / "bk", "--home", home)
    assert r.returncode == 0, r.stderr
    assert _user_version(home) == 11 and _user_version(tmp_path / "bk") == 11
    assert "this backup is not on the workspace's audit log: its schema 11 predates the records" in r.stderr
    shutil.copytree(tmp_path / "bk", tmp_path / "restored")
    r = cli("audit", "verify", "--home", tmp_path / "restored")
    assert r.returncode == 0 and "intact" in r.stdout, r.stdout + r.stderr
    assert _user_version(tmp_path / "restored") == len(MIGRATIONS)


def test_a_process_refuses_to_write_once_a_newer_release_migrated_its_workspace(ws):
    # Before: a process opened before the upgrade (a server left running) went on writing to a schema
    # it does not know; its schema was checked only when it opened the workspace.
    from archivist import audit
    from archivist.workspace import WorkspaceError, transaction

    audit.record(ws, "workspace.backup", target="/before")
    count = lambda table: ws.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: E731
    before = (count("audit"), count("collections"))
    newer = sqlite3.connect(ws.settings.home / "archivist.db")  # a newer release's migration, from another process
    newer.execute("CREATE TABLE newer_release (x)")
    newer.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    newer.commit()
    newer.close()

    why = (f"cannot write to the workspace {ws.settings.home}, which a newer release migrated while this process had it "
           f"open: workspace schema {len(MIGRATIONS) + 1} is newer than this archivist ({len(MIGRATIONS)}); upgrade "
           "archivist, and restart this process with it; nothing was written")
    with pytest.raises(WorkspaceError) as refused:
        audit.record(ws, "workspace.backup", target="/after")
    assert str(refused.value) == why
    with pytest.raises(WorkspaceError, match="newer release migrated"):
        ws.collection_id("brand-new", create=True)
    with pytest.raises(WorkspaceError, match="newer release migrated"):
        with transaction(ws.db):
            ws.db.execute("INSERT INTO collections(name) VALUES ('inside')")
    assert not ws.db.in_transaction
    # reads go on (they change nothing stored); nothing was written
    assert (count("audit"), count("collections")) == before
    assert ws.collection_id("brand-new") is None and ws.collection_id("inside") is None
