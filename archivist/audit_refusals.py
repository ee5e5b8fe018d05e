"""Refusals on the audit log, counted rather than written one by one.

A member's script that keeps asking for what she may not read is refused each time, and each
refusal was an `access.denied` record: 300 refused requests in 3 s were 300 records, growing
archivist.db and the chain without limit and pushing her earlier records out of the newest
records an admin reads. As `key.rejected` (once per key and day) and a failed sign-in's wait do,
a refusal repeated within WINDOW seconds of the first is counted, not written:

- the first refusal of a (user, attempt, detail) writes its record, as before, and opens a window,
  kept in audit_state as `denied:<that record's id>` = {"repeats", "last"};
- a same refusal within the window adds one to `repeats` (an UPDATE: the log does not grow);
- when the window has ended (met by the next refusal of anyone), the log is read (`audit.read`) or
  a person is erased (user_erase, so that no record after it names her), a window that counted any
  writes one summary record: the first record's user, target and detail,
  with {"repeats": how many more, "first": the first record's id, "last": when the last one came}.

Every record goes through `audit.record`, so the chain is as it always was; a window in
audit_state is not part of it (a count not yet written is not yet on the log)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from archivist import audit
from archivist.workspace import Workspace, transaction

WINDOW = 60.0  # seconds after a refusal in which the same refusal is counted, not written
_PREFIX = "denied:"


def refused(ws: Workspace, user: str | None, target: str, detail: dict) -> int:
    """Record the refusal `detail` of `user` trying `target` (what `audit.denied` built): the id of its
    record, or of the record of the same refusal whose window counts this one."""
    now = time.time()
    with transaction(ws.db):
        close(ws, before=now - WINDOW)
        same = [w for w in _windows(ws) if (w[4], w[5], json.loads(w[6])) == (user, target, detail)]
        if same:
            key, value, rid = same[0][:3]
            ws.db.execute("UPDATE audit_state SET value = ? WHERE key = ?",
                          (json.dumps({"repeats": json.loads(value)["repeats"] + 1, "last": now}), key))
            return rid
        rid = audit.record(ws, "access.denied", user=user, target=target, detail=detail)
        ws.db.execute("INSERT INTO audit_state(key, value) VALUES (?, ?)",
                      (f"{_PREFIX}{rid}", json.dumps({"repeats": 0, "last": now})))
        return rid


def close(ws: Workspace, before: float | None = None) -> int:
    """End the windows opened before `before` (None: all of them, as a read of the log does, so that
    it shows every refusal counted so far), writing the summary record of each that counted any.
    Returns how many summary records it wrote."""
    if not _windows(ws, before):  # the common case, and a read of a workspace it may not write to: no transaction
        return 0
    written = 0
    with transaction(ws.db):  # read again inside it: another process may have closed them meanwhile
        for key, value, rid, _, user, target, detail in _windows(ws, before):
            count = json.loads(value)
            if rid is not None and count["repeats"]:  # (a first record purged since: nothing to name)
                last = datetime.fromtimestamp(count["last"], timezone.utc).isoformat(timespec="seconds")
                audit.record(ws, "access.denied", user=user, target=target,
                             detail={**json.loads(detail), "repeats": count["repeats"], "first": rid, "last": last})
                written += 1
            ws.db.execute("DELETE FROM audit_state WHERE key = ?", (key,))
    return written


def _windows(ws: Workspace, before: float | None = None) -> list:
    """The open windows [(key, value, first id, its ts, user, target, detail)], those opened before
    `before` when given; a window whose first record was purged since has None for those."""
    rows = ws.db.execute(
        "SELECT s.key, s.value, a.id, a.ts, a.user, a.target, a.detail FROM audit_state s "
        "LEFT JOIN audit a ON a.id = CAST(substr(s.key, ?) AS INTEGER) WHERE s.key LIKE ? ORDER BY a.id",
        (len(_PREFIX) + 1, _PREFIX + "%")).fetchall()
    return [r for r in rows if before is None or r[3] is None or r[3] < before]
