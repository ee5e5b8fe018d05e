"""CLI: archivist ingest | documents | delete | reindex."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict

from archivist.cli import CLIError, check_collections, collection_arg, emit_json, list_or_json, open_ws
from archivist.ingest.folders import plural


def register(sub, common) -> None:
    p = common(sub.add_parser("ingest", help="ingest files or folders into a collection"))
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument("--collection", "-c", type=collection_arg, default=None, help="collection (default: 'default' or ARCHIVIST_COLLECTION)")
    p.add_argument("--json", action="store_true", help="per-file results as JSON on stdout")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--ocr", choices=("auto", "always", "never"), default=None,
                   help="OCR scans and images: auto (pages without a text layer, image files; the default), "
                        "always (every PDF page), never")
    p.add_argument("--follow-symlinks", action="store_true",
                   help="also ingest files a folder's symlinks point to outside that folder (refused by default)")
    p.add_argument("--prune", action="store_true",
                   help="also delete the documents read from these folders before whose files are no longer "
                        "there (deleted, renamed or moved away); without it they are listed as missing")
    p.add_argument("--resume", action="store_true",
                   help="finish ingest jobs a crash or restart cut short (yours; an admin's: everyone's); "
                        "see also `archivist jobs`")
    p.add_argument("--ray", nargs="?", const=LOCAL_RAY, default=None, metavar="ADDRESS",
                   help="read, chunk and embed on a Ray cluster (`pip install 'archivist[ray]'`): at ADDRESS "
                        "(auto, ray://HOST:10001, HOST:6379), or a local one started for it; this process "
                        "still writes the workspace (docs/serving.md, \"Ingestion on Ray\")")
    p.set_defaults(func=cmd_ingest)

    p = common(sub.add_parser("documents", help="list documents you may read"))
    p.add_argument("--collection", "-c", type=collection_arg, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_documents)

    p = common(sub.add_parser("delete", help="remove a document from SQLite, FTS5 and FAISS"))
    p.add_argument("document", metavar="DOC", help="document id or name")
    p.add_argument("--collection", "-c", type=collection_arg, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_delete)

    p = common(sub.add_parser("reindex", help="rebuild the FAISS indexes from SQLite"))
    p.add_argument("--reembed", action="store_true", help="embed every chunk again (after changing the embedder)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_reindex)


LOCAL_RAY = "local"  # `--ray` without an address: start a local Ray cluster


def ray_address(value: str | None, paths: list[str]) -> str | None:
    """The Ray address `--ray` was given (None: a local cluster). `archivist ingest --ray docs/` puts
    the folder into --ray's optional value: a value that is no address but an existing path goes
    back to `paths`."""
    if value is None or value == LOCAL_RAY:
        return None
    looks_like_address = value == "auto" or "://" in value or value.rsplit(":", 1)[-1].isdigit()
    if not looks_like_address and os.path.exists(value):
        paths.insert(0, value)
        return None
    return value


def cmd_ingest(args) -> int:
    from archivist.ingest.pipeline import ingest_paths, interrupted_jobs, resume_interrupted

    on_ray = args.ray is not None
    address = ray_address(args.ray, args.paths)
    if not args.paths and not args.resume:
        raise CLIError("give files or folders to ingest, or --resume")
    if args.prune and on_ray:
        raise CLIError("--prune is not available with --ray: prune with a plain `archivist ingest --prune` of the same folders")
    missing = [p for p in args.paths if not os.path.exists(p)]
    for path in missing:
        print(f"archivist: warning: {path}: no such file or folder", file=sys.stderr)
    user = getattr(args, "user", None)
    results = []
    with open_ws(args) as ws:
        if args.resume and on_ray:
            from archivist.ingest.ray_ingest import resume_on_ray

            resumed = _on_ray(resume_on_ray, ws, user, address, progress=not (args.quiet or args.json))
            print(f"resumed {len(resumed)} interrupted ingest {plural(len(resumed), 'job')} on Ray", file=sys.stderr)
            results = [r for _, rs in resumed for r in rs]
        elif args.resume:
            resumed = resume_interrupted(ws, user, progress=not (args.quiet or args.json))
            print(f"resumed {len(resumed)} interrupted ingest {plural(len(resumed), 'job')}", file=sys.stderr)
            results = [r for _, rs in resumed for r in rs]
        elif cut := interrupted_jobs(ws, user):
            print(f"archivist: note: {len(cut)} ingest {plural(len(cut), 'job')} {'was' if len(cut) == 1 else 'were'} cut short "
                  f"({plural(len(cut), 'job')} {', '.join(j.id for j in cut)}); "
                  "`archivist ingest --resume` finishes them", file=sys.stderr)
        if args.paths and on_ray:
            from archivist.ingest.ray_ingest import ingest_on_ray

            results += _on_ray(ingest_on_ray, ws, args.paths, address, collection=args.collection, user=user,
                               progress=not (args.quiet or args.json), follow_symlinks=args.follow_symlinks)
        elif args.paths:
            results += ingest_paths(ws, args.paths, collection=args.collection, user=user,
                                    progress=not (args.quiet or args.json), follow_symlinks=args.follow_symlinks,
                                    prune=args.prune)
    if args.json:
        emit_json({"files": [asdict(r) for r in results], "missing": missing})
    else:
        print_summary(results)
    failed = any(r.status in ("failed", "cancelled") for r in results) or bool(missing)
    return 1 if failed else 0


def _on_ray(fn, *args, **kwargs):
    """`fn` (ingest_on_ray, resume_on_ray), with Ray's absence or an unreachable cluster a CLIError."""
    from archivist.ingest.ray_ingest import RayUnavailable

    try:
        return fn(*args, **kwargs)
    except RayUnavailable as e:
        raise CLIError(str(e)) from None


