"""A hostile member against the chat API's stream and read paths, and an admin on the Evaluation page,
over a real server (uvicorn in a thread) with the real default models and a real workspace.

Found: with `verified_only: false`, a member whose read access went while the answer was written
got the whole streamed draft first and the refusal after it; the Evaluation page showed an admin
everyone's runs with no `evaluation.read` record, where `archivist eval answers --compare` of
another member's run writes one; a withheld evaluation run kept each answer's key; a body that is not
UTF-8 got no reason; feedback read `true` as 1; a verified stream sent nothing while the model wrote;
an answer saved after its document was erased kept the erased text.
"""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import serve_documents
from e2e.test_browser import browser  # noqa: F401  (its module-scoped Chromium, for the browser test)

MERGER = """# Project Nightingale

The acquisition price of Blue Heron Ltd is 42 million euros. Only the board knows about Project Nightingale
until the signing on 3 June. The price is paid in three parts: 20 million euros at the signing, 12 million
euros after the audit, and 10 million euros after one year if the revenue targets are met.
"""


class API:
    def __init__(self, url, keys, settings):
        self.url, self.keys, self.settings = url, keys, settings

    def h(self, who: str) -> dict:
        return {"Authorization": f"Bearer {self.keys[who]}"}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    server, keys, settings = serve_documents(tmp_path_factory.mktemp("stream"), {"merger.md": MERGER}, "secret",
                                             {"bob": "read", "mallory": "read"}, max_waiting=8, warm=True)
    yield API(server.url, keys, settings)
    server.stop()


def _sse(response) -> list[dict | str]:
    """The data of each event of an SSE response, parsed ([DONE] as the string)."""
    return [line[6:] if line == "data: [DONE]" else json.loads(line[6:])
            for line in response.iter_lines() if line.startswith("data: ")]


def test_a_revoke_while_the_draft_streams_stops_it_with_an_error(api):
    """bob reads `secret` and streams a draft (verified_only false). His grant is revoked once the first
    piece has reached him. Before: the rest of the draft came to him all the same, and the refusal only
    after its last token. Now the stream stops at the revoke with a permission_denied event, nothing
    of the answer is saved, and the model is free for the next question."""
    from archivist import access, conversations
    from archivist.workspace import open_workspace

    body = {"model": api.settings.llm, "stream": True, "max_tokens": 160, "answer_mode": "generate",
            "verified_only": False, "conversation": "new",
            "messages": [{"role": "user", "content": "How is the acquisition price of Blue Heron Ltd paid?"}]}
    before, after, events = [], [], []
    with open_workspace(api.settings) as ws:
        with httpx.stream("POST", api.url + "/v1/chat/completions", json=body, headers=api.h("bob"), timeout=300) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                event = line[6:] if line == "data: [DONE]" else json.loads(line[6:])
                events.append(event)
                piece = event["choices"][0]["delta"].get("content") if isinstance(event, dict) and event.get("choices") else None
                if piece and not before:
                    before.append(piece)
                    access.revoke(ws, "bob", "secret", by="admin")
                elif piece:
                    after.append(piece)
        errors = [e for e in events if isinstance(e, dict) and "error" in e]
        assert before and len(errors) == 1, events[-3:]
        assert errors[0]["error"]["code"] == "permission_denied"
        assert "lost read access to secret" in errors[0]["error"]["message"]
        # the pieces already on their way when the revoke landed, no more (before: the whole draft)
        assert len(after) <= 4, (len(after), "".join(after))
        assert not any(isinstance(e, dict) and e.get("citations") is not None for e in events)  # no final chunk
        assert events[-1] == "[DONE]"
        assert conversations.list_conversations(ws, "bob") == []  # nothing of the answer was saved
        assert ws.db.execute("SELECT count(*) FROM audit WHERE action = 'access.denied' AND user = 'bob'").fetchone()[0] == 1
    # the generation ended and let go of the model: the next question is answered
    r = httpx.post(api.url + "/v1/chat/completions", headers=api.h("admin"), timeout=300,
                   json={**body, "stream": False, "max_tokens": 16, "conversation": None})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]


def test_ask_stops_a_draft_at_a_revoke_on_every_surface(api):
    """The app's chat page shows a draft through `ask(on_token=...)` as the API streams it. mallory's grant
    is revoked while her first draft piece is being shown. Before: every later piece was handed on too,
    and `ask` returned the answer. Now the next piece is not shown: `ask` raises AccessDenied, which the
    chat page shows as "Could not answer: ..." (and the API as its 403 event)."""
    from archivist import access
    from archivist.retrieval.answer import ask
    from archivist.workspace import open_workspace

    shown = []
    with open_workspace(api.settings) as ws:
        def on_token(piece: str) -> None:
            shown.append(piece)
            if len(shown) == 1:
                access.revoke(ws, "mallory", "secret", by="admin")

        try:
            with pytest.raises(access.AccessDenied, match="'mallory' lost read access to secret while the answer"):
                ask(ws, "How is the acquisition price of Blue Heron Ltd paid?", user="mallory", mode="generate",
                    on_token=on_token, surface="app")
        finally:
            access.grant(ws, "mallory", "secret", "read", by="admin")
    assert len(shown) == 1, shown


