"""The admin page (people, collections, access) and the evaluation page (AppTest)."""

from __future__ import annotations

import os

from pathlib import Path

from archivist import access, auth
from archivist.ui import metrics
from archivist.workspace import transaction

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")


def page(ws, user: str, path: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, user)
    at.run()
    return at.switch_page(path).run()


def test_admin_adds_a_person_a_collection_and_a_grant(ws):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    at = page(ws, "alice", "views/admin.py")
    assert not at.exception and [t.value for t in at.title] == ["Admin"]
    at.text_input(key="new-user-name").set_value("bob")
    at.text_input(key="new-user-password").set_value("short")
    at.button(key="FormSubmitter:add-user-Add").click().run()
    assert [e.value for e in at.error] == ["the password must have at least 8 characters"]
    assert ws.db.execute("SELECT COUNT(*) FROM users WHERE name = 'bob'").fetchone()[0] == 0
    at.text_input(key="new-user-name").set_value("bob")
    at.text_input(key="new-user-password").set_value("bob-pass-12")
    at.button(key="FormSubmitter:add-user-Add").click().run()
    assert not at.error and auth.verify_password(ws, "bob", "bob-pass-12") and not access.is_admin(ws, "bob")
    at.text_input(key="new-collection-name").set_value("finance")
    at.button(key="FormSubmitter:new-collection-Create collection").click().run()
    assert ws.collection_id("finance") is not None
    at.selectbox(key="grant-user").set_value("bob")
    at.selectbox(key="grant-collection").set_value("finance").run()
    at.selectbox(key="grant-level-bob-finance").set_value("write").run()
    at.button(key="save-grant").click().run()
    assert access.grants_of(ws, "bob") == {"finance": "write"}
    grid = at.dataframe[-1].value
    assert list(grid["person"]) == ["bob"] and list(grid["finance"]) == ["write"]
    at.selectbox(key="grant-level-bob-finance").set_value("no access").run()
    at.button(key="save-grant").click().run()
    assert access.grants_of(ws, "bob") == {}
    # an admin cannot demote or delete themselves from here
    at.selectbox(key="edit-user").set_value("alice").run()
    assert at.radio(key="edit-role-alice").disabled
    assert "delete-user" not in [b.key for b in at.button]


def test_set_password_takes_one_click_and_empties_the_field(ws):
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    bob_session = auth.create_session(ws, "bob")
    at = page(ws, "alice", "views/admin.py")
    at.selectbox(key="edit-user").set_value("bob").run()
    at.text_input(key="edit-pw-bob").set_value("short")
    at.button(key="FormSubmitter:set-password-bob-Set password").click().run()
    assert [e.value for e in at.error] == ["the password must have at least 8 characters"]
    at.text_input(key="edit-pw-bob").set_value("bob-new-pass-1")
    at.button(key="FormSubmitter:set-password-bob-Set password").click().run()  # the one click sends what was typed
    assert not at.error and auth.verify_password(ws, "bob", "bob-new-pass-1")
    assert auth.session_user(ws, bob_session) is None  # his sessions ended
    assert any("Password of bob set" in t.value for t in at.toast)


def test_delete_user_asks_first_naming_them_and_their_conversations(ws):
    from archivist import conversations

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "dave", "dave-pass-12", by="alice")
    auth.create_user(ws, "erin", "erin-pass-12", by="alice")
    conv = conversations.start_conversation(ws, "dave", title="dave's chat")
    at = page(ws, "alice", "views/admin.py")
    at.selectbox(key="edit-user").set_value("dave").run()
    at.button(key="delete-user").click().run()
    assert "dave" in [u["name"] for u in access.list_users(ws, by="alice")]  # not deleted on the first click
    (warning,) = at.warning
    assert warning.value.startswith("Delete dave? Their conversations (their whole chat history)")
    at.button(key="delete-user-no").click().run()
    assert not at.warning and "delete-user-yes" not in [b.key for b in at.button]
    at.selectbox(key="edit-user").set_value("erin").run()  # a confirmation is for one person only
    assert not at.warning
    at.selectbox(key="edit-user").set_value("dave").run()
    at.button(key="delete-user").click().run()
    at.selectbox(key="edit-user").set_value("erin").run()
    assert not at.warning and "delete-user-yes" not in [b.key for b in at.button]
    at.selectbox(key="edit-user").set_value("dave").run()
    at.button(key="delete-user").click().run()
    assert at.button(key="delete-user-yes").label == "Yes, delete dave"
    at.button(key="delete-user-yes").click().run()
    assert not at.exception and "dave" not in [u["name"] for u in access.list_users(ws, by="alice")]
    assert ws.db.execute("SELECT COUNT(*) FROM conversations WHERE id = ?", (conv,)).fetchone()[0] == 0
    assert not at.warning


