"""An admin's decision on a correction is of the words they read, and its author sees the decision.

Before: `POST /v1/feedback/{id}/review` and `archivist feedback review --approve ID` approved the correction as it
was at that moment, so a member's edit made between the admin's reading and the approval was approved unread; and
`GET /v1/feedback` did not say whether a member's correction was approved, rejected or awaiting review.
Real SQLite, the real CLI and the real API app.
"""

from __future__ import annotations

import json

from test_correctreview import PASSAGE, team  # noqa: F401  (the fixture)

from archivist import feedback
from archivist.finetune import datasets

READ = "Pages are answered within 15 minutes [1]."
SWAPPED = "Pages are answered within three days [1]; nobody is on call at night."


def _correct(ws, text=READ) -> int:
    return feedback.record_feedback(ws, "bob", "How fast are pages answered?", "Within an hour [1].", rating=-1,
                                    correction=text, citations=PASSAGE, collection="hr")


def _learned(ws) -> list[str]:
    return [e.messages[-1]["content"] for e in datasets.examples_from_feedback(ws)[0]]


def test_the_cli_decides_only_on_the_correction_its_listing_showed(ws, team, cli):
    fid = _correct(ws)
    listed = cli("feedback", "review")
    digest = feedback.correction_digest(READ)
    assert listed.returncode == 0 and f"digest:     {digest}" in listed.stdout, listed.stdout
    assert json.loads(cli("feedback", "review", "--json").stdout)[0]["digest"] == digest
    feedback.update_feedback(ws, fid, "bob", correction=SWAPPED)  # bob edits after the admin read the listing
    r = cli("feedback", "review", "--approve", str(fid), "--expect", digest)
    assert r.returncode == 2 and f"the correction of feedback {fid} was changed" in r.stderr, (r.stdout, r.stderr)
    assert _learned(ws) == [] and [f["id"] for f in feedback.pending_corrections(ws)] == [fid]  # still waiting
    fresh = feedback.correction_digest(SWAPPED)
    assert fresh in cli("feedback", "review").stdout
    r = cli("feedback", "review", "--reject", str(fid), "--expect", fresh)
    assert r.returncode == 0 and f"feedback {fid}: correction rejected" in r.stdout, r.stderr
    assert "--expect DIGEST goes with --approve ID" in cli("feedback", "review", "--expect", fresh).stderr
    assert "--expect DIGEST" in cli("feedback", "review", "--help").stdout


def test_the_api_refuses_a_decision_on_words_changed_since_and_shows_the_author_the_review(ws, team, settings):
    from starlette.testclient import TestClient

    from archivist import conversations
    from archivist.api.app import create_app

    conv = conversations.start_conversation(ws, "bob")
    conversations.add_message(ws, conv, "bob", "user", "How fast are pages answered?")
    mid = conversations.add_message(ws, conv, "bob", "assistant", "Within an hour [1].", citations=PASSAGE)
    with TestClient(create_app(settings)) as client:
        bob, admin = ({"Authorization": f"Bearer {team[u]}"} for u in ("bob", "admin"))
        r = client.post("/v1/feedback", json={"message_id": mid, "rating": -1, "correction": READ}, headers=bob)
        assert r.status_code == 201 and r.json()["review"] is None, r.text  # awaiting an admin's review
        fid = r.json()["id"]
        [shown] = client.get("/v1/feedback/review", headers=admin).json()["data"]
        assert client.post("/v1/feedback", json={"message_id": mid, "correction": SWAPPED}, headers=bob).status_code == 200
        r = client.post(f"/v1/feedback/{fid}/review", json={"review": "approved", "correction": shown["correction"]},
                        headers=admin)
        assert r.status_code == 409 and r.json()["error"]["code"] == "correction_changed", r.text
        assert f"feedback {fid}" in r.json()["error"]["message"]
        assert _learned(ws) == [] and client.get("/v1/feedback", headers=bob).json()["data"][0]["review"] is None
        [shown] = client.get("/v1/feedback/review", headers=admin).json()["data"]
        r = client.post(f"/v1/feedback/{fid}/review", json={"review": "rejected", "correction": shown["correction"]},
                        headers=admin)
        assert r.status_code == 200 and r.json()["review"] == "rejected", r.text
        assert client.get("/v1/feedback", headers=bob).json()["data"][0]["review"] == "rejected"
        r = client.post(f"/v1/feedback/{fid}/review", json={"review": "approved", "correction": SWAPPED}, headers=admin)
        assert r.status_code == 200, r.text
        assert [f["review"] for f in client.get("/v1/feedback", headers=bob).json()["data"]] == ["approved"]
        r = client.post("/v1/feedback", json={"message_id": mid, "rating": 1}, headers=bob)  # the single row: a rating
        assert r.status_code == 200 and r.json()["review"] == "approved", r.text  # alone keeps the approval
        assert client.get("/v1/feedback", headers=admin).json()["data"][0]["review"] == "approved"
    assert _learned(ws) == [SWAPPED]
