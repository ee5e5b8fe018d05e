"""`archivist backup DEST`: a consistent copy of the workspace, taken while it serves.

Copying the folder with `cp -a` while a server or an ingest writes can tear archivist.db: SQLite in
WAL mode keeps recent commits in archivist.db-wal and moves them into archivist.db at checkpoints,
so a copy of the one taken before a checkpoint and of the other after it holds neither state. Here
the database is copied with SQLite's online backup API (one read transaction: the state of one
moment, while writers go on), then the files beside it. It is copied at the schema it has on disk,
not migrated: a backup taken with a newer release before upgrading opens with the release that
wrote it. Restoring is copying the folder back; the first open migrates it then, as any open does
(docs/reliability.md, "Backup and restore").
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from archivist.workspace import Workspace, WorkspaceError, connect

# The folders copied after the database, as they are. index/ is derived from SQLite (checked and
# repaired from it on every open), copied only to spare a rebuild; a file caught mid-replace is
# found and rebuilt then. embedders/ and rerankers/ (finetune.embedders.FOLDER, retrieval.rerank.FOLDER:
# named here, the kernel imports no stage) hold what `finetune --target` trained: the index's vectors
# were computed by the active adapted embedder, so a copy without it could not search them.
FOLDERS = ("uploads", "adapters", "embedders", "rerankers", "runs", "datasets", "index")
SKIP_SUFFIXES = (".lock", ".tmp")  # lock files and half-written temporary files are no state


@dataclass
class BackupReport:
    dest: Path
    documents: int = 0
    chunks: int = 0
    users: int = 0
    schema: int = 0  # the copy's schema version (PRAGMA user_version), the workspace's as it was on disk
    files: int = 0
    bytes: int = 0
    vanished: list[str] = field(default_factory=list)  # files removed while the copy ran (none is state the database needs)
    seconds: float = 0.0


def backup(ws: Workspace, dest: Path) -> BackupReport:
    """Copy the workspace `ws` to `dest`, a folder that must not exist yet (or be empty), outside
    the workspace. The database is copied first, as of one moment (SQLite online backup), and
    checked (`PRAGMA integrity_check`); then the folders in FOLDERS (uploads/, adapters/, embedders/, ...).
    The copy is built in a hidden folder beside `dest` and renamed into place, so `dest` exists
    only once whole. Returns what was copied. Raises WorkspaceError naming the cause (dest not
    empty or inside the workspace, the disk full, a copy that fails its check); nothing is left
    behind then."""
    t0 = time.monotonic()
    dest, home = destination(ws, dest), ws.home.resolve()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkspaceError(f"cannot back up into {dest}: {e.strerror}") from e
    part = dest.parent / f".{dest.name}.part-{os.getpid()}"
    shutil.rmtree(part, ignore_errors=True)
    report = BackupReport(dest=dest)
    try:
        part.mkdir(mode=0o700)  # private while it is built; then as open as the workspace folder
        _copy_database(home / "archivist.db", part / "archivist.db", report)
        for name in FOLDERS:
            _copy_tree(home / name, part / name, report)
        shutil.copymode(home, part)
        if dest.exists():
            dest.rmdir()  # empty, checked above
        os.replace(part, dest)
    except OSError as e:
        shutil.rmtree(part, ignore_errors=True)
        why = "the disk is full" if e.errno == 28 else (e.strerror or str(e))
        raise WorkspaceError(f"the backup to {dest} failed: {why}; nothing was left there, and the workspace is "
                             "untouched") from e
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    report.seconds = round(time.monotonic() - t0, 2)
    return report


def destination(ws: Workspace, dest: Path) -> Path:
    """`dest` as an absolute path, when a backup of `ws` may go there: outside the workspace (also
    through a symlink), and not yet there or an empty folder. Raises WorkspaceError naming why not."""
    dest = Path(dest).expanduser().absolute()
    home = ws.home.resolve()
    if dest.resolve() == home or home in dest.resolve().parents:
        raise WorkspaceError(f"cannot back up into {dest}: it is inside the workspace {home}")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise WorkspaceError(f"cannot back up into {dest}: it exists and is not an empty folder")
    return dest


def _copy_database(src: Path, dst: Path, report: BackupReport) -> None:
    """SQLite's online backup of `src` into `dst`, checked; counts what it holds into `report`."""
    source = connect(src)
    target = sqlite3.connect(dst)
    try:
        try:
            source.backup(target)  # all pages in one step: one read transaction, one moment
        except sqlite3.OperationalError as e:
            if "full" in str(e):
                raise OSError(28, "No space left on device") from e
            raise
        verdict = target.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            raise WorkspaceError(f"the copy of {src} failed SQLite's integrity check ({verdict}); the workspace's own "
                                 "database may be damaged: run `sqlite3 archivist.db 'PRAGMA integrity_check'` there")
        report.documents = target.execute("SELECT count(*) FROM documents").fetchone()[0]
        report.chunks = target.execute("SELECT count(*) FROM chunks").fetchone()[0]
        report.users = target.execute("SELECT count(*) FROM users").fetchone()[0]
        report.schema = target.execute("PRAGMA user_version").fetchone()[0]
    finally:
        target.close()
        source.close()
    shutil.copymode(src, dst)  # as readable as the original, no more
    report.files += 1
    report.bytes += dst.stat().st_size


