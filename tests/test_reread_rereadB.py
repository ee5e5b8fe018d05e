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
import json

import pytest

from archivist import access
from conftest import adapter_trained_on, mallory_reads


def test_a_key_revoked_before_the_save_is_on_the_audit_log(ws, monkeypatch):
    from archivist import access
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


# -- second re-read (rereadB, later wave): a withheld evaluation no longer names the adapter that learned
# from the lost collection, as her conversation and her feedback already did not (conversations.messages,
# feedback). Before: `get_evaluation` kept `results["adapter"]`; the Evaluation page hid it
# (ui/metrics.answered_by), but `archivist --user NAME eval answers --compare RUN` printed it ("vs
# evaluation #RUN (adapter board-tuned ...)") and stored it, unhidden, in the new run's `comparison`.

def _adapter_run(ws, tmp_path, *, learned: list[str]) -> int:
    from archivist.retrieval import evaluation

    mallory_reads(ws)
    adapter_trained_on(ws, tmp_path / "saved-adapter", "board-tuned", learned)
    return evaluation.store_evaluation(ws, "answers", "mine.jsonl", {
        "adapter": "board-tuned", "mode": "auto", "collections": ["team", "secret"], "metrics": {"accuracy": 1.0},
        "per_question": [{"question": "When does the office open?", "answer": "At 8 [1].", "correct": True}]},
        user="mallory")


def test_a_withheld_evaluation_does_not_name_the_adapter_that_learned_from_the_lost_collection(ws, tmp_path):
    from archivist.retrieval import evaluation
    from archivist.ui import metrics

    run = _adapter_run(ws, tmp_path, learned=["team", "secret"])
    access.revoke(ws, "mallory", "secret")
    ev = evaluation.get_evaluation(ws, run, user="mallory")
    assert ev.results["withheld"] == ["secret"]
    assert "board-tuned" not in json.dumps(ev.results)  # HEAD: results["adapter"] == "board-tuned"
    assert ev.results["adapter"] == evaluation.WITHHELD_ADAPTER
    assert ev.results["metrics"] == {"accuracy": 1.0}  # her numbers stay
    assert metrics.answered_by(ev.results) == metrics.HIDDEN_MODEL
    [listed] = evaluation.list_evaluations(ws, user="mallory")
    assert "board-tuned" not in json.dumps(listed.results)

    access.grant(ws, "mallory", "secret", "read")  # read again: the name is hers to see again
    assert evaluation.get_evaluation(ws, run, user="mallory").results["adapter"] == "board-tuned"


def test_an_adapter_that_learned_only_what_she_still_reads_keeps_its_name(ws, tmp_path):
    """As the chat: the adapter's name goes only with a collection it learned from (conversations.messages)."""
    from archivist.retrieval import evaluation

    run = _adapter_run(ws, tmp_path, learned=["team"])
    access.revoke(ws, "mallory", "secret")  # a passage's collection, not the adapter's
    ev = evaluation.get_evaluation(ws, run, user="mallory")
    assert ev.results["withheld"] == ["secret"] and ev.results["adapter"] == "board-tuned"