def _page(ws, user: str):
    """The app's Evaluation page as `user` sees it (AppTest: the page module itself, run by streamlit)."""
    import os
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from archivist import auth

    os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "ui" / "app.py"), default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, user)
    at.run()
    return at.switch_page("views/evaluation.py").run()


def _reads(ws) -> list[tuple]:
    return [(r[0], r[1], json.loads(r[2])) for r in ws.db.execute(
        "SELECT user, target, detail FROM audit WHERE action = 'evaluation.read' ORDER BY id")]


def test_the_evaluation_page_records_an_admin_reading_others_runs(ws):
    """alice (admin) opens the Evaluation page: bob's two runs and a run of a deleted account are shown to
    her. Before: no record, where `archivist eval answers --compare` of one of them writes
    `evaluation.read`. Now one `evaluation.read` (surface app) names the runs of others shown and their
    owners; her own run is left out, reruns of the page write nothing more, a run stored since is
    recorded when it first shows, and bob reading his own runs writes none."""
    from archivist import auth
    from archivist.retrieval.evaluation import store_evaluation
    from archivist.workspace import transaction

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    results = {"metrics": {"questions": 1, "accuracy": 1.0},
               "per_question": [{"question": "What does Blue Heron cost?", "gold": "42 million euros",
                                 "answer": "42 million euros [1]", "cited_documents": ["merger.md"]}]}
    first = store_evaluation(ws, "answers", "board.jsonl", results, user="bob")
    second = store_evaluation(ws, "answers", "board.jsonl", results, user="bob")
    own = store_evaluation(ws, "answers", "board.jsonl", results, user="alice")
    with transaction(ws.db):  # a run whose owner's account is gone since
        orphan = ws.db.execute("INSERT INTO evaluations(kind, set_name, results) VALUES ('answers', 'old.jsonl', ?)",
                               (json.dumps(results),)).lastrowid
    at = _page(ws, "alice")
    assert not at.exception, [e.value for e in at.exception]
    shown = at.tabs[0].dataframe[-2].value  # the "All runs" table: everyone's
    assert sorted(shown["run"]) == sorted([first, second, own, orphan])
    assert _reads(ws) == [("alice", None, {"surface": "app", "ids": [orphan, second, first], "owners": ["bob", None]})]
    at.selectbox(key="eval-run-answers").set_value(first).run()  # her next look: the same runs, nothing more
    assert not at.exception and len(_reads(ws)) == 1
    later = store_evaluation(ws, "answers", "board.jsonl", results, user="bob")
    at.run()
    assert _reads(ws)[1:] == [("alice", str(later), {"surface": "app", "ids": [later], "owners": ["bob"]})]
    mine = _page(ws, "bob")
    assert not mine.exception and sorted(mine.tabs[0].dataframe[-2].value["run"]) == sorted([first, second, later])
    assert len(_reads(ws)) == 2  # bob reading his own runs


def test_a_withheld_evaluation_run_keeps_no_key_answer(ws, embedder, tmp_path, monkeypatch):
    """bob evaluated answers while he could read `secret`, with a gold answer he had wrong (40 million); his
    read on secret was revoked since. Before: his run, read back (the Evaluation page, `eval --compare`),
    withheld the answer and the cited documents but kept each question's `key`, the short answer taken
    from secret's passage ("42"). Now the key is withheld with the answer; his question, gold and numbers stay."""
    from archivist import access
    from archivist.ingest.pipeline import ingest_paths
    from archivist.retrieval.evaluate import Question, evaluate_answers
    from archivist.retrieval.evaluation import get_evaluation, list_evaluations, store_evaluation

    monkeypatch.setenv("ARCHIVIST_READ_QUOTES", "0")
    (tmp_path / "merger.md").write_text(MERGER)
    ingest_paths(ws, [tmp_path / "merger.md"], collection="secret", embedder=embedder, progress=False)
    access.add_user(ws, "bob", "member")
    access.grant(ws, "bob", "secret", "read")
    q = "What is the acquisition price of Blue Heron Ltd?"
    answered = evaluate_answers(ws, [Question(q, answer="40 million euros", line=1)], user="bob", adapter=None,
                                embedder=embedder, mode="extractive")
    assert answered["per_question"][0]["key"] == "42" and answered["collections"] == ["secret"]
    run = store_evaluation(ws, "answers", "board.jsonl", answered, user="bob")
    access.revoke(ws, "bob", "secret")
    for ev in (get_evaluation(ws, run, user="bob"), *list_evaluations(ws, user="bob")):
        [row] = ev.results["per_question"]
        assert ev.results["withheld"] == ["secret"] and row["key"] == "" and "42 million" not in json.dumps(ev.results)
        assert (row["question"], row["gold"], row["contains_gold"]) == (q, "40 million euros", False)
    assert get_evaluation(ws, run, user="admin").results["per_question"][0]["key"] == "42"  # who reads secret sees it


