"""Feedback on answers over HTTP (archivist/feedback.py), as the chat page gives it: a thumb up or
down, or a correction, on an assistant message of one of the caller's own conversations.

    POST /v1/feedback      {"message_id", "rating": 1 | -1 | 0, "correction"}: the first makes the
                           message's feedback, later ones change it (as a second click on a thumb)
    GET  /v1/feedback      the caller's feedback, newest first (an admin: everyone's)
    GET  /v1/feedback/review               an admin's: the corrections awaiting review, oldest first
    POST /v1/feedback/{id}/review          an admin's: {"review": "approved" | "rejected", "correction"}; only an
                           approved correction is training data (archivist/feedback.py `review_correction`);
                           `correction`, the words the admin read: 409 when the member changed them since

The question, the answer and its passages are the ones stored with the message, never the client's
words: the passages name the collections a fine-tuned adapter's lineage will hold, so a client must
not be able to claim them. Find message ids with `GET /v1/conversations/{id}`.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from archivist import audit, conversations, feedback
from archivist.api import schemas as S
from archivist.api.deps import user, workspace
from archivist.api.errors import APIError, ErrorResponse, responses
from archivist.feedback import MAX_CORRECTION, check_correction
from archivist.workspace import Workspace

router = APIRouter(tags=["feedback"])


class FeedbackRequest(S._Open):
    model_config = ConfigDict(extra="forbid")  # `ratting: 1` is a mistake to report, not to ignore
    message_id: int = Field(le=S.ROW_ID_MAX, description="an assistant message of one of your conversations (GET /v1/conversations/{id})")
    rating: Literal[-1, 0, 1] | None = Field(None, description="1 thumbs up, -1 thumbs down, 0 none (a correction alone); "
                                                               "omitted: unchanged (new feedback: 0)")
    correction: str | None = Field(None, description=f"the answer you say is right, at most {MAX_CORRECTION} "
                                                      "characters; \"\" removes an earlier one")
    # JSON integers only: pydantic's lax mode read `true` as 1 (a thumbs up, or message 1) and "7" as 7
    _ints = field_validator("message_id", "rating", mode="before")(S._json_int)

    @field_validator("correction")
    @classmethod
    def _short(cls, v: str | None) -> str | None:
        check_correction(v)  # archivist.feedback's rule and words, answered 422 naming `correction`
        return v


class FeedbackOut(BaseModel):
    object: Literal["feedback"] = "feedback"
    id: int
    user: str | None = None
    message_id: int | None = None
    collection: str | None = None
    question: str
    answer: str
    rating: int
    correction: str | None = None
    citations: list[Any] = []
    adapter: str | None = None
    created_at: float
    withheld: list[str] | None = Field(None, description="collections you can no longer read: the answer, "
                                                         "correction and passages are withheld")
    review: Literal["approved", "rejected"] | None = Field(None, description="of the correction: approved (training "
                                                                         "data), rejected, or null: awaiting an admin's")


class FeedbackList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FeedbackOut]


@router.get("/v1/feedback", response_model=FeedbackList, responses=responses())
def list_route(limit: int = Query(100, ge=1, le=1000), ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """The caller's feedback, newest first (an admin: everyone's, as `archivist.feedback.list_feedback` shows it;
    other users' rows shown to an admin are on the audit log, `feedback.read`)."""
    rows = feedback.list_feedback(ws, who, limit=limit)
    audit.others_read(ws, who, "api", "feedback", [(f["id"], f["user"]) for f in rows])
    return {"object": "list", "data": [_out(f) for f in rows]}


