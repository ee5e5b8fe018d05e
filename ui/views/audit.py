"""Admins: the audit log (archivist/audit.py) with filters, its hash chain checked, and a CSV download."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from archivist import access, audit, audit_export, audit_retention
from archivist.ui import core

me = core.require_admin()
ws = core.workspace()
st.title("Audit")
ANY = "any"
LIMIT = 10_000  # newest records shown (and downloaded) at once; narrow the filters or use `archivist audit --csv`

audit_retention.apply_retention(ws)
users = [ANY] + [u["name"] for u in access.list_users(ws, by=me)]
left, mid, right, far = st.columns(4)
who = left.selectbox("User", users, key="audit-user", help="who acted")
kind = mid.selectbox("Action", [ANY] + sorted({k.split(".")[0] + "." for k in audit.KINDS if "." in k}) + list(audit.KINDS),
                     key="audit-action", help="a kind, or a family ending in '.'")
today = dt.date.today()
since = right.date_input("From", value=today - dt.timedelta(days=30), key="audit-since")
until = far.date_input("To", value=today, key="audit-until", help="inclusive")

rows = audit.read(ws, by=me, user=None if who == ANY else who, action=None if kind == ANY else kind,
                  since=since.isoformat(), until=(until + dt.timedelta(days=1)).isoformat(), limit=LIMIT)
seen = (who, kind, since.isoformat(), until.isoformat())
if st.session_state.get("_audit_read") != seen:  # each filter shown once per session is one read, not every rerun
    audit.was_read(ws, me, "app", {"user": None if who == ANY else who, "action": None if kind == ANY else kind,
                                   "since": since.isoformat(), "until": until.isoformat()}, len(rows), "table")
    st.session_state["_audit_read"] = seen
st.caption(f"{len(rows)} records" + (f" (the newest {LIMIT:,}: narrow the filters to see older ones)"
                                     if len(rows) == LIMIT else ""))
if rows:  # newest first on the page (recent activity on top); the CSV stays in the chain's order
    st.dataframe(core.plain_frame(pd.DataFrame([{"id": r["id"], "time (UTC)": r["time"], "user": r["user"] or "", "action": r["action"],
                                "target": r["target"] or "", "detail": audit_export.summary(r)} for r in reversed(rows)])),
                 hide_index=True, width="stretch")
st.download_button("Download CSV", audit_export.to_csv(rows), file_name="archivist-audit.csv", mime="text/csv",
                   key="audit-csv", icon=":material/download:")

if st.button("Verify the chain", key="audit-verify", icon=":material/verified:"):
    v = audit.verify(ws)
    if v.ok:
        st.success(f"The audit log is intact: {v.records} records"
                   + (f" ({v.redacted} redacted by an erasure)" if v.redacted else "") + f", head {v.head[:16]}…")
    else:
        st.error("The audit log was changed:\n\n" + "\n".join(f"- {core.md_escape(p)}" for p in v.problems))