def print_summary(results) -> None:
    from archivist.ingest.folders import reread_note, rereads

    width = min(60, max([len(r.name) for r in results] + [4]))
    for r in results:
        line = f"{r.status:9} {r.name:{width}} {r.chunks:5} {plural(r.chunks, 'chunk'):6} {r.seconds:6.2f}s"
        if r.reread:
            line += f"  {reread_note(r.reread)}"
        if r.reason:
            line += f"  {r.reason}"
        print(line)
    counts = {s: sum(r.status == s for r in results)
              for s in ("added", "updated", "unchanged", "failed", "cancelled", "missing", "removed")}
    for s in ("cancelled", "missing", "removed"):  # named only when there are some
        if not counts[s]:
            del counts[s]
    files = sum(r.status not in ("missing", "removed") for r in results)  # those are documents, not files read
    reread = sum(bool(r.reread) for r in results)
    written = sum(r.chunks for r in results if r.status in ("added", "updated"))
    print(f"{files} {plural(files, 'file')}: " + ", ".join(f"{n} {s}" + rereads(reread, s)
                                                           for s, n in counts.items())
          + f"; {written} {plural(written, 'chunk')} written, {sum(r.embedded for r in results)} embedded")


def cmd_documents(args) -> int:
    from archivist.ingest.pipeline import list_documents

    with open_ws(args) as ws:
        check_collections(ws, getattr(args, "user", None), [args.collection] if args.collection else None)
        docs = list_documents(ws, getattr(args, "user", None), args.collection)
    if not list_or_json(docs, args.json, "no documents"):
        return 0
    import datetime as dt

    def when(ts) -> str:  # local time, as the app's documents table shows it
        return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else ""

    width = min(50, max(len(d["name"]) for d in docs))
    # updated: when the version stored now was read (a changed file replaces the document in place)
    print(f"{'id':>5}  {'name':{width}}  {'collection':12} {'kind':8} {'pages':>5} {'chunks':>6}  {'updated':16}  ocr")
    for d in docs:
        low = d.get("low_confidence_pages") or []
        ocr = (f"{len(d['ocr_pages'])} {plural(len(d['ocr_pages']), 'page')}" if d.get("ocr_pages") else "") + (
            f"; LOW CONFIDENCE on page {', '.join(map(str, low))}" if low else "")
        print(f"{d['id']:>5}  {d['name']:{width}}  {d['collection']:12} {d['kind']:8} {d['pages'] or '':>5} {d['chunks']:>6}  "
              f"{when(d.get('updated_at') or d.get('added_at')):16}  {ocr}".rstrip())
    return 0


def cmd_delete(args) -> int:
    from archivist.ingest.pipeline import delete_document

    with open_ws(args) as ws:
        try:
            doc = delete_document(ws, args.document, getattr(args, "user", None), args.collection)
        except LookupError as e:
            raise CLIError(str(e)) from None
    if args.json:
        emit_json({"deleted": doc})
    else:
        print(f"deleted {doc['name']} ({doc['chunks']} {plural(doc['chunks'], 'chunk')}) from {doc['collection']}")
    return 0


def cmd_reindex(args) -> int:
    from archivist.ingest.pipeline import reindex

    from archivist.access import require_admin

    with open_ws(args, check_index=False) as ws:
        actor = require_admin(ws, getattr(args, "user", None), "reindex the workspace")  # it rebuilds every collection
        totals = reindex(ws, reembed=args.reembed, progress=not (args.quiet or args.json))
        from archivist import audit  # files, not rows: recorded once they are rebuilt

        audit.record(ws, "index.rebuilt", user=actor, detail={"reembed": bool(args.reembed), "vectors": totals})
    if args.json:
        emit_json(totals)
    else:
        for name, n in totals.items():
            print(f"{name}: {n} {plural(n, 'vector')}")
    return 0
