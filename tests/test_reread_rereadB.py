"""Re-read of today's api/ retrieval/ ui/ changes (reviewer rereadB).

Found: a key revoked once the answer was written (an extractive answer has no pieces, or the revoke
came after the last one) was refused inside the transaction that saves the exchange; the Guard's own
check records the refused key on the audit log (`key.rejected`, once a key and day), and the rollback
of that transaction took the record with it while the process remembered it as written, so nobody's
later use of the revoked key that day was recorded either.
"""

from __future__ import annotations

import contextlib
import dataclasses

import pytest


def test_a_key_revoked_before_the_save_is_on_the_audit_log(ws, monkeypatch):
    from archivist import access, audit
    from archivist.api import chat
    from archivist.api.errors import APIError
    from archivist.api.queue import GenerationQueue
    from archivist.keys import create_key, revoke_key
    from archivist.retrieval import answer as answer_mod

    access.add_user(ws, "carol", "member")
    key = create_key(ws, "carol", by="admin")
    revoke_key(ws, key, by="admin")  # revoked while the (extractive) answer was prepared
    monkeypatch.setattr(answer_mod, "ask", lambda *a, **kw: dataclasses.make_dataclass("A", ["passages"])([]))

    class Server:
        queue = GenerationQueue()

        @contextlib.contextmanager
        def workspace(self, settings):
            yield ws

    server = Server()
    job = chat.ChatJob(settings=ws.settings, user="carol", question="q", history=[], collections=None, k=None,
                       adapter=None, mode=None, ticket=server.queue.admit(), conversation="new",
                       authorization=f"Bearer {key}")
    with pytest.raises(APIError) as e:
        chat.run_job(server, job, on_token=lambda piece: None)
    assert e.value.status == 401
    rows = ws.db.execute("SELECT target, detail FROM audit WHERE action = 'key.rejected'").fetchall()
    assert len(rows) == 1 and '"revoked"' in rows[0]["detail"], [dict(r) for r in rows]
    assert server.queue.stats()["failed"] == 1
