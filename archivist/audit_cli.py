"""`archivist audit`: read, verify and purge the audit log (admins only); see archivist/audit.py.

    archivist audit [--user NAME] [--since T] [--until T] [--action KIND] [--json | --csv]
    archivist audit verify [--json]            exit 1 when the chain is broken, naming where
    archivist audit purge [--days N]           retention (default: the audit_days setting)
    archivist erase DOCUMENT [--keep-ratings]  delete a document and every copy of its text (ingest/erase.py)

`--user` here filters by who acted; act as someone with `archivist --user NAME audit ...` or ARCHIVIST_USER.
"""

from __future__ import annotations

import sys


def register(sub, common) -> None:
    from archivist.cli import collection_arg

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

    p = common(sub.add_parser("erase", help="delete a document and every copy of its text; mark adapters that learned it stale"))
    p.add_argument("document", metavar="DOCUMENT", help="its id or name (see `archivist documents`)")
    p.add_argument("--collection", "-c", type=collection_arg, help="the collection, when the name is in several")
    p.add_argument("--keep-ratings", action="store_true",
                   help="keep feedback that cites it as a bare rating (its text erased) instead of deleting it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_erase)


def cmd_audit(args) -> int:
    from archivist import access, audit, audit_export, audit_retention
    from archivist.cli import CLIError, emit_json, open_ws

    if args.limit is not None and args.limit < 1:  # 0 or -1 printed the whole log, with exit 0
        raise CLIError(f"--limit must be 1 or more, got {args.limit}")
    with open_ws(args, check_index=False) as ws:
        actor = access.require_admin(ws, None, "read the audit log")
        if args.what == "verify":
            return _verify(ws, args.json)
        if args.what == "purge":
            days = args.days if args.days is not None else ws.settings.audit_days
            if args.days == 0:  # was "no retention: pass --days N", to someone who had passed it
                raise CLIError("--days 0 keeps every record (as audit_days 0 does): pass the days of records to keep, above 0")
            if not days:
                raise CLIError("no retention: pass --days N or set ARCHIVIST_AUDIT_DAYS")
            out = audit_retention.purge(ws, days)
            if args.json:  # --json printed nothing at all here: a script's `| jq` read an empty stdout
                emit_json({"days": days, **out})
                return 0
            print(f"purged {out['purged']} records" + (f" (through record {out['through_id']})" if out["through_id"] else ""),
                  file=sys.stderr)
            return 0
        audit_retention.apply_retention(ws)
        try:
            rows = audit.read(ws, user=args.who, since=args.since, until=args.until, action=args.action, limit=args.limit)
        except audit.AuditError as e:
            raise CLIError(str(e)) from None
        audit.was_read(ws, actor, "cli", {"user": args.who, "since": args.since, "until": args.until,
                                          "action": args.action, "limit": args.limit},
                       len(rows), "json" if args.json else "csv" if args.csv else "table")
    if args.json:
        emit_json(rows)
    elif args.csv:
        sys.stdout.write(audit_export.to_csv(rows))
    elif not rows:
        print("no audit records match", file=sys.stderr)
    else:
        for r in rows:  # printable: a typed name or question holding escape sequences must not redraw the screen
            print(audit_export.printable(f"{r['id']:>6}  {r['time']}  {(r['user'] or '-'):12}  {r['action']:20}  "
                                  f"{(r['target'] or '-')[:40]:40}  {audit_export.summary(r)}"))
    return 0


def cmd_erase(args) -> int:
    from dataclasses import asdict

    from archivist import access
    from archivist.cli import emit_json, open_ws
    from archivist.ingest.erase import erase

    with open_ws(args) as ws:
        r = erase(ws, args.document, getattr(args, "user", None), args.collection, keep_ratings=args.keep_ratings)
        member = not access.is_admin(ws, access.current_user(ws, getattr(args, "user", None)))
    if args.json:
        emit_json(asdict(r))
        return 0 if not r.leftovers else 1
    print(f"erased {r.document} ({r.collection}, id {r.document_id}):")
    print(f"  {r.chunks} chunks with their vectors, lexical postings and full-text rows")
    print(f"  feedback: {r.feedback_deleted} deleted, {r.feedback_anonymized} kept as bare ratings; "
          f"{r.messages} chat messages blanked")
    print("  dataset examples: " + (", ".join(f"{n} from {d}" for d, n in r.dataset_examples.items()) or "none"))
    # a member's report names her upload whether it was removed or kept for a document she cannot
    # see (ingest/erase.py): "removed" would be untrue of the kept one, and the JSON says no more
    upload = f"upload no longer this document's: {r.upload}" if member and r.upload else f"upload removed: {r.upload or 'none'}"
    earlier = "no longer this document's" if member else "removed"  # likewise: erase.py counts kept ones for her
    print(f"  evaluations redacted: {r.evaluations}; {upload}"
          + (f"; uploads of earlier versions {earlier}: {r.earlier_uploads}" if r.earlier_uploads else ""))
    if r.adapters:
        print(f"  adapters that learned from it, now STALE (their weights still hold what they learned): "
              f"{', '.join(r.adapters)}")
        print("  retrain with: " + "; ".join(f"archivist finetune --retrain {a}" for a in r.adapters))
    else:
        print("  no adapter learned from it")
    if r.embedders:
        print(f"  adapted embedders that learned from it, now STALE: {', '.join(r.embedders)} "
              f"(switch back with `archivist finetune --target retriever --resume base`, or adapt again)")
    if r.resumed:
        print("  (finished an erase that was cut short after the document was deleted; the check for "
              "leftover copies needs its text and ran only if the first pass got that far)")
    if not r.wal_truncated:
        print("  note: another process was reading; the write-ahead log is emptied at its next checkpoint")
    if not r.leftovers_checked and not r.resumed:  # a rerun says why above
        print("  its text was looked for in your own chats, feedback, evaluations and datasets; an admin's "
              "erase looks in everyone's and checks every file of the workspace")
    if r.held_elsewhere:
        print("  some of its sentences are also in other documents, which erase leaves alone: " + ", ".join(r.held_elsewhere))
    if r.leftovers:
        print("  WARNING: its text is still found in: " + ", ".join(r.leftovers))
        if r.in_audit_log:
            print("  (archivist.db: the audit log quotes it, in a question or search as it was asked; the log is "
                  "append-only and hash-chained, so erase cannot remove it: docs/governance.md)")
        return 1
    return 0


def _verify(ws, as_json: bool) -> int:
    from archivist import audit
    from archivist.cli import emit_json

    v = audit.verify(ws)
    if as_json:
        emit_json({"ok": v.ok, "records": v.records, "redacted": v.redacted, "head": v.head, "problems": v.problems})
    elif v.ok:
        print(f"audit log intact: {v.records} records" + (f" ({v.redacted} redacted by an erasure)" if v.redacted else "")
              + f", head {v.head}")
    else:
        print(f"audit log BROKEN ({v.records} records):")
        for p in v.problems:
            print(f"  {p}")
    return 0 if v.ok else 1