@pytest.mark.e2e
def test_the_evaluation_page_in_a_browser_records_the_admins_read(tmp_path_factory, browser):
    """The same, in a real browser (Playwright + Debian Chromium) against `archivist ui`: alice signs in and
    opens the Evaluation page, which shows bob's run; the log then holds one `evaluation.read` of it."""
    import sqlite3

    from e2e.test_browser import _goto, _serve, _sign_in
    from playwright.sync_api import expect

    from archivist import auth
    from archivist.retrieval.evaluation import store_evaluation
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    home = tmp_path_factory.mktemp("e2e-eval") / "ws"
    with open_workspace(Settings.from_env(home=home)) as ws:
        auth.create_first_admin(ws, "alice", "alice-pass-1")
        auth.create_user(ws, "bob", "bob-pass-1234", by="alice")
        run = store_evaluation(ws, "answers", "board-questions.jsonl", {"metrics": {"questions": 1, "accuracy": 1.0},
                               "per_question": [{"question": "q1", "gold": "a", "answer": "a [1]"}]}, user="bob")
    for url in _serve(home, "e2e-stream-audit.log", warmup=False):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        _sign_in(page, url, "alice", "alice-pass-1")
        _goto(page, "Evaluation")
        expect(page.get_by_text("board-questions.jsonl", exact=False).first).to_be_visible()
        with sqlite3.connect(home / "archivist.db", timeout=30) as db:
            reads = db.execute("SELECT user, target, detail FROM audit WHERE action = 'evaluation.read'").fetchall()
        assert [(u, t, json.loads(d)) for u, t, d in reads] == \
            [("alice", str(run), {"surface": "app", "ids": [run], "owners": ["bob"]})]


@pytest.mark.parametrize("body", [b'{"model": "archivist", "messages": [{"role": "user", "content": "caf\xe9?"}]}',
                                  b'\xff{"model": "archivist"}'])
