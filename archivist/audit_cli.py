"""`archivist audit`: read, verify and purge the audit log (admins only); see archivist/audit.py.

    archivist audit [--user NAME] [--since T] [--until T] [--action KIND] [--json | --csv]
    archivist audit verify [--json]            exit 1 when the chain is broken, naming where
    archivist audit purge [--days N]           retention (default: the audit_days setting)

`--user` here filters by who acted; act as someone with `archivist --user NAME audit ...` or ARCHIVIST_USER.
"""

from __future__ import annotations

import sys


def register(sub, common) -> None:
    p = common(sub.add_parser("audit", conflict_handler="resolve",
                              help="the audit log: who did what, and verify its hash chain (admins)"))
    p.add_argument("what", nargs="?", choices=["verify", "purge"], help="verify the chain, or purge old records")
    p.add_argument("--user", dest="who", help="only records of this user (who acted)")
    p.add_argument("--since", help="from this time: ISO 8601 (UTC unless it says), epoch seconds, or 7d / 12h / 30m ago")
    p.add_argument("--until", help="before this time (same forms)")
    p.add_argument("--action", help="one kind (question, access.grant, ...) or a prefix ending in '.' (document.)")
    p.add_argument("--limit", type=int, help="only the newest N records")
    p.add_argument("--days", type=float, help="purge: records older than this (default: the audit_days setting)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    p.set_defaults(func=cmd_audit)


def cmd_audit(args) -> int:
    from archivist import access, audit
    from archivist.cli import CLIError, emit_json, open_ws

    with open_ws(args, check_index=False) as ws:
        access.require_admin(ws, None, "read the audit log")
        if args.what == "verify":
            return _verify(ws, args.json)
        if args.what == "purge":
            days = args.days if args.days is not None else ws.settings.audit_days
            if not days:
                raise CLIError("no retention: pass --days N or set ARCHIVIST_AUDIT_DAYS")
            out = audit.purge(ws, days)
            print(f"purged {out['purged']} records" + (f" (through record {out['through_id']})" if out["through_id"] else ""),
                  file=sys.stderr)
            return 0
        audit.apply_retention(ws)
        try:
            rows = audit.read(ws, user=args.who, since=args.since, until=args.until, action=args.action, limit=args.limit)
        except audit.AuditError as e:
            raise CLIError(str(e)) from None
    if args.json:
        emit_json(rows)
    elif args.csv:
        sys.stdout.write(audit.to_csv(rows))
    elif not rows:
        print("no audit records match", file=sys.stderr)
    else:
        for r in rows:
            print(f"{r['id']:>6}  {r['time']}  {(r['user'] or '-'):12}  {r['action']:20}  {(r['target'] or '-')[:40]:40}  "
                  f"{audit.summary(r)}")
    return 0


def _verify(ws, as_json: bool) -> int:
    from archivist import audit
    from archivist.cli import emit_json

    v = audit.verify(ws)
    if as_json:
        emit_json({"ok": v.ok, "records": v.records, "head": v.head, "problems": v.problems})
    elif v.ok:
        print(f"audit log intact: {v.records} records, head {v.head}")
    else:
        print(f"audit log BROKEN ({v.records} records):")
        for p in v.problems:
            print(f"  {p}")
    return 0 if v.ok else 1
