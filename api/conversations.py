"""The caller's chat conversations (archivist/conversations.py), read-only: what the chat page saved,
so that a client can find the assistant message it gives feedback on (`POST /v1/feedback`).

    GET /v1/conversations          the caller's conversations, most recently active first
    GET /v1/conversations/{id}     one of them with its messages (an answer from a collection the
                                   caller can no longer read is withheld, as on every surface)

Conversations are their owner's only, admins included: another user's is 404 like an unknown one.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict

from archivist import conversations
from archivist.api import schemas as S
from archivist.api.deps import user, workspace
from archivist.api.errors import APIError, responses
from archivist.workspace import Workspace

router = APIRouter(tags=["feedback"])


class ConversationOut(BaseModel):
    object: Literal["conversation"] = "conversation"
    id: int
    title: str | None
    created_at: float
    last_at: float
    messages: int


class ConversationList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ConversationOut]


class MessageOut(BaseModel):
    model_config = ConfigDict(extra="allow")  # an answer's stored facts: status, passages, question …
    id: int
    role: str
    content: str
    citations: list[Any] = []


class ConversationMessages(BaseModel):
    object: Literal["conversation"] = "conversation"
    id: int
    data: list[MessageOut]


@router.get("/v1/conversations", response_model=ConversationList, responses=responses())
def list_route(limit: int = Query(50, ge=1, le=1000), ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """The caller's own conversations, most recently active first."""
    return {"object": "list", "data": [{"object": "conversation", **c} for c in conversations.list_conversations(ws, who, limit)]}


@router.get("/v1/conversations/{conversation_id}", response_model=ConversationMessages, responses=responses(404))
def get_route(conversation_id: int = Path(le=S.ROW_ID_MAX), ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """One of the caller's conversations: its messages in order (an assistant message's `id` is what
    `POST /v1/feedback` rates)."""
    try:
        found = conversations.messages(ws, conversation_id, who)
    except LookupError:
        raise APIError(404, f"no conversation {conversation_id} among yours", "conversation_not_found", "conversation_id") from None
    return {"object": "conversation", "id": conversation_id, "data": found}
