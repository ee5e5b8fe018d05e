"""Re-read of this session's backup change: `archivist backup` copies a workspace at the schema it
has on disk (open_workspace(upgrade=False)), which must not stop it backing up one at schema 0."""

from __future__ import annotations

import sqlite3

from archivist.schema import MIGRATIONS


def test_backup_of_a_workspace_at_schema_0_makes_it_as_a_new_one_and_copies_it(tmp_path, cli):
    # Before: a database at schema 0 (a first open killed before its first migration; an empty file)
    # was left unmigrated, and backup died on `sqlite3.OperationalError: no such table: users` (a
    # traceback); every other command, and backup before this session, makes it a new workspace.
    home = tmp_path / "ws"
    home.mkdir()
    sqlite3.connect(home / "archivist.db").close()  # user_version 0, no tables
    r = cli("backup", tmp_path / "bk", "--home", home)
    assert r.returncode == 0, r.stderr
    for db_path in (home / "archivist.db", tmp_path / "bk" / "archivist.db"):
        db = sqlite3.connect(db_path)
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("SELECT name, role FROM users").fetchall() == [("admin", "admin")]
        db.close()
    assert f"at schema {len(MIGRATIONS)} to {tmp_path / 'bk'}" in r.stderr

