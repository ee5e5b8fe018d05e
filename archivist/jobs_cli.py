"""CLI: archivist jobs [--json] | jobs show ID [--files] | jobs cancel ID | jobs resume ID.

The jobs themselves live in archivist/jobs.py; resuming one is the work of its stage (an ingestion
in `archivist.ingest.pipeline`, a fine-tuning run in `archivist.finetune.runs`), imported here, at
the edge, so the kernel imports no stage.
"""

from __future__ import annotations

import argparse
import sys
import time

from archivist.cli import CLIError, emit_json, list_or_json, open_ws


def register(sub, common) -> None:
    from archivist import jobs

    p = common(sub.add_parser("jobs", help="background ingestion and training jobs (yours; an admin's: everyone's)"))
    p.add_argument("--json", action="store_true")
    p.add_argument("--kind", choices=jobs.KINDS, default=None, help="only jobs of this kind")
    p.add_argument("--files", action="store_true", help="with --json, each ingestion's file lists too (its spec's and "
                                                        "result's `files`: left out by default, thousands of names a job)")
    p.set_defaults(func=cmd_jobs)
    actions = p.add_subparsers(dest="jobs_command", metavar="ACTION")
    s = common(actions.add_parser("show", help="one job whole: its state, counts, error (with server paths), and "
                                               "with --files each file of an ingestion with its status"))
    s.add_argument("job", metavar="ID")
    # An action's --json and --files are SUPPRESS: unset, `jobs --json --files show ID` keeps the ones
    # given before the action (a default of False overwrote them, and the answer came as text, or without files).
    s.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    s.add_argument("--files", action="store_true", default=argparse.SUPPRESS,
                   help="each file of an ingestion (--json: its spec's and result's `files`)")
    s.set_defaults(func=cmd_show)
    c = common(actions.add_parser("cancel", help="stop a queued or running job (a run saves a checkpoint first)"))
    c.add_argument("job", metavar="ID")
    c.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    c.set_defaults(func=cmd_cancel)
    r = common(actions.add_parser("resume", help="finish an interrupted, failed or cancelled job, as its owner "
                                                 "(an ingestion here and now; a training run in the background)"))
    r.add_argument("job", metavar="ID")
    r.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_resume)


def cmd_jobs(args) -> int:
    from archivist import jobs

    with open_ws(args, check_index=False) as ws:
        rows = jobs.list_jobs(ws, getattr(args, "user", None), kinds=(args.kind,) if args.kind else None,
                              files=args.files and args.json)
    if not list_or_json([j.as_dict() for j in rows], args.json, "no jobs"):
        return 0
    print(f"{'id':32} {'kind':9} {'owner':12} {'state':11} {'progress':>11}  {'age':>6}  message")
    for j in rows:
        done = f"{j.done}/{j.total}" if j.total is not None else (str(j.done) if j.done else "")
        print(f"{j.id:32} {j.kind:9} {j.owner:12} {j.state:11} {done:>11}  {_age(j.created_at):>6}  "
              f"{j.error or j.message or ''}".rstrip())
    return 0


def cmd_show(args) -> int:
    from archivist import job_files, jobs
    from archivist.ingest.folders import reread_note

    with open_ws(args, check_index=False) as ws:
        job = jobs.get(ws, args.job, getattr(args, "user", None), files=args.files)
    if args.json:
        emit_json(job.as_dict())
        return 0
    done = f"{job.done} of {job.total}" if job.total is not None else str(job.done)
    print(f"job {job.id}: {job.kind} by {job.owner}, {job.state} ({done}), created {_age(job.created_at)} ago"
          + (f", resumed {job.resumed} times" if job.resumed else ""))
    for label, value in (("message", job.message), ("error", job.error)):
        if value:
            print(f"{label}: {value}")
    if job.kind in job_files.LISTS:
        tally = job_files.counts(job)
        print("files: " + (", ".join(f"{n} {s}" for s, n in tally.items()) or "none")
              + ("" if args.files or not tally else f" (`archivist jobs show {job.id} --files` lists them)"))
        for f in job_files.statuses(job) if args.files else []:
            print(f"  {f['status']:10} {f['name']}" + (f"  {reread_note(f['reread'])}" if f["reread"] else "")
                  + (f"  {f['reason']}" if f["reason"] else ""))
    elif job.result:
        print(f"result: {job.result}")
    return 0


def cmd_cancel(args) -> int:
    from archivist import jobs

    with open_ws(args, check_index=False) as ws:
        job = jobs.cancel(ws, args.job, getattr(args, "user", None))
    if args.json:
        emit_json(job.as_dict())
    else:
        print(f"job {job.id}: {job.state}" + (" (asked to stop; it stops at its next file or step)" if job.live else ""))
    return 0


def cmd_resume(args) -> int:
    from archivist import jobs

    user = getattr(args, "user", None)
    with open_ws(args) as ws:
        job = jobs.get(ws, args.job, user)
        try:
            if job.kind == "train":
                from archivist.finetune import runs

                runs.resume_run(ws, job.id, user)
                print(f"resumed run {job.id} in the background; follow it with `archivist jobs`", file=sys.stderr)
                results = []
            elif job.kind == "erase":
                from archivist.ingest.erase import resume

                report = resume(ws, job.id, user)
                print(f"erased {report.document}: finished the interrupted erase", file=sys.stderr)
                results = []
            elif job.kind == "reembed":
                from archivist.finetune.embedders import resume_reembed

                resume_reembed(ws, job.id, user, progress=not (args.quiet or args.json))
                results = []
            elif job.kind == "retriever":
                from archivist.finetune.retriever import resume_job as resume_retriever

                resume_retriever(ws, job.id, user)
                print(f"started retriever job {job.id} over in the background; follow it with `archivist jobs`", file=sys.stderr)
                results = []
            else:
                from archivist.ingest.pipeline import resume_job

                results = resume_job(ws, job.id, user, progress=not (args.quiet or args.json))
        except jobs.JobError as e:
            raise CLIError(str(e)) from None
        job = jobs.get(ws, job.id, user)
    if args.json:
        from dataclasses import asdict

        emit_json({**job.as_dict(), "files": [asdict(r) for r in results]})
    elif results:
        from archivist.ingest.cli import print_summary

        print_summary(results)
    # a file that failed is exit 1, as from `archivist ingest` (and `ingest --resume`) finishing the same files
    failed = any(r.status in ("failed", "cancelled") for r in results)
    return 0 if job.state in ("done", "queued", "running") and not failed else 1


def _age(t: float) -> str:
    s = max(0, time.time() - t)
    return f"{s:.0f}s" if s < 120 else f"{s / 60:.0f}m" if s < 7200 else f"{s / 3600:.0f}h" if s < 172800 else f"{s / 86400:.0f}d"
