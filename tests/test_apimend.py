"""An API integrator and team admin against what the last review left open, over real workspaces
(SQLite, the app's ASGI stack through starlette's TestClient, the CLI's own `main`):

- GET /health answered the generation queue's counts (answers completed, cancelled, running) to
  anyone, without a key;
- an admin reading other members' feedback (GET /v1/feedback) or stored evaluations (`archivist eval
  answers --compare RUN`) left no audit record;
- `document.added` records held the collection's id where every other record names the collection;
- finetune/evaluate.py verdict's perplexity tie-break could activate nothing (decide finds no lead in
  a tie), and its words called an equal perplexity "more sure of the gold answers".
"""

from __future__ import annotations

import json
import os

import pytest

from conftest import members_with_keys


@pytest.fixture
def team(ws):
    """A workspace with an `hr` collection, member bob (reads hr), member carol (nothing), and keys."""
    from archivist import access

    access.create_collection(ws, "hr")
    keys = members_with_keys(ws, {"bob": ("hr", "read")})
    access.add_user(ws, "carol", "member")
    return keys


def _client(settings):
    from starlette.testclient import TestClient

    from archivist.api.app import create_app

    return TestClient(create_app(settings))


def _records(ws, action: str) -> list[dict]:
    from archivist import audit

    return audit.read(ws, by="admin", action=action)


# -- /health ------------------------------------------------------------------------------------------


def test_health_shows_only_status_version_and_workspace_without_a_valid_key(ws, team, settings):
    """Before: every caller got {"worker", "llm", "generation": {"completed", "cancelled", ...}}, so
    anyone who could reach the port learned how much the team asked and when someone was asking."""
    def bearer(key: str) -> dict:
        return {"Authorization": f"Bearer {key}"}

    from archivist.keys import create_key, revoke_key

    prefix = team["bob"].split("-")[1]
    revoked = create_key(ws, "carol")
    revoke_key(ws, revoked)
    with _client(settings) as client:
        public = client.get("/health")
        wrong_secret = client.get("/health", headers=bearer(f"ak-{prefix}-{'x' * 43}"))
        garbage = client.get("/health", headers={"Authorization": "Basic Ym9iOmJvYg=="})
        old_key = client.get("/health", headers=bearer(revoked))
        member = client.get("/health", headers=bearer(team["bob"])).json()
        admin = client.get("/health", headers=bearer(team["admin"])).json()
    for r in (public, wrong_secret, garbage, old_key):
        assert r.status_code == 200 and r.json() == {"status": "ok", "version": r.json()["version"], "workspace": "ok"}
    # a key shows how the server runs: a member the load, an admin also the team's totals
    assert member["llm"] == "in-process" and member["worker"] == os.getpid() and member["status"] == "ok"
    assert set(member["generation"]) == {"running", "waiting", "max_waiting", "avg_seconds"}
    assert admin["generation"]["completed"] == 0 and admin["generation"]["cancelled"] == 0
    assert set(admin["generation"]) == set(member["generation"]) | {"completed", "cancelled", "failed"}
    # the wrong secret of a known key is on the record, as it is on every other route
    assert [(r["target"], r["detail"]["why"]) for r in _records(ws, "key.rejected")] == [
        (f"ak-{prefix}", "wrong secret"), (revoked[:11], "revoked")]


# -- an admin reading other users' feedback and evaluations is audited -----------------------------------


def _feedback(ws, user: str, question: str) -> int:
    from archivist import feedback

    return feedback.record_feedback(ws, user, question, "The answer shown.", rating=-1,
                                    correction=f"the right answer to {question!r}", collection="hr")