def _copy_tree(src: Path, dst: Path, report: BackupReport) -> None:
    """Copy the folder `src` to `dst`, file by file, as it is now: a file that vanishes between the
    listing and its copy (a checkpoint replaced, a temporary file renamed) is noted, not an error."""
    dst.mkdir(parents=True, exist_ok=True)
    if not src.is_dir():
        return
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        dirs[:] = [d for d in dirs if not d.startswith(".part-")]
        for name in files:
            if name.endswith(SKIP_SUFFIXES) or name.startswith(".part-"):
                continue
            try:
                shutil.copy2(Path(root) / name, dst / rel / name, follow_symlinks=False)
            except FileNotFoundError:
                report.vanished.append(str(Path(src.name) / rel / name))
                continue
            report.files += 1
            report.bytes += (dst / rel / name).lstat().st_size


# -- CLI ---------------------------------------------------------------------------------------


def register(sub, common) -> None:
    from archivist.cli import command

    p = command(sub, common, "backup", cmd_backup,
                "a consistent copy of the workspace into a new folder, safe while it serves or ingests (admins)",
                json=True)
    p.add_argument("dest", metavar="DEST", help="a folder that does not exist yet (or is empty), outside the workspace")


def cmd_backup(args) -> int:
    from archivist import access, audit
    from archivist.cli import emit_json, open_ws, settings_from
    from archivist.retrieval.repair import open_checked
    from archivist.workspace import MIGRATIONS  # read when called: tests replace it there

    # upgrade=False: a workspace an older release wrote is copied at its schema, so that release opens the copy
    with open_ws(args, check_index=False, upgrade=False) as ws:
        actor = access.require_admin(ws, getattr(args, "user", None), "back up the workspace")  # a copy of every collection
        # recorded before the copy is taken (like an export: files outside the workspace share no
        # transaction with a record), so the backup holds its own record; a destination refused is
        # refused first, and a copy that fails says so, so the log never tells of a copy not taken
        dest = destination(ws, Path(args.dest))
        unrecorded = _record(ws, actor, dest)
        try:
            report = backup(ws, dest)
        except BaseException as e:  # a Ctrl-C or any error too: backup() removed what it had copied
            why = str(e) if isinstance(e, WorkspaceError) else (
                f"{'interrupted' if isinstance(e, (KeyboardInterrupt, SystemExit)) else 'failed'} "
                f"({type(e).__name__}{': ' + str(e) if str(e) else ''}): nothing was left there, and the workspace is untouched")
            if unrecorded is None:
                audit.record(ws, "workspace.backup.failed", user=actor, target=str(dest), detail={"reason": why})
            raise
    if unrecorded is not None:
        print(f"archivist: note: this backup is not on the workspace's audit log: {unrecorded}", file=sys.stderr)
    current = report.schema == len(MIGRATIONS)
    if current:  # the copy opens as a workspace: its derived files are checked against its database and repaired
        with open_checked(dataclasses.replace(settings_from(args), home=report.dest)):
            pass
    if args.json:
        emit_json({k: (str(v) if isinstance(v, Path) else v) for k, v in report.__dict__.items()})
        return 0
    print(f"backed up {report.documents} documents ({report.chunks} chunks), {report.users} users and {report.files} files "
          f"({report.bytes / 2**20:.1f} MB) at schema {report.schema} to {report.dest} in {report.seconds:.1f} s",
          file=sys.stderr)
    if not current:  # an opening would migrate it: its search files are checked on the first open after a restore
        print(f"archivist: note: the backup keeps the workspace's schema {report.schema} (this archivist has "
              f"{len(MIGRATIONS)}): the release that wrote it opens it as it is, and this one migrates it on the first "
              "open after a restore", file=sys.stderr)
    if report.vanished:
        print(f"archivist: note: {len(report.vanished)} file(s) were removed while copying and are not in the backup: "
              + ", ".join(report.vanished[:5]), file=sys.stderr)
    print(report.dest)
    return 0


def _record(ws: Workspace, actor: str, dest: Path) -> str | None:
    """Write the `workspace.backup` record; returns None, or why it could not be: a workspace older
    than the audit log this release writes (salted records, schema 12), which a backup copies
    unmigrated, cannot take one, and the copy is taken all the same."""
    from archivist import audit
    from archivist.workspace import MIGRATIONS, schema_version

    try:
        audit.record(ws, "workspace.backup", user=actor, target=str(dest))
    except sqlite3.OperationalError as e:
        if (version := schema_version(ws.db)) == len(MIGRATIONS):
            raise
        return f"its schema {version} predates the records this archivist ({len(MIGRATIONS)}) writes ({e})"
    return None
