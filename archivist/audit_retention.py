"""Audit retention: records older than N days are deleted, leaving a checkpoint that `audit.verify`
checks the chain from, vouched for by an `audit.purge` record (`archivist audit purge --days N`, and
the `audit_days` setting applied when the log is read)."""

from __future__ import annotations

import time

from archivist import access
from archivist.audit import AuditError, record
from archivist.workspace import Workspace, transaction, truncate_wal


def purge(ws: Workspace, days: float, by: str | None = None) -> dict:
    """Delete records older than `days` days, leaving a checkpoint: the id and hash of the last
    purged record, kept in audit_state and vouched for by a new `audit.purge` record, so `verify`
    still checks the chain from there. Returns {"purged", "through_id"}. Needs the admin role.
    Raises AuditError for a negative or non-numeric `days`."""
    return _purge(ws, days, access.require_admin(ws, by, "purge the audit log"))


def _purge(ws: Workspace, days, actor: str) -> dict:
    try:
        days = float(days)
    except (TypeError, ValueError):
        raise AuditError(f"audit retention must be a number of days, got {days!r}") from None
    if days < 0:
        raise AuditError(f"audit retention must be 0 days or more, got {days}")
    cutoff = time.time() - days * 86400
    if ws.db.execute("SELECT 1 FROM audit WHERE ts < ? LIMIT 1", (cutoff,)).fetchone() is None:
        return {"purged": 0, "through_id": None}
    # Purged records hold questions and queries: their freed pages are zeroed (secure_delete, set by
    # workspace.connect) and the WAL, which still holds the pages as they were, is emptied after.
    with transaction(ws.db):
        last = ws.db.execute("SELECT id, hash FROM audit WHERE ts < ? ORDER BY id DESC LIMIT 1", (cutoff,)).fetchone()
        if last is None:
            return {"purged": 0, "through_id": None}
        n = ws.db.execute("DELETE FROM audit WHERE id <= ?", (last["id"],)).rowcount
        for key, value in (("checkpoint_id", str(last["id"])), ("checkpoint_hash", last["hash"])):
            ws.db.execute("INSERT OR REPLACE INTO audit_state(key, value) VALUES (?, ?)", (key, value))
        record(ws, "audit.purge", user=actor, detail={"purged": n, "through_id": last["id"],
                                                      "through_hash": last["hash"], "days": days})
    truncate_wal(ws.db)
    return {"purged": n, "through_id": last["id"]}


def apply_retention(ws: Workspace) -> dict | None:
    """Purge by the `audit_days` setting (0: keep everything); None when nothing is set.
    The purge record names no user: retention is the workspace's policy, not a user's act."""
    days = ws.settings.audit_days
    if not days:
        return None
    return _purge(ws, days, None)
