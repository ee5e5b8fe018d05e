"""A workspace made by an older release, opened by this one.

The old workspace is built here by creating the old schema directly (the migrations up to that
release's version, and rows as that release wrote them), since running an old release inside a test
is too slow; /tmp/upgrade/REPORT.md describes the runs with real older releases (745b496, 1c6e4ae,
508d6df) that these tests stand for.
"""

from __future__ import annotations

import json
import sqlite3

import httpx

from archivist.workspace import MIGRATIONS, _split_sql

QUESTION = "How many weeks of parental leave?"
ANSWER = "20 weeks of fully paid parental leave [1]"


def _old_workspace(home, version: int) -> sqlite3.Connection:
    """archivist.db at schema `version`, as the release that stopped there left it."""
    home.mkdir(parents=True)
    db = sqlite3.connect(home / "archivist.db", isolation_level=None)
    for n in range(version):
        for statement in _split_sql(MIGRATIONS[n]):
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {version}")
    return db


def test_feedback_given_before_the_upgrade_is_linked_to_its_message_when_rated_again(tmp_path):
    """Before: feedback an older release stored (before migration 11, no message id) was found again
    when its answer was rated after the upgrade (POST /v1/feedback, the chat's thumbs), and changed,
    but stayed unlinked: the response said "message_id": null for the message just rated, and the row
    was never that message's."""
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.keys import create_key
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    home = tmp_path / "old"
    db = _old_workspace(home, 10)  # the release before feedback was by message id
    db.execute("INSERT INTO users(id, name, role) VALUES (1, 'admin', 'admin'), (2, 'alice', 'member')")
    db.execute("INSERT INTO collections(id, name) VALUES (1, 'main')")
    db.execute("INSERT INTO grants(user_id, collection_id, level) VALUES (2, 1, 'read')")
    db.execute("INSERT INTO conversations(id, user_id, title) VALUES (1, 2, ?)", (QUESTION,))
    db.execute("INSERT INTO messages(id, conversation_id, role, content) VALUES (1, 1, 'user', ?)", (QUESTION,))
    meta = {"citations": [], "question": QUESTION, "collection": "main", "mode": "quoted"}  # as the old chat page saved it
    db.execute("INSERT INTO messages(id, conversation_id, role, content, citations) VALUES (2, 1, 'assistant', ?, ?)",
               (ANSWER, json.dumps(meta)))
    db.execute("INSERT INTO feedback(id, user_id, collection, question, answer, rating, correction) "
               "VALUES (1, 2, 'main', ?, ?, -1, 'Sixteen weeks')", (QUESTION, ANSWER))
    db.close()

    settings = Settings.from_env(home=home)
    with open_checked(settings) as ws:
        assert ws.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert [tuple(r) for r in ws.db.execute("SELECT message_id FROM feedback")] == [(None,)]  # the migration cannot know it
        key = create_key(ws, "alice", by="admin")
    server = serve_in_thread(create_app(settings))
    try:
        headers = {"Authorization": f"Bearer {key}"}
        r = httpx.post(server.url + "/v1/feedback", headers=headers, json={"message_id": 2, "rating": 1}, timeout=60)
        assert r.status_code == 200, r.text  # the old feedback changed, not a second row
        body = r.json()
        assert (body["id"], body["message_id"], body["rating"], body["correction"]) == (1, 2, 1, "Sixteen weeks")
        listed = httpx.get(server.url + "/v1/feedback", headers=headers, timeout=60).json()["data"]
        assert [(f["id"], f["message_id"], f["rating"]) for f in listed] == [(1, 2, 1)]
    finally:
        server.stop()
    with open_checked(settings) as ws:
        assert [tuple(r) for r in ws.db.execute("SELECT id, message_id, rating FROM feedback")] == [(1, 2, 1)]
        from archivist import feedback

        assert feedback.find_feedback(ws, "alice", QUESTION, ANSWER, message_id=2)["rating"] == 1


def test_an_answer_saved_without_its_question_can_be_rated_over_http(tmp_path):
    """Before: POST /v1/feedback on an assistant message stored without the question in its metadata
    (a plain citation list, as conversations.messages allows other writers to store it; an older
    release's library caller) answered 422 "feedback needs the question it is about", where the chat
    page takes the question asked just before the answer."""
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.keys import create_key
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    home = tmp_path / "old"
    db = _old_workspace(home, 11)
    db.execute("INSERT INTO users(id, name, role) VALUES (1, 'admin', 'admin'), (2, 'alice', 'member')")
    db.execute("INSERT INTO conversations(id, user_id, title) VALUES (1, 2, 'leave')")
    db.execute("INSERT INTO messages(id, conversation_id, role, content) VALUES (1, 1, 'user', 'What is the dress code?')")
    db.execute("INSERT INTO messages(id, conversation_id, role, content) VALUES (2, 1, 'assistant', 'Business casual.')")
    db.execute("INSERT INTO messages(id, conversation_id, role, content) VALUES (3, 1, 'user', ?)", (QUESTION,))
    db.execute("INSERT INTO messages(id, conversation_id, role, content, citations) VALUES (4, 1, 'assistant', ?, '[]')", (ANSWER,))
    db.close()

    settings = Settings.from_env(home=home)
    with open_checked(settings) as ws:
        key = create_key(ws, "alice", by="admin")
    server = serve_in_thread(create_app(settings))
    try:
        r = httpx.post(server.url + "/v1/feedback", headers={"Authorization": f"Bearer {key}"},
                       json={"message_id": 4, "rating": -1, "correction": "Sixteen weeks"}, timeout=60)
        assert r.status_code == 201, r.text
        body = r.json()
        assert (body["message_id"], body["question"], body["answer"], body["rating"]) == (4, QUESTION, ANSWER, -1)
    finally:
        server.stop()
