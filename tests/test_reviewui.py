"""Reviewing members' corrections in the app, and a member seeing where hers stands (AppTest, real SQLite).

Before: the review gate (archivist/feedback.py `review_correction`) had the CLI and the API only. The Admin page
listed no correction awaiting review, and the chat page did not say whether a member's correction was pending,
approved or rejected. So an admin who used only the app never learned that anything was waiting. A member could
not tell whether the model would learn what she wrote.
"""

from __future__ import annotations

import os
from pathlib import Path

from archivist import access, audit, auth, conversations, feedback
from archivist.finetune import datasets
from archivist.ui import core

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")
QUESTION = "How fast are pages answered?"
ANSWER = "Within 15 minutes [1]."
# Markdown that would render as a link and bold text, and a right-to-left override that would reorder what the
# admin reads: the page must show the words the model would learn, exactly as they are.
LIE = "Pages wait **three days**; see [the rota](http://evil.example) \u202eyad"
PASSAGE = [{"n": 1, "chunk_id": 1, "document": "oncall.md", "collection": "hr",
            "text": "The on-call engineer answers a page within 15 minutes, day and night."}]


def _team(ws) -> None:
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    access.create_collection(ws, "hr", by="alice")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    access.grant(ws, "bob", "hr", "read", by="alice")


def _page(ws, user: str, path: str | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, user)
    at.run()
    return at.switch_page(path).run() if path else at


def _learned(ws) -> list[str]:
    return [e.messages[-1]["content"] for e in datasets.examples_from_feedback(ws, "alice")[0]]


def notes(at) -> list[str]:
    """The chat page's notes on where a correction stands."""
    return [c.value for c in at.caption if c.value.startswith("Your correction")]


def test_an_admin_approves_or_rejects_a_members_correction_on_the_admin_page(ws):
    _team(ws)
    fid = feedback.record_feedback(ws, "bob", QUESTION, ANSWER, rating=-1, correction=LIE, citations=PASSAGE,
                                   collection="hr")
    at = _page(ws, "alice", "views/admin.py")
    assert not at.exception, [e.value for e in at.exception]
    assert [t.label for t in at.tabs][-1] == "Corrections"
    assert [i.value for i in at.info] == ["Corrections awaiting your review: 1 (see Corrections). A fine-tune learns a "
                                          "member's correction only once it is approved."]
    assert "**Corrections awaiting review**" in [m.value for m in at.markdown]
    # who, the collection, and the question, answer and correction as plain text: no link, no hidden reordering
    assert any(m.value.startswith("**bob** · ") and m.value.endswith(" · hr") for m in at.markdown)
    assert [t.value for t in at.text] == [QUESTION, ANSWER, LIE.replace("\u202e", "[U+202E]")]
    # shown to an admin: on the audit log as the CLI and the API record it, once per session
    [read] = audit.read(ws, by="admin", action="feedback.read")
    assert (read["user"], read["detail"]["surface"], read["detail"]["ids"]) == ("alice", "app", [fid])
    # bob changes his words after the page showed them: approving the words alice read must not approve these
    feedback.update_feedback(ws, fid, "bob", correction="Nobody answers pages at all.")
    at.button(key=f"approve-{fid}").click().run()
    assert [e.value for e in at.error] == [core.md_escape(f"the correction {fid} was changed or removed since this page "
                                                          "showed it: read it again")]
    assert [f["id"] for f in feedback.pending_corrections(ws, "alice")] == [fid] and _learned(ws) == []
    assert at.text[-1].value == "Nobody answers pages at all."  # the page now shows what he wrote
    at.button(key=f"approve-{fid}").click().run()
    assert not at.error and _learned(ws) == ["Nobody answers pages at all."]
    assert feedback.pending_corrections(ws, "alice") == [] and not at.text and not at.info
    assert "No corrections awaiting review." in [c.value for c in at.caption]
    assert any("Approved the correction by bob" in t.value for t in at.toast)
    # a second one, rejected
    other = feedback.record_feedback(ws, "bob", "Who is on call?", "Dana [1].", rating=-1, correction="Nobody.",
                                     citations=PASSAGE, collection="hr")
    at = _page(ws, "alice", "views/admin.py")
    at.button(key=f"reject-{other}").click().run()
    assert not at.error and feedback.pending_corrections(ws, "alice") == []
    assert "Nobody." not in _learned(ws)
    reviews = [(r["target"], r["detail"]) for r in audit.read(ws, by="admin", action="feedback.reviewed")]
    assert sorted(reviews) == sorted([(str(fid), {"review": "approved"}), (str(other), {"review": "rejected"})])


def test_a_member_sees_whether_her_correction_awaits_review_was_approved_or_rejected(ws):
    _team(ws)
    conv = conversations.start_conversation(ws, "bob")
    conversations.add_message(ws, conv, "bob", "user", QUESTION)
    conversations.add_message(ws, conv, "bob", "assistant", "Pages are answered within 15 minutes.")
    at = _page(ws, "bob")
    assert not at.exception and [t.value for t in at.title] == ["Chat"], [e.value for e in at.exception]
    assert notes(at) == []  # nothing written yet: nothing to say
    box = next(t for t in at.text_area if t.key.startswith("fix-text-"))
    box.set_value("Within five minutes.")
    next(b for b in at.button if b.label == "Save").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert notes(at) == ["Your correction is awaiting an admin's review before the model learns it."]
    [pending] = feedback.pending_corrections(ws, "alice")
    feedback.review_correction(ws, "alice", pending["id"], approve=True)
    assert notes(_page(ws, "bob")) == ["Your correction was approved: a fine-tune on feedback may learn it."]
    feedback.review_correction(ws, "alice", pending["id"], approve=False)
    assert notes(_page(ws, "bob")) == ["Your correction was not approved by an admin: it is not used for training."]
    # she changes it: it waits again, and the page says so at once
    at = _page(ws, "bob")
    next(t for t in at.text_area if t.key.startswith("fix-text-")).set_value("Within ten minutes.")
    next(b for b in at.button if b.label == "Save").click().run()
    assert notes(at) == ["Your correction is awaiting an admin's review before the model learns it."]
