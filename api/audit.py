"""The audit log for admins: `GET /v1/audit` (archivist/audit.py). Members get 403, like the CLI.

Filters as `archivist audit`: `user` (who acted), `since` / `until` (ISO 8601, epoch seconds, or
7d / 12h / 30m ago), `action` (a kind or a prefix ending in '.'), `limit` (the newest N);
`format=csv` answers text/csv instead of JSON. `GET /v1/audit/verify` checks the hash chain.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from archivist import access, audit, audit_export, audit_retention
from archivist.api.deps import user, workspace
from archivist.api.errors import responses
from archivist.workspace import Workspace

router = APIRouter(tags=["audit"])
ADMINS_ONLY = "the caller is not an admin: only admins read the audit log"  # its routes' 403


class AuditRecord(BaseModel):
    id: int
    time: str
    ts: float
    user: str | None
    action: str
    target: str | None
    detail: dict[str, Any]
    hash: str


class AuditList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AuditRecord]


class AuditVerdict(BaseModel):
    ok: bool
    records: int
    redacted: int = 0  # records whose personal part an erasure removed (`archivist audit verify --json` has it too)
    head: str
    problems: list[str]


@router.get("/v1/audit", response_model=AuditList, responses={**responses(400, 403, forbidden=ADMINS_ONLY), 200: {
    "content": {"text/csv": {}}, "description": "the records, oldest first (JSON, or CSV with format=csv)"}})
def audit_log(user_: str | None = Query(None, alias="user", description="only records of this user (who acted)"),
              since: str | None = Query(None, description="from this time"),
              until: str | None = Query(None, description="before this time"),
              action: str | None = Query(None, description="a kind (question, access.grant, ...) or a prefix ending in '.'"),
              limit: int | None = Query(None, ge=1, le=100_000, description="only the newest N records"),
              format: Literal["json", "csv"] = Query("json"),
              ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """Audit records, oldest first, filtered. Needs the admin role. Applies the retention setting
    first (`audit_days`), as `archivist audit` and the Audit page do."""
    access.require_admin(ws, who, "read the audit log")
    audit_retention.apply_retention(ws)
    try:
        rows = audit.read(ws, by=who, user=user_, since=since, until=until, action=action, limit=limit)
    except audit.AuditError as e:
        raise ValueError(str(e)) from None
    audit.was_read(ws, who, "api", {"user": user_, "since": since, "until": until, "action": action, "limit": limit},
                   len(rows), format)
    if format == "csv":
        return PlainTextResponse(audit_export.to_csv(rows), media_type="text/csv")
    return {"object": "list", "data": rows}


@router.get("/v1/audit/verify", response_model=AuditVerdict, responses=responses(403, forbidden=ADMINS_ONLY))
def verify(ws: Workspace = Depends(workspace), who: str = Depends(user)):
    """Check the hash chain: ok, the records checked, the head hash, and where it breaks. Needs the admin role."""
    access.require_admin(ws, who, "read the audit log")
    v = audit.verify(ws)
    return {"ok": v.ok, "records": v.records, "redacted": v.redacted, "head": v.head, "problems": v.problems}
