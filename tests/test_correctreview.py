"""A member's correction is training data only once an admin approved it.

Before: a correction written on the chat page or sent to POST /v1/feedback went word for word into the
dataset an admin fine-tunes the shared adapter on (finetune/datasets.py `examples_from_feedback`), so one
member could teach everyone's chat model a falsehood, unread. Real SQLite, the real CLI and API.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import members_with_keys

from archivist import access, audit, feedback
from archivist.finetune import datasets

LIE = "Pages are answered within three days [1]; nobody is on call at night."
PASSAGE = [{"n": 1, "chunk_id": 1, "document": "oncall.md", "collection": "hr",
            "text": "The on-call engineer answers a page within 15 minutes, day and night."}]


@pytest.fixture
def team(ws):
    """Collection hr, member bob reading it, and an API key each for bob and the local admin."""
    access.create_collection(ws, "hr")
    return members_with_keys(ws, {"bob": ("hr", "read")})


def _correct(ws, who, text=LIE, question="How fast are pages answered?") -> int:
    return feedback.record_feedback(ws, who, question, "Within 15 minutes [1].", rating=-1, correction=text,
                                    citations=PASSAGE, collection="hr")


def _learned(ws) -> tuple[list[str], dict]:
    """The targets of the admin's feedback examples, and their skipped counts."""
    examples, stats = datasets.examples_from_feedback(ws)
    return [e.messages[-1]["content"] for e in examples], stats["skipped"]


def test_a_members_correction_is_learned_only_once_an_admin_approved_it(ws, team, cli):
    fid = _correct(ws, "bob")
    learned, skipped = _learned(ws)
    assert LIE not in learned and skipped == {datasets.UNREVIEWED: 1}  # left out, and counted
    listed = cli("feedback", "review")
    assert listed.returncode == 0 and f"[{fid}] by bob in hr" in listed.stdout and LIE in listed.stdout
    # a member may not approve, not even their own
    with pytest.raises(access.AccessDenied, match="may not review corrections: it needs the admin role"):
        feedback.review_correction(ws, "bob", fid, approve=True)
    r = cli("feedback", "review", "--approve", str(fid), env={"ARCHIVIST_USER": "bob"})
    assert r.returncode == 2 and "may not review corrections" in r.stderr
    assert _learned(ws)[0] == []
    r = cli("feedback", "review", "--approve", str(fid))
    assert r.returncode == 0 and f"feedback {fid}: correction approved" in r.stdout, r.stderr
    assert _learned(ws) == ([LIE], {})
    assert "no corrections awaiting review" in cli("feedback", "review").stderr
    for wrong in ("999", "99999999999999999999"):  # no such feedback: a clear error, not a traceback
        r = cli("feedback", "review", "--reject", wrong)
        assert r.returncode == 2 and f"archivist: error: no feedback {wrong}" in r.stderr
    # changed after the approval: the approval was of other words, so it waits again
    feedback.update_feedback(ws, fid, "bob", correction="Nobody answers pages at all.")
    assert _learned(ws) == ([], {datasets.UNREVIEWED: 1})
    r = cli("feedback", "review", "--reject", str(fid), "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"id": fid, "review": "rejected"}
    assert _learned(ws) == ([], {"correction rejected by an admin": 1})
    [rec] = [r for r in audit.read(ws, by="admin", action="feedback.reviewed") if r["detail"] == {"review": "rejected"}]
    assert (rec["user"], rec["target"]) == ("admin", str(fid))


def test_an_admins_own_correction_is_learned_at_once(ws, team):
    _correct(ws, None, text="Pages are answered within 15 minutes [1].")
    assert _learned(ws) == (["Pages are answered within 15 minutes [1]."], {})
    assert feedback.pending_corrections(ws) == []


def test_a_correction_reviewed_over_http_by_an_admin_only(ws, team, settings):
    from starlette.testclient import TestClient

    from archivist.api.app import create_app

    fid = _correct(ws, "bob")
    with TestClient(create_app(settings)) as client:
        bob, admin = ({"Authorization": f"Bearer {team[u]}"} for u in ("bob", "admin"))
        assert client.get("/v1/feedback/review", headers=bob).status_code == 403
        assert client.post(f"/v1/feedback/{fid}/review", json={"review": "approved"}, headers=bob).status_code == 403
        pending = client.get("/v1/feedback/review", headers=admin).json()["data"]
        assert [(f["id"], f["correction"]) for f in pending] == [(fid, LIE)]
        r = client.post(f"/v1/feedback/{fid}/review", json={"review": "approved"}, headers=admin)
        assert r.status_code == 200 and r.json()["review"] == "approved"
        assert client.post("/v1/feedback/999/review", json={"review": "approved"}, headers=admin).status_code == 404
    assert _learned(ws)[0] == [LIE]


def test_the_upgrade_approves_admins_corrections_and_leaves_members_awaiting_review(ws, team, settings):
    from archivist.workspace import open_workspace

    mine, bobs = _correct(ws, None, text="Within 15 minutes [1]."), _correct(ws, "bob", question="Who is on call?")
    ws.db.executescript("DROP TABLE feedback_reviews; PRAGMA user_version = 16;")  # as schema 16 left it
    ws.db.commit()
    ws.close()
    with open_workspace(settings) as again:
        assert [f["id"] for f in feedback.pending_corrections(again)] == [bobs]
        assert _learned(again)[0] == ["Within 15 minutes [1]."]
    db = sqlite3.connect(settings.home / "archivist.db")
    assert db.execute("SELECT feedback_id, review FROM feedback_reviews").fetchall() == [(mine, "approved")]
    db.close()
