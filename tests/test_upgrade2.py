"""Upgrading a team workspace from the release before schema 14 and today's reader versions.

The workspace is built with today's code and downgraded as tests/test_owner_erase.py does (schema
14's tables dropped, `user_version` 13, every document marked as read by the reader version before
today's): running the previous release's code needs a second copy of the package, which a test run
does not have. What the downgrade cannot give back is the older chunking itself, so this pins what
the upgrade must keep (accounts, keys, feedback, vectors), not what the new chunking changes."""

from __future__ import annotations

from archivist import access, auth, feedback
from archivist.ingest.pipeline import ingest_paths
from archivist.ingest.readers import reader_version
from archivist.keys import create_key, user_for_key

HANDBOOK = ("# Leave\n\n## Parental leave\n\nEvery parent receives twenty weeks of fully paid parental leave "
            "under policy HR-17, to be taken within two years.\n\n## Annual leave\n\nFull-time employees "
            "receive thirty days of paid annual leave per calendar year.\n")


def test_a_schema_13_workspace_read_by_older_readers_upgrades_without_losing_accounts_keys_or_vectors(
        ws, embedder, tmp_path, cli):
    """Schema 13 -> 14 on first open, then `archivist ingest` of the same folder: every document is
    read again (its reader is older) yet no chunk whose text stayed is embedded again; passwords still
    sign in, so the app shows no first-admin form and issues no setup code; API keys still name their
    user; a feedback citation still resolves to the document as it is now."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "handbook.md").write_text(HANDBOOK)
    ingest_paths(ws, [folder], collection="hr", embedder=embedder, progress=False)
    auth.create_user(ws, "alice", "correct horse battery 1", by="admin")
    access.grant(ws, "alice", "hr", "read")
    key = create_key(ws, "alice", by="admin")
    chunk_id, text, name = ws.db.execute("SELECT c.id, c.text, d.path FROM chunks c JOIN documents d ON d.id = c.document_id "
                                         "WHERE c.text LIKE '%twenty weeks%'").fetchone()
    fid = feedback.record_feedback(ws, "alice", "How long is parental leave?", "Twenty weeks [1].", rating=1,
                                   citations=[{"n": 1, "document": name, "collection": "hr",
                                               "chunk_id": chunk_id, "text": text}])
    vectors = {r[0]: r[1] for r in ws.db.execute("SELECT text, embedding FROM chunks")}

    for table in ("sign_in_failures", "setup_code"):  # back to schema 13: the tables did not exist
        ws.db.execute(f"DROP TABLE {table}")
    ws.db.execute("PRAGMA user_version = 13")
    ws.db.execute("UPDATE documents SET reader = ?", (reader_version("markdown") - 1,))
    ws.db.commit()

    r = cli("ingest", folder, "--collection", "hr", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "1 updated" in r.stdout and "0 embedded" in r.stdout, r.stdout  # read again, no vector recomputed
    assert ws.db.execute("PRAGMA user_version").fetchone()[0] == 17  # 14, 15 and 16 (deleted adapters' lineage), 17 (reviews)
    assert [r[0] for r in ws.db.execute("SELECT reader FROM documents")] == [reader_version("markdown")]
    now = {r[0]: r[1] for r in ws.db.execute("SELECT text, embedding FROM chunks")}
    assert now == vectors  # the same passages, each with the vector it had

    assert not auth.first_admin_form_open(ws) and not auth.has_setup_code(ws)
    assert auth.sign_in(ws, "alice", "correct horse battery 1")
    assert user_for_key(ws, key) == "alice"
    (row,) = feedback.list_feedback(ws, "alice", ids=[fid])
    (citation,) = row["citations"]
    assert citation["now"] == "current" and citation["chunk_id"] != chunk_id  # found again under its new chunk


HANDBOOK_LEAVE = ("# Leave\n\n## Parental leave\n\nEvery parent receives twenty weeks of fully paid parental leave "
                  "under policy HR-17, to be taken within two years.\n\n## Annual leave\n\nFull-time employees "
                  "receive thirty days of paid annual leave per calendar year.\n")


def test_a_passage_inside_a_chunk_of_the_new_chunking_is_current(ws, embedder, tmp_path):
    """A passage stored before an upgrade re-chunked its document (a heading now opens the chunk under it)
    was marked \"no longer in the document\" though its text is there word for word, inside a bigger chunk
    (conversations.mark_now): 200 of 202 such marks were false on an upgraded workspace."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "handbook.md").write_text(HANDBOOK_LEAVE)
    ingest_paths(ws, [folder], collection="hr", embedder=embedder, progress=False)
    cid, text, name = ws.db.execute("SELECT c.id, c.text, d.path FROM chunks c JOIN documents d ON d.id = c.document_id "
                                    "WHERE c.text LIKE '%twenty weeks%'").fetchone()
    old_piece = text[text.index("Every parent"):]  # what an older chunking stored apart from its heading
    assert old_piece != text
    fid = feedback.record_feedback(ws, "admin", "How long is parental leave?", "Twenty weeks [1].", rating=1,
                                   citations=[{"n": 1, "document": name, "collection": "hr",
                                               "chunk_id": cid + 1000, "text": old_piece},  # a chunk id gone since
                                              {"n": 2, "document": name, "collection": "hr",
                                               "chunk_id": cid + 1001, "text": "Every parent receives ten weeks."}])
    (row,) = feedback.list_feedback(ws, "admin", ids=[fid])
    assert [(c["now"], c["chunk_id"]) for c in row["citations"]] == [("current", cid), ("changed", cid + 1001)]