def test_a_body_that_is_not_utf8_is_named_as_such(api, body):
    """A chat request whose bytes are not UTF-8 (a Latin-1 client's "café"; a stray byte). Before: 400
    "There was an error parsing the body", code http_error, naming no reason. Now the 422 invalid_json of
    any body that is not JSON (docs/api.md), with the reason and where."""
    r = httpx.post(api.url + "/v1/chat/completions", content=body, timeout=60,
                   headers={**api.h("mallory"), "Content-Type": "application/json"})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_json" and error["message"].startswith("the body is not valid JSON: it is not UTF-8 text (")
    assert " at byte " in error["message"]


@pytest.mark.parametrize("field, value", [("rating", True), ("message_id", True), ("message_id", "MID")])
def test_feedback_takes_json_integers_only(api, field, value):
    """mallory's client sends `true` or a string where feedback wants an integer. Before: pydantic's lax
    mode read `"rating": true` as a thumbs up (stored, and fine-tuning reads it), `"message_id": true` as
    message 1 and "7" as 7, where the chat request's own ids refuse both. Now a 422 names the field and
    nothing is stored."""
    from archivist import conversations
    from archivist.workspace import open_workspace

    with open_workspace(api.settings) as ws:
        conv = conversations.start_conversation(ws, "mallory")
        conversations.add_message(ws, conv, "mallory", "user", "Who knows about Project Nightingale?")
        mid = conversations.add_message(ws, conv, "mallory", "assistant", "Only the board knows.", citations=[],
                                        meta={"question": "Who knows about Project Nightingale?", "status": "answered"})
        body = {"message_id": mid, "rating": 1, field: str(mid) if value == "MID" else value}
        r = httpx.post(api.url + "/v1/feedback", json=body, headers=api.h("mallory"), timeout=60)
        assert (r.status_code, r.json()["error"]["param"]) == (422, field), r.text
        assert "must be an integer" in r.json()["error"]["message"]
        assert ws.db.execute("SELECT count(*) FROM feedback").fetchone()[0] == 0


def test_a_verified_stream_sends_keepalives_while_the_answer_is_written(api, monkeypatch):
    """verified_only (the default) sends the checked answer whole when it is ready. Before: the SSE comment
    that keeps proxies and clients' read timeouts from closing the stream came only while the request was
    queued, so nothing at all was sent while the model wrote (13.8 s for a 120-token answer on the test
    box; minutes for max_tokens 2048 on a CPU: past nginx's 60 s and the openai client's read timeout).
    Now a comment goes out whenever KEEPALIVE_S passed with nothing sent (0.5 s here, 10 s by default)."""
    import time

    from archivist.api import chat

    monkeypatch.setattr(chat, "KEEPALIVE_S", 0.5)
    body = {"model": api.settings.llm, "stream": True, "max_tokens": 60, "answer_mode": "generate",
            "messages": [{"role": "user", "content": "Describe Project Nightingale, the acquisition of Blue Heron Ltd, "
                                                     "its price and how it is paid, in detail."}]}
    arrived = []
    with httpx.stream("POST", api.url + "/v1/chat/completions", json=body, headers=api.h("admin"), timeout=300) as r:
        for line in r.iter_lines():
            if line:
                arrived.append((time.monotonic(), line))
    data = [i for i, (_, line) in enumerate(arrived) if line.startswith("data: ")]
    first, answer = data[0], next(i for i in data if '"content": "' in arrived[i][1] and '"role"' not in arrived[i][1])
    written = arrived[answer][0] - arrived[first][0]  # from the role chunk to the checked answer
    if written < 2.0:
        pytest.skip(f"the answer took {written:.1f} s: too quick to see a silent stretch")
    gaps = [b[0] - a[0] for a, b in zip(arrived[first:answer], arrived[first + 1:answer + 1])]
    assert max(gaps) < 1.5, (round(written, 1), [round(g, 2) for g in gaps])
    assert all(line.startswith(": ") for _, line in arrived[first + 1:answer])  # comments only: no draft


BOARD = """# Falcon Ridge

The Falcon Ridge site will be sold to Orion Partners for 73 million euros. The sale closes on 9 May, after the
works council has been heard. The proceeds pay back the bridge loan of 40 million euros first; the rest goes
to the new plant in Tarragona, which opens in the spring of next year with 120 employees.
"""


def test_a_document_erased_while_the_answer_is_written_is_not_saved_with_it(api, tmp_path):
    """The admin asks about board.md (streamed draft, saved in a new conversation) and erases board.md
    while the answer is being written. Before: erase scrubbed every stored copy, then the answer, done a
    few seconds later, was saved with board.md's passages ("Orion Partners") in the conversation, a copy
    of the erased text that nothing would scrub. Now the erase's record is checked in the transaction
    that saves: the answer is withheld (an error event, 404) and nothing of it is saved. (Had the answer
    been saved first, the erase scrubs it: either way no stored message holds the text.)"""
    from archivist.ingest.erase import erase
    from archivist.ingest.pipeline import ingest_paths
    from archivist.workspace import open_workspace

    (tmp_path / "board.md").write_text(BOARD)
    body = {"model": api.settings.llm, "stream": True, "max_tokens": 200, "answer_mode": "generate",
            "verified_only": False, "conversation": "new", "collection": "board",
            "messages": [{"role": "user", "content": "Describe the sale of the Falcon Ridge site, its buyer, its price "
                                                     "and what the proceeds pay for, in detail."}]}
    events = []
    with open_workspace(api.settings) as ws:
        [added] = ingest_paths(ws, [tmp_path / "board.md"], collection="board", progress=False)
        doc = ws.db.execute("SELECT id FROM documents WHERE path = ?", (added.name,)).fetchone()[0]
        with httpx.stream("POST", api.url + "/v1/chat/completions", json=body, headers=api.h("admin"), timeout=300) as r:
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                events.append(line[6:] if line == "data: [DONE]" else json.loads(line[6:]))
                if len(events) == 2:  # the draft's first piece: the passages were read, the model is writing
                    erase(ws, doc, user="admin")
        errors = [e["error"] for e in events if isinstance(e, dict) and "error" in e]
        saved = [e for e in events if isinstance(e, dict) and e.get("message_id")]
        assert len(errors) + len(saved) == 1, events[-3:]
        stored = ws.db.execute("SELECT content || coalesce(citations, '') FROM messages").fetchall()
        assert not any("Orion Partners" in s for (s,) in stored)
        if saved:  # the answer was done before the erase began (a fast machine): the erase scrubbed it
            return
        assert errors == [{"message": f"{added.name} was erased while the answer was prepared; the answer drew on it "
                                      "and is withheld", "type": "not_found_error", "code": "not_found", "param": None}]