def test_an_admin_reading_other_members_feedback_over_the_api_is_on_the_audit_log(ws, team, settings, cli):
    """Before: GET /v1/feedback showed an admin every member's questions and corrections and wrote no
    record (governance.md said so), while reading the same questions in the audit log is recorded."""
    b1, b2 = _feedback(ws, "bob", "How many days of leave?"), _feedback(ws, "bob", "Who signs travel claims?")
    mine = _feedback(ws, "admin", "Where is the handbook?")
    with _client(settings) as client:
        seen = client.get("/v1/feedback", headers={"Authorization": f"Bearer {team['admin']}"}).json()["data"]
        own = client.get("/v1/feedback", headers={"Authorization": f"Bearer {team['bob']}"}).json()["data"]
    assert [f["id"] for f in seen] == [mine, b2, b1] and [f["id"] for f in own] == [b2, b1]
    [rec] = _records(ws, "feedback.read")  # bob reading his own rows writes none
    assert rec["user"] == "admin" and rec["target"] is None
    assert rec["detail"] == {"surface": "api", "ids": [b2, b1], "owners": ["bob"]}
    # visible to whoever reads the log, by kind and by family
    r = cli("audit", "--action", "feedback.read", "--json")
    assert r.returncode == 0 and [x["detail"]["owners"] for x in json.loads(r.stdout)] == [["bob"]]
    assert "feedback.read" in cli("audit", "--action", "feedback.").stdout
    # only the admin's own rows: nothing to record
    with _client(settings) as client:
        client.get("/v1/feedback?limit=1", headers={"Authorization": f"Bearer {team['admin']}"})
    assert len(_records(ws, "feedback.read")) == 1


def test_an_admin_comparing_with_a_members_stored_evaluation_is_on_the_audit_log(ws, team, tmp_path, cli):
    """`eval answers --compare RUN` reads the stored run (its questions and per-question answers) of
    whoever made it; before, an admin doing so with a member's run left no record. The refusal
    below quotes bob's question: the read happened even though no question was then asked."""
    from archivist.retrieval.evaluation import store_evaluation

    run = {"per_question": [{"question": "What is the per diem in Oslo?", "gold": "90 euros", "answer": "90 euros"}]}
    bobs = store_evaluation(ws, "answers", "bob-set.jsonl", run, user="bob")
    admins = store_evaluation(ws, "answers", "admin-set.jsonl", run, user="admin")
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"question": "Who approves leave?", "answer": "the manager"}) + "\n")

    r = cli("eval", "answers", "--set", other, "--compare", bobs)
    assert r.returncode != 0 and "What is the per diem in Oslo?" in r.stderr  # bob's question, read by the admin
    cli("eval", "answers", "--set", other, "--compare", admins)  # the admin's own run
    cli("eval", "answers", "--set", other, "--compare", bobs, "--user", "bob")  # bob's own run
    r = cli("eval", "answers", "--set", other, "--compare", admins, "--user", "carol")  # not carol's to read
    assert r.returncode != 0 and f"no evaluation #{admins}" in r.stderr
    [rec] = _records(ws, "evaluation.read")
    assert (rec["user"], rec["target"], rec["detail"]) == ("admin", str(bobs), {"surface": "cli", "ids": [bobs], "owners": ["bob"]})
    assert "evaluation.read" in cli("audit", "--action", "evaluation.read").stdout