def _retrieval(recall5: float, mrr: float) -> dict:
    # the shape `archivist eval retrieval` stores (archivist.retrieval.evaluate.evaluate_retrieval)
    return {"questions": 2, "k": 10, "reranker": None,
            "modes": {"dense": {"hit@1": 0.5, "recall@5": recall5 - 0.1, "mrr@10": mrr - 0.1, "latency_ms": 3.1},
                      "hybrid": {"hit@1": 0.5, "recall@5": recall5, "mrr@10": mrr, "latency_ms": 4.2}},
            "per_query": [{"question": "q1", "relevant": ["a.pdf"], "hybrid": {"recall@5": 1.0, "top": ["a.pdf", "b.md"]}},
                          {"question": "q2", "relevant": ["b.md"], "hybrid": {"recall@5": 0.0, "top": ["c.md"]}}],
            "comparisons": {"hybrid vs dense": {"mrr@10": {"diff": 0.1, "low": 0.0, "high": 0.2, "better": 1, "worse": 0,
                                                          "questions": 2}}}}


def test_evaluation_page_shows_latest_metrics_history_and_questions(ws):
    from archivist.retrieval.evaluation import store_evaluation

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    at = page(ws, "bob", "views/evaluation.py")
    assert any("No evaluation has run" in i.value for i in at.info)
    store_evaluation(ws, "retrieval", "QUESTIONS.jsonl", _retrieval(0.6, 0.5), user="bob")
    store_evaluation(ws, "retrieval", "QUESTIONS.jsonl", _retrieval(0.8, 0.7), user="bob")
    store_evaluation(ws, "answers", "QUESTIONS.jsonl", {
        "metrics": {"questions": 4, "answerable": 3, "unanswerable": 1, "accuracy": 0.25, "token_f1": 0.4,
                    "citation_precision": 0.9, "refusal_rate": 1.0, "seconds_per_question": 3.2},
        "per_question": [{"question": "q1", "gold": "20 weeks", "answer": "20 weeks [1]", "cited_documents": ["h.pdf"]}],
        "adapter": None}, user="bob")
    with transaction(ws.db):  # a row another tool broke must not break the page
        ws.db.execute("INSERT INTO evaluations(kind, set_name, results, user_id) "
                      "VALUES ('answers', 'x', 'not json', (SELECT id FROM users WHERE name = 'bob'))")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.label for t in at.tabs] == ["Retrieval", "Answers"]
    cards = {m.label: (m.value, m.delta) for m in at.tabs[0].metric}
    assert cards == {"hit@1": ("0.500", "0.0"), "recall@5": ("0.800", "0.2"), "mrr@10": ("0.700", "0.2")}  # hybrid, vs before
    modes = at.tabs[0].dataframe[0].value
    assert list(modes.index) == ["dense", "hybrid"] and modes.loc["hybrid", "recall@5"] == 0.8
    assert any("hybrid vs dense: mrr@10 +0.1000 (95% CI +0.0000..+0.2000; better on 1, worse on 0)" in c.value
               for c in at.tabs[0].caption)
    questions = at.tabs[0].dataframe[-1].value
    assert list(questions["question"]) == ["q1", "q2"] and list(questions["hybrid.top"]) == ["a.pdf, b.md", "c.md"]
    answers = {m.label: m.value for m in at.tabs[1].metric}
    assert answers == {"accuracy": "0.250", "token_f1": "0.400", "citation_precision": "0.900", "refusal_rate": "1.000"}
    assert any("could not be read: #4: results are not valid JSON" in w.value for w in at.tabs[1].warning)
    assert "by" not in at.tabs[0].dataframe[1].value.columns  # a member's own runs: no owner column


def test_metrics_helpers_flatten_and_survive_bad_rows(ws):
    from archivist.retrieval.evaluation import list_evaluations

    assert metrics.flatten_metrics({"a": 1, "b": {"c": 0.5, "ok": True, "d": [1]}, "e": float("nan")}) == {"a": 1.0, "b.c": 0.5}
    assert metrics.item_rows({"rows": [{"q": "x", "hits": [1, 2], "m": {"a": 1}}]}) == [{"q": "x", "hits": "1, 2", "m.a": 1}]
    with transaction(ws.db):  # a broken row with no owner (its user deleted): the admins' to see
        ws.db.execute("INSERT INTO evaluations(kind, results) VALUES ('retrieval', '{broken')")
    (row,) = list_evaluations(ws, user=None)
    assert metrics.headline({"metrics": {"questions": 3, "accuracy": 0.5}}) == (None, {"accuracy": 0.5})
    assert row.results == {} and "not valid JSON" in row.error and row.user is None
