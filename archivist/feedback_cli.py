"""CLI: archivist feedback review [--approve ID | --reject ID] [--expect DIGEST] [--json].

An admin's review of members' corrections before a fine-tune may learn them (archivist/feedback.py
`review_correction`, `pending_corrections`): the list shows each correction awaiting one with the
question and the answer it corrects, and its digest (`correction_digest`): `--expect DIGEST` decides only
if the correction still reads as listed, since its author may change it between the listing and the decision.
"""

from __future__ import annotations

import argparse

from archivist.cli import CLIError, emit_json, list_or_json, open_ws


def register(sub, common) -> None:
    p = common(sub.add_parser("feedback", help="the chat's feedback: review members' corrections (an admin's)"))
    actions = p.add_subparsers(dest="feedback_command", metavar="ACTION", required=True)
    r = common(actions.add_parser("review", help="list the corrections awaiting an admin's review, or approve or "
                                                 "reject one: only an approved correction is training data"))
    decide = r.add_mutually_exclusive_group()
    decide.add_argument("--approve", type=int, metavar="ID", help="a fine-tune may learn this correction")
    decide.add_argument("--reject", type=int, metavar="ID", help="no fine-tune learns this correction")
    r.add_argument("--expect", metavar="DIGEST", help="with --approve or --reject: the digest the listing printed; "
                                                     "refused if the member changed the correction since")
    r.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    r.set_defaults(func=cmd_review)


def cmd_review(args) -> int:
    from archivist import access, audit, feedback

    user = getattr(args, "user", None)
    with open_ws(args, check_index=False) as ws:
        if args.approve is not None or args.reject is not None:
            fid = args.approve if args.approve is not None else args.reject
            review = "approved" if args.approve is not None else "rejected"
            feedback.review_correction(ws, user, fid, approve=args.approve is not None, expect=args.expect)
            if getattr(args, "json", False):
                emit_json({"id": fid, "review": review})
            else:
                print(f"feedback {fid}: correction {review}")
            return 0
        if args.expect is not None:
            raise CLIError("--expect DIGEST goes with --approve ID or --reject ID")
        rows = [{**f, "digest": feedback.correction_digest(f["correction"])} for f in feedback.pending_corrections(ws, user)]
        audit.others_read(ws, access.current_user(ws, user), "cli", "feedback", [(f["id"], f["user"]) for f in rows])
    if not list_or_json(rows, getattr(args, "json", False), "no corrections awaiting review"):
        return 0
    for f in rows:
        print(f"[{f['id']}] by {f['user']}" + (f" in {f['collection']}" if f.get("collection") else ""))
        print(f"  question:   {f['question']}\n  answer:     {f['answer']}\n  correction: {f['correction']}")
        print(f"  digest:     {f['digest']} (archivist feedback review --approve {f['id']} --expect {f['digest']})")
    return 0