def test_feedback_sent_again_unchanged_writes_no_changed_record(ws, team, settings):
    """A client retrying POST /v1/feedback (or the chat page's "Save" clicked twice) sent what was
    already stored; before, each wrote a `feedback.changed` record of a change that never happened."""
    from archivist import conversations

    conv = conversations.start_conversation(ws, "bob")
    conversations.add_message(ws, conv, "bob", "user", "How many days of leave?")
    mid = conversations.add_message(ws, conv, "bob", "assistant", "28 days a year.")
    auth = {"Authorization": f"Bearer {team['bob']}"}
    sent = [{"message_id": mid, "rating": -1, "correction": "30 days since 2026."},
            {"message_id": mid, "rating": -1, "correction": "30 days since 2026."},  # a retry
            {"message_id": mid},  # nothing to change
            {"message_id": mid, "correction": " 30 days since 2026. "},  # the same, as stored (stripped)
            {"message_id": mid, "rating": 1}]  # a real change
    with _client(settings) as client:
        replies = [client.post("/v1/feedback", headers=auth, json=body) for body in sent]
        [listed] = client.get("/v1/feedback", headers=auth).json()["data"]
    assert [r.status_code for r in replies] == [201, 200, 200, 200, 200]
    assert replies[-1].json() == listed  # the row POST answers is the row GET lists (before: without `withheld`)
    assert {r.json()["id"] for r in replies} == {replies[0].json()["id"]}
    assert [(r.json()["rating"], r.json()["correction"]) for r in replies][-1] == (1, "30 days since 2026.")
    assert len(_records(ws, "feedback.given")) == 1
    assert [r["detail"] for r in _records(ws, "feedback.changed")] == [{"rating": 1, "correction": True}]


def test_the_apis_verify_counts_the_records_an_erasure_redacted(ws, team, settings, cli):
    """GET /v1/audit/verify built {"redacted": N} and its response model dropped it: after `users erase`
    an auditor over HTTP saw "ok" and the record count, not that records were redacted, which
    `archivist audit verify --json` says."""
    from archivist.user_erase import erase_user

    _feedback(ws, "bob", "How many days of leave?")
    _feedback(ws, "bob", "Who signs travel claims?")
    erase_user(ws, "bob", by="admin")
    with _client(settings) as client:
        api = client.get("/v1/audit/verify", headers={"Authorization": f"Bearer {team['admin']}"}).json()
    cli_says = json.loads(cli("audit", "verify", "--json").stdout)
    assert api["ok"] and api["redacted"] == 2 and api == cli_says  # his two ratings (feedback.given)


def test_a_chat_requests_conversation_is_an_id_or_new_and_nothing_else(ws, team, settings):
    """`"conversation": true` was taken as conversation 1 (pydantic's lax int), where the answer would
    have been saved; a word other than "new" got `conversation.int: Input should be a valid integer ...
    (and 1 more problem)` with param `conversation.int`, the name of pydantic's union branch."""
    auth = {"Authorization": f"Bearer {team['bob']}"}
    with _client(settings) as client:
        for value in (True, False, "old", "1", 1.5, [1]):
            r = client.post("/v1/chat/completions", headers=auth, json={
                "model": "archivist", "messages": [{"role": "user", "content": "How many days of leave?"}],
                "conversation": value})
            error = r.json()["error"]
            assert (r.status_code, error["code"], error["param"]) == (422, "invalid_body", "conversation"), (value, r.text)
            assert error["message"].startswith("conversation: ") and 'or "new", got ' in error["message"], error
        # a whole number is still an id: bob has no conversation 7 (checked before anything is asked)
        r = client.post("/v1/chat/completions", headers=auth, json={
            "model": "archivist", "messages": [{"role": "user", "content": "x"}], "conversation": 7.0})
        assert (r.status_code, r.json()["error"]["code"]) == (404, "conversation_not_found")


# -- document.added names the collection ----------------------------------------------------------------