@router.post("/v1/feedback", response_model=FeedbackOut, responses={**responses(403, 404), 201: {"model": FeedbackOut}})
def give_route(body: FeedbackRequest, ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """Rate or correct an answer of one of the caller's conversations: 201 with the new feedback, or
    200 with the message's earlier feedback changed."""
    m = _message(ws, who, body.message_id)
    fid, new = feedback.rate_message(ws, who, m, rating=body.rating, correction=body.correction)
    [row] = feedback.list_feedback(ws, who, mine_only=True, ids=[fid])
    # through the model, as GET's rows are: the same fields (`withheld` null) whichever route answers
    return JSONResponse(FeedbackOut.model_validate(_out(row, m["id"])).model_dump(mode="json"), status_code=201 if new else 200)


class ReviewRequest(S._Open):
    model_config = ConfigDict(extra="forbid")
    review: Literal["approved", "rejected"] = Field(description="approved: a fine-tune may learn the correction")
    correction: str | None = Field(None, description="the correction as you read it (GET /v1/feedback/review): "
                                                      "refused with 409 when it was changed since; omitted: unchecked")


@router.get("/v1/feedback/review", response_model=FeedbackList, responses=responses(403))
def pending_route(ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """The corrections awaiting an admin's review, oldest first (`archivist feedback review`); read on the
    audit log as GET /v1/feedback's rows are (`feedback.read`)."""
    rows = feedback.pending_corrections(ws, who)
    audit.others_read(ws, who, "api", "feedback", [(f["id"], f["user"]) for f in rows])
    return {"object": "list", "data": [_out(f) for f in rows]}


@router.post("/v1/feedback/{feedback_id}/review", responses={**responses(403, 404), 409: {
    "model": ErrorResponse, "description": "the correction was changed since it was read (`correction_changed`)"}})
def review_route(body: ReviewRequest, feedback_id: int = Path(ge=1, le=S.ROW_ID_MAX),
                 ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """An admin approves or rejects a correction as training data (`archivist feedback review --approve/--reject`);
    with `correction`, only if it still reads so: a member's edit since is not decided on unread."""
    expect = None if body.correction is None else feedback.correction_digest(body.correction)
    try:
        feedback.review_correction(ws, who, feedback_id, approve=body.review == "approved", expect=expect)
    except feedback.CorrectionChanged as e:
        raise APIError(409, str(e), "correction_changed", "correction") from None
    return {"object": "feedback.review", "id": feedback_id, "review": body.review}


def _message(ws: Workspace, who: str, message_id: int) -> dict:
    """The assistant message `message_id` of one of `who`'s conversations, as conversations.messages
    shows it to them. Raises APIError 404 for another user's message, like one that does not exist."""
    missing = APIError(404, f"no answer {message_id} in your conversations", "message_not_found", "message_id")
    row = ws.db.execute("SELECT conversation_id FROM messages WHERE id = ?", (message_id,)).fetchone()
    if row is None:
        raise missing
    try:
        found = conversations.messages(ws, row[0], who)  # raises LookupError when the conversation is not theirs
    except LookupError:
        raise missing from None
    m = next((m for m in found if m["id"] == message_id), None)
    if m is None or m["role"] != "assistant":
        raise APIError(404, f"message {message_id} is not an answer: feedback rates the assistant's messages",
                       "message_not_found", "message_id") if m is not None else missing
    if m.get("withheld"):
        raise APIError(403, f"answer {message_id} came from {', '.join(m['withheld'])}, which you can no longer read",
                       "permission_denied", "message_id")
    if not m.get("question"):  # saved without it (a plain citation list): the question asked before it, as the chat page reads it
        asked = [x["content"] for x in found if x["id"] < message_id and x["role"] == "user"]
        m["question"] = asked[-1] if asked else ""
    return m


def _out(f: dict, message_id: int | None = None) -> dict:
    return {"object": "feedback", "id": f["id"], "user": f.get("user"), "message_id": f.get("message_id", message_id),
            "collection": f.get("collection"), "question": f["question"], "answer": f["answer"], "rating": f["rating"],
            "correction": f.get("correction"), "citations": f.get("citations") or [], "adapter": f.get("adapter"),
            "created_at": f["created_at"], "review": f.get("review"), **({"withheld": f["withheld"]} if f.get("withheld") else {})}
