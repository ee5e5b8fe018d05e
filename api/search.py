"""POST /v1/search: ranked passages, retrieval only (archivist.retrieval.search.search)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from archivist import audit
from archivist.api import schemas as S
from archivist.api.deps import requested_collections, user, workspace
from archivist.api.errors import APIError, responses
from archivist.workspace import Workspace

router = APIRouter(tags=["retrieval"])


@router.post("/v1/search", response_model=S.SearchResponse, responses=responses(403, 404, 413))
def search_route(body: S.SearchRequest, ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """Ranked passages among the collections the key's user may read (retrieval only, no generation)."""
    from archivist.retrieval.answer import hit_json
    from archivist.retrieval.search import search

    scope = requested_collections(ws, who, body.collection, body.collections)
    require_documents(ws, who, scope, body.documents)
    hits = search(ws, body.query, k=body.k, user=who, collections=scope, documents=body.documents,
                  kinds=body.kinds, mode=body.mode)
    audit.searched(ws, who, "api", body.query, hits, scope, body.documents, body.kinds)
    return {"object": "list", "data": [hit_json(h) for h in hits]}


def require_documents(ws: Workspace, who: str, scope: list[str] | None, documents: list[str] | None) -> None:
    """Raise APIError 404 naming the first of `documents` that is no document `who` may read in `scope`:
    a filter on it would silently find nothing (search, and the chat, which filters as search does)."""
    from archivist.retrieval.search import unreadable_document

    missing = unreadable_document(ws, who, scope, documents)
    if missing is not None:
        raise APIError(404, f"no document {missing!r} you may read (see GET /v1/documents)", "document_not_found",
                       "documents")
