"""A fifth hostile member: a member of a team workspace (and, apart, the holder of a member's API key)
who wants other people's data, against real workspaces, the real app (Streamlit's AppTest) and a real
server.

Found: on a workspace whose people were added on the command line and work through API keys (the way
docs/api.md sets a team up), nobody has a password yet, so the app offered its first-admin form to
whoever opened it. A member typing her own name there was promoted to admin (her API key with her),
and any other name made a new admin: either way every collection was hers. After a revoke, the
feedback on an answer kept it readable when the revoked collection's passage was in its prompt but not
cited, and so did every stored answer written by an adapter trained on the revoked collection (chat,
feedback, evaluations), though her conversation, `adapters.may_use` and `/v1/models` had let it go.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archivist import access, auth
from conftest import adapter_trained_on, mallory_reads, members_with_keys

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")


def _app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(APP, default_timeout=60).run()


def test_a_member_cannot_take_the_first_admin_form_of_a_workspace_with_people(ws):
    """Before: the app showed "Create the admin account" to mallory, and her own name and a password
    made her an admin (and her API key an admin's key). Now the form is offered only while the
    workspace holds nobody but the passwordless local admin; with people in it the first password is
    set where the app is started (ARCHIVIST_ADMIN_USER / ARCHIVIST_ADMIN_PASSWORD)."""
    from archivist.keys import user_for_key

    access.create_collection(ws, "secret")
    keys = members_with_keys(ws, {"mallory": ("secret", "read")})
    access.revoke(ws, "mallory", "secret")  # she once read it; now she reads nothing
    assert auth.needs_first_admin(ws)  # nobody can sign in to the app yet

    at = _app()
    assert not at.exception
    assert "Create admin account" not in [b.label for b in at.button]
    assert [b.label for b in at.button] == ["Sign in"]
    assert any("ARCHIVIST_ADMIN_USER" in i.value for i in at.info), [i.value for i in at.info]
    # the function behind the form refuses too, her own name or a new one, and nothing changes
    for name in ("mallory", "mallory2", "admin"):
        with pytest.raises(auth.AuthError, match="ARCHIVIST_ADMIN_USER"):
            auth.create_first_admin(ws, name, "taken-over-1", from_app=True)
    assert not access.is_admin(ws, "mallory") and user_for_key(ws, keys["mallory"]) == "mallory"
    assert access.readable_collections(ws, "mallory") == []
    assert sorted(u["name"] for u in access.list_users(ws, by="admin")) == ["admin", "mallory"]
    assert auth.needs_first_admin(ws)

    # whoever starts the app sets the first admin, as before
    assert auth.admin_from_env(ws, {"ARCHIVIST_ADMIN_USER": "admin", "ARCHIVIST_ADMIN_PASSWORD": "the-real-admin-1"})
    assert auth.verify_password(ws, "admin", "the-real-admin-1") and not auth.needs_first_admin(ws)


def test_a_new_workspace_still_offers_the_first_admin_form(ws):
    """Nobody but the local admin: the form is there and works (docs/ui.md, "First start")."""
    assert auth.first_admin_form_open(ws)
    at = _app()
    assert [b.label for b in at.button] == ["Create admin account"]
    code = auth.issue_setup_code(ws)  # `archivist ui` prints it; the form asks for it (tests/test_keymend.py)
    assert auth.create_first_admin(ws, "admin", "first-admin-pw", from_app=True, setup_code=code) == {"name": "admin", "role": "admin"}
    assert not auth.first_admin_form_open(ws)


def test_feedback_on_an_answer_drawn_from_an_uncited_passage_is_withheld_as_its_conversation_is(tmp_path):
    """An answer asked over everything mallory read cited a `team` passage; a `secret` passage was in its
    prompt, uncited. After `revoke mallory secret` her conversation withholds the answer (and POST
    /v1/feedback refuses it), but before, GET /v1/feedback still gave her its text and her correction:
    the feedback row keeps only the cited passages, so only `team` was checked. Now the row is withheld
    by every collection the rated answer drew on, as the conversation is."""
    import httpx

    from archivist import conversations
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    answer = "The merger closes on March 3 [1]."
    settings = Settings.from_env(home=tmp_path / "ws")
    with open_workspace(settings) as ws:
        for c in ("team", "secret"):
            access.create_collection(ws, c)
        keys = members_with_keys(ws, {"mallory": ("team", "read")})
        access.grant(ws, "mallory", "secret", "read")
        conv = conversations.start_conversation(ws, "mallory")
        conversations.add_message(ws, conv, "mallory", "user", "When does the merger close?")
        cites = [{"n": 1, "document": "news.md", "collection": "team", "page": None, "chunk_id": 1, "score": 0.9,
                  "text": "The merger closes on March 3."}]
        passages = [{"n": 1, "document": "news.md", "collection": "team", "page": None, "chunk_id": 1, "score": 0.9,
                     "text": "The merger closes on March 3."},
                    {"n": 2, "document": "board.md", "collection": "secret", "page": None, "chunk_id": 2, "score": 0.8,
                     "text": "Codename BLUEHERON: the merger with Zephyr closes on March 3."}]
        mid = conversations.add_message(ws, conv, "mallory", "assistant", answer, citations=cites,
                                        meta={"question": "When does the merger close?", "collection": None,
                                              "passages": passages, "status": "answered"})
    server = serve_in_thread(create_app(settings))
    try:
        def call(method: str, path: str, **kw) -> httpx.Response:
            return httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {keys['mallory']}"},
                                 timeout=60, **kw)

        r = call("POST", "/v1/feedback", json={"message_id": mid, "rating": -1, "correction": "Codename BLUEHERON, March 3."})
        assert r.status_code == 201 and r.json()["answer"] == answer, r.text
        with open_workspace(settings) as ws:
            access.revoke(ws, "mallory", "secret")
        conv_msgs = call("GET", f"/v1/conversations/{conv}").json()["data"]
        assert conv_msgs[1]["withheld"] == ["secret"] and "March 3" not in conv_msgs[1]["content"]
        assert call("POST", "/v1/feedback", json={"message_id": mid, "rating": 1}).status_code == 403
        [row] = call("GET", "/v1/feedback").json()["data"]
        assert row["withheld"] == ["secret"], row
        assert "March 3" not in row["answer"] and row["correction"] is None and row["citations"] == []
        assert row["question"] == "When does the merger close?" and row["rating"] == -1  # hers, kept
        with open_workspace(settings) as ws:  # the grant back: the row shows again, nothing was lost
            access.grant(ws, "mallory", "secret", "read")
        [row] = call("GET", "/v1/feedback").json()["data"]
        assert row["answer"] == answer and row["correction"] == "Codename BLUEHERON, March 3." and row["withheld"] is None
    finally:
        server.stop()


def test_an_answer_written_by_an_adapter_trained_on_a_revoked_collection_is_withheld(ws, tmp_path):
    """An adapter is a copy of what it learned (docs/access.md), so its answer is drawn from its training
    collections as much as from the passages it cited. mallory chatted with `board-tuned` (trained on
    `team` and `secret`) while she read both; its answer cited a `team` passage only. Before: after `revoke
    mallory secret` she could no longer use the adapter, yet her conversation and her feedback still gave
    her its answer and her correction, and her stored answers evaluation its answers. Now all three withhold
    them, naming `secret`; the grant back shows them."""
    from archivist import adapters, conversations, feedback
    from archivist.retrieval import evaluation

    mallory_reads(ws)
    adapter_trained_on(ws, tmp_path / "saved-adapter", "board-tuned", ["team", "secret"], "board.md")
    assert adapters.may_use(ws, "mallory", "board-tuned")
    answer = "The merger with Zephyr closes on March 3 [1]."
    conv = conversations.start_conversation(ws, "mallory")
    conversations.add_message(ws, conv, "mallory", "user", "When does the office open?")
    cites = [{"n": 1, "document": "handbook.md", "collection": "team", "page": None, "chunk_id": 1, "score": 0.9,
              "text": "The office opens at 8 am."}]
    mid = conversations.add_message(ws, conv, "mallory", "assistant", answer, citations=cites, adapter="board-tuned",
                                    meta={"question": "When does the office open?", "collection": "team",
                                          "passages": cites, "status": "answered"})
    [shown] = [m for m in conversations.messages(ws, conv, "mallory") if m["id"] == mid]
    feedback.rate_message(ws, "mallory", shown, rating=-1, correction="Zephyr closes on March 3.")
    # her own answers evaluation, answered by the adapter: it records the passages' collections (team) and the adapter
    run = evaluation.store_evaluation(ws, "answers", "mine.jsonl", {
        "adapter": "board-tuned", "collections": ["team"], "metrics": {"answered": 1.0},
        "per_question": [{"question": "When does the office open?", "answer": answer, "cited_documents": ["handbook.md"]}]},
        user="mallory")

    access.revoke(ws, "mallory", "secret")
    assert not adapters.may_use(ws, "mallory", "board-tuned")
    [_, m] = conversations.messages(ws, conv, "mallory")
    assert m["withheld"] == ["secret"] and "Zephyr" not in m["content"] and m["citations"] == []
    assert m["adapter"] is None  # a name `GET /v1/models` no longer lists to her
    assert conversations.history(ws, conv, "mallory")[1]["content"] == m["content"]  # nor in a follow-up's history
    [row] = feedback.list_feedback(ws, "mallory")
    assert row["withheld"] == ["secret"] and "Zephyr" not in row["answer"] and row["correction"] is None
    assert row["adapter"] is None
    ev = evaluation.get_evaluation(ws, run, user="mallory")
    assert ev.results["withheld"] == ["secret"] and "Zephyr" not in str(ev.results["per_question"])
    assert ev.results["metrics"] == {"answered": 1.0}  # its numbers and questions stay hers

    access.grant(ws, "mallory", "secret", "read")
    [_, m] = conversations.messages(ws, conv, "mallory")
    assert m["content"] == answer and "withheld" not in m and m["adapter"] == "board-tuned"
    [row] = feedback.list_feedback(ws, "mallory")
    assert row["correction"] == "Zephyr closes on March 3." and "withheld" not in row
    assert evaluation.get_evaluation(ws, run, user="mallory").results["per_question"][0]["answer"] == answer