def test_document_records_name_the_collection_and_old_records_still_read_with_it(ws, team, embedder, tmp_path):
    """Before: {"collection_id": 1}: an auditor had to look the number up, and document.deleted and
    document.viewed name the collection. Records written that way still read, with the name added
    (the stored record is unchanged: `verify` still passes)."""
    from archivist import audit
    from archivist.ingest.pipeline import ingest_paths

    doc = tmp_path / "leave.md"
    doc.write_text("# Leave\n\nEvery employee has 28 days of paid leave a year.\n")
    ingest_paths(ws, [doc], collection="hr", embedder=embedder, progress=False)
    doc.write_text("# Leave\n\nEvery employee has 30 days of paid leave a year.\n")
    ingest_paths(ws, [doc], collection="hr", embedder=embedder, progress=False)
    [added], [updated] = _records(ws, "document.added"), _records(ws, "document.updated")
    for rec in (added, updated):
        assert rec["detail"]["collection"] == "hr" and "collection_id" not in rec["detail"], rec
        assert rec["target"] == "leave.md" and rec["detail"]["chunks"] == 1
    assert rec["detail"]["document_id"] == added["detail"]["document_id"]
    assert len(audit.versions(ws, added["detail"]["document_id"])) == 2  # erase still finds both versions

    # a record as an older release wrote it
    hr = ws.collection_id("hr")
    old = audit.record(ws, "document.added", user="admin", target="old.md",
                       detail={"document_id": 99, "collection_id": hr, "sha256": "ab" * 32, "chunks": 3})
    [rec] = [r for r in _records(ws, "document.added") if r["id"] == old]
    assert rec["detail"] == {"document_id": 99, "collection_id": hr, "collection": "hr", "sha256": "ab" * 32, "chunks": 3}
    assert audit.verify(ws).ok


# -- the fine-tune verdict ------------------------------------------------------------------------------


def _metrics(per_example: list[float], perplexity: float | None) -> dict:
    n = len(per_example)
    return {"accuracy": sum(per_example) / n, "f1": sum(per_example) / n, "citations": None,
            "perplexity": perplexity, "per_example": per_example}


def test_the_verdict_decides_on_answers_and_perplexity_only_reports():
    """verdict's outcomes: worse, better, and a tie. Before, a tie went to perplexity: a higher one
    was "no better" (False), a lower or EQUAL one "more sure of the gold answers" (True), which
    `decide` then always overturned (a tie has no lead: its interval is 0..0), so the tie-break
    activated nothing, and an equal perplexity was reported as "more sure"."""
    from archivist.finetune import evaluate

    scores = [1.0, 0.0, 0.5, 1.0, 0.0, 1.0]
    base = _metrics(scores, 3.0)
    worse = evaluate.verdict(base, _metrics([0.0] + scores[1:], 2.0))
    assert worse[0] is False and worse[1].startswith("worse than the base on the held-out split (")
    better = evaluate.verdict(base, _metrics([1.0] * 6, 4.0))
    assert better[0] is True and better[1].startswith("better than the base on the held-out split (")
    assert "perplexity 4.00 vs 3.00" in better[1]  # reported, even when it went the other way

    ties = {ppl: evaluate.verdict(base, _metrics(scores, ppl)) for ppl in (2.0, 3.0, 4.0)}
    for ppl, (ok, reason) in ties.items():
        assert ok is True, (ppl, reason)  # at least as good, whatever the perplexity (before: 4.0 was "no better")
        assert reason.startswith("as good as the base on answers") and f"perplexity {ppl:.2f} vs 3.00" in reason
        better_, why, d = evaluate.decide(base, _metrics(scores, ppl))  # and never activated: a tie is no lead
        assert better_ is False and (d["diff"], d["low"], d["high"]) == (0.0, 0.0, 0.0)
        assert why.startswith("the held-out split cannot tell it from the base: as good as the base on answers")
    # the same words but for the number (before: 3.00 vs 3.00 was "more sure of the gold answers")
    assert len({r.replace(f"perplexity {p:.2f}", "perplexity P") for p, (_, r) in ties.items()}) == 1
    # a report without perplexity on either side names none
    ok, reason = evaluate.verdict(_metrics(scores, None), _metrics(scores, 2.0))
    assert ok and "perplexity" not in reason
    # decide's outcomes, end to end: a clear lead is activated, a loss is not
    assert evaluate.decide(_metrics([0.0] * 12, 3.0), _metrics([1.0] * 10 + [0.0] * 2, 3.0))[0] is True
    assert evaluate.decide(_metrics([1.0] * 12, 3.0), _metrics([1.0] * 6 + [0.0] * 6, 1.0))[0] is False
