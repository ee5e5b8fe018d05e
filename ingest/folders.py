"""Which files a folder holds, under which names, and which of its documents are gone from it.

`expand` turns the paths given to `archivist ingest` (files and folders) into the files to ingest,
each with the name it is stored under, and the entries it refuses (a symlink out of a folder, a
folder it cannot list); `missing_from` finds a collection's documents read from a folder whose
files are no longer there (`archivist ingest --prune`). `FileResult` is what an ingest says of one
file, here because a refused entry is one too; `job_summary` and `counts_line`, what a job says of
all of them.
"""

from __future__ import annotations

import fnmatch
import os
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from archivist.workspace import Workspace


@dataclass
class FileResult:
    name: str
    status: str  # added | updated | unchanged | failed
    chunks: int = 0
    seconds: float = 0.0
    reason: str | None = None
    document_id: int | None = None
    embedded: int = 0  # chunks actually embedded (the rest reused a stored vector)
    # an "updated" file whose bytes had not changed, read again because its reader is newer ("html reader 6 -> 7"):
    # tells an admin after an upgrade that nobody changed their files
    reread: str | None = None


def clean_name(name: str) -> str:
    """A document name safe to store and show: no control characters, no absolute or parent parts; a
    byte that is not UTF-8 (a Latin-1 "caf\\xe9.md") shown as U+FFFD ("caf\ufffd.md"), not dropped."""
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    name = unicodedata.normalize("NFC", name).replace("\\", "/")
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    parts = [p for p in name.split("/") if p not in ("", ".", "..")]
    return "/".join(parts)[:400] or "unnamed"


def expand(paths: Iterable[str | os.PathLike], follow_symlinks: bool = False,
           stored: Callable[[str], str | None] | None = None) -> tuple[list[tuple[Path, str]], list[FileResult]]:
    """Files to ingest with the name each is stored under, and the entries refused.

    A file is named by its own name, a folder's files by their path below the folder's parent
    (hidden files and folders skipped, and what a folder's IGNORE_FILE names, and so are the web assets an exported manual holds beside
    its pages: stylesheets, scripts, fonts and vector icons, WEB_ASSETS, and images under ICON_PX
    on both sides; Sphinx's searchindex.js alone would add thousands of chunks of word lists, and
    each navigation arrow would fail OCR and the whole ingest with it). A symlink inside a folder
    whose target lies outside that folder is refused (a FileResult "failed" naming it and the
    reason): whoever may write into a folder that gets ingested must not pull in any file the
    process can read. `follow_symlinks` ingests them anyway. Symlinks that stay inside the folder are fine: a file link is ingested
    under its own name; a folder link is not descended, since its target is ingested under its
    real path (with `follow_symlinks`, every folder link is descended once, loops cut).
    A path given directly (not found in a folder) is the user's own choice and is always followed.
    Two different files that come out under one name (`one_per_name`) are not both ingested: the
    first keeps the name, the other is refused with the reason, unless `stored` (`read_from`) says
    the other is the file the stored document was read from.
    """
    files: list[tuple[Path, str]] = []
    refused: list[FileResult] = []
    for p in map(Path, paths):
        if p.is_dir():
            _walk_folder(p, follow_symlinks, files, refused)
        else:
            files.append((p, clean_name(p.name)))
    return one_per_name(files, refused, stored)


def one_per_name(files: list[tuple[Path, str]], refused: list[FileResult],
                 stored: Callable[[str], str | None] | None = None) -> tuple[list[tuple[Path, str]], list[FileResult]]:
    """`files` with one file per stored name: a name is a document's identity, so a second, different
    file under a name already taken (`clean_name` stores names NFC, without control characters: a
    folder holding `café.md` written both composed and decomposed, as macOS and Linux tools each
    write it; or `a/notes.md` and `b/notes.md` given on the command line) would replace the first
    within the same ingest, and both would be read again, each replacing the other, on every later
    one. It is refused instead (a failed FileResult appended to `refused`, naming both files);
    the same file reached twice is listed once. A file whose name is not UTF-8 is refused too: its
    path cannot be stored (it failed the whole ingest), and its name would not match it again.
    Of two files under one name, the first keeps it unless `stored(name)` (the file the document
    stored under it was read from, `read_from`) is the other: a twin added beside a stored file
    (`cafe\u0301.md` sorts before `caf\u00e9.md`) must not make the stored one "not ingested" and
    keep it from being updated; the twin alone is refused."""
    first: dict[str, Path] = {}  # name -> the file that keeps it, in the order the names came
    for path, name in files:
        written = os.fsencode(path).decode("utf-8", "backslashreplace")
        if written != str(path):  # bytes that are not UTF-8 reach Python as lone surrogates
            refused.append(FileResult(name, "failed", reason=(
                f"{written}: its name is not UTF-8 text (an older system's encoding), so it cannot be stored, shown "
                "or found again; not ingested (rename it, for example with convmv -f latin1 -t utf8)")))
            continue
        if name not in first:
            first[name] = path
        elif os.path.realpath(path) != os.path.realpath(first[name]):
            other = first[name]
            if stored is not None and stored(name) == os.path.realpath(path):  # the stored file keeps its name
                first[name], path, other = path, other, path
            why = ("their names differ only in how accented letters are encoded (composed and decomposed: NFC and NFD; "
                   f"this one is {ascii(path.name)}, the one kept {ascii(other.name)})"  # they print alike
                   if unicodedata.normalize("NFC", str(path)) == unicodedata.normalize("NFC", str(other)) else
                   ("a file given by path is named by its file name, a folder's files by their path below the folder's "
                    "parent") if path.name == other.name else
                   "their names are one once made fit to store (control characters dropped, cut to 400 characters)")
            refused.append(FileResult(name, "failed", reason=(
                f"{path} would be stored under the same name as {other}, and replace it: {why}; "
                "not ingested (rename one of them)")))
    return [(path, name) for name, path in first.items()], refused


def read_from(ws: Workspace, collection: str) -> Callable[[str], str | None]:
    """For `expand`: the file (its resolved path) the document stored under a name in `collection`
    was read from, None when there is no such document. Asked only of names two files share."""
    cid = ws.collection_id(collection)

    def source(name: str) -> str | None:
        row = ws.db.execute("SELECT source FROM documents WHERE collection_id = ? AND path = ?", (cid, name)).fetchone()
        return row[0] if row else None
    return source


WEB_ASSETS = frozenset({".css", ".js", ".mjs", ".map", ".woff", ".woff2", ".ttf", ".otf", ".eot", ".svg", ".ico"})
ICON_PX = 64  # an image in a folder smaller than this on both sides is an icon (a manual's "next" arrow)
# the image files ocr.image_frames reads, by their usual names (only these are opened to be measured;
# the Documents page lists them as the images it accepts)
IMAGE_SUFFIXES = frozenset({".png", ".gif", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"})


def _is_icon(path: Path) -> bool:
    """An image too small to hold a line of text, read from its header; any doubt (not an image,
    unreadable) leaves it to the readers, which report what is wrong."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return False
    from PIL import Image

    try:
        with Image.open(path) as image:  # the header only: no pixel is decoded
            return max(image.size) < ICON_PX
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):  # as ocr.image_frames
        return False  # the reader names the file and the reason


IGNORE_FILE = ".archivistignore"


@dataclass(frozen=True)
class _Ignore:
    """One pattern of a folder's IGNORE_FILE: `base` is that folder. A pattern without a slash is
    matched against the names of the files and folders below it, at any depth (`*.jsonl`,
    `drafts`); one with a slash before its end against their path relative to it (`old/2019-*`,
    `/README.md`: that folder's own README only); a trailing slash matches folders only. fnmatch
    syntax, case-sensitive."""
    base: Path
    pattern: str
    anchored: bool
    folders_only: bool

    def matches(self, entry: Path, is_dir: bool) -> bool:
        if self.folders_only and not is_dir:
            return False
        if self.anchored:
            return fnmatch.fnmatchcase(entry.relative_to(self.base).as_posix(), self.pattern)
        return fnmatch.fnmatchcase(entry.name, self.pattern)


def _ignore_patterns(d: Path) -> list[_Ignore]:
    """The patterns of `d`'s IGNORE_FILE, if it has one (lines; blank ones and `#` comments skipped)."""
    try:
        lines = (d / IGNORE_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    patterns = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            pattern = line.rstrip("/")
            if pattern.strip("/"):
                patterns.append(_Ignore(d, pattern.lstrip("/"), "/" in pattern, line.endswith("/")))
    return patterns


def _walk_folder(folder: Path, follow_symlinks: bool, files: list, refused: list) -> None:
    """Append the files below `folder` to `files` in sorted order, refused symlinks to `refused`.
    A folder's IGNORE_FILE leaves out what its patterns match, in it and below it."""
    root = folder.resolve()
    seen = {root}  # real folders already walked: a folder link back up would loop forever

    def inside(target: Path) -> bool:
        return target == root or root in target.parents

    def listing(d: Path, ignored: list[_Ignore], real: Path):
        """(d's entries in order, the ignore patterns in force there, d's real path), or None when d
        cannot be listed."""
        try:
            entries = sorted(d.iterdir())
        except OSError as e:
            refused.append(FileResult(clean_name(d.relative_to(folder.parent).as_posix()), "failed",
                                      reason=f"cannot list folder: {e.strerror or e}"))
            return None
        return iter(entries), ignored + _ignore_patterns(d), real

    # depth first with a stack of the folders being listed, not recursion: a tree nested deeper than
    # Python's recursion limit (about 1,000 folders) stopped the whole ingest with a RecursionError.
    # A folder's real path is its parent's plus its name (resolving each one anew costs a system
    # call per level of its path: quadratic in the depth)
    stack = [frame] if (frame := listing(folder, [], root)) else []
    while stack:
        entries, ignored, real = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        rel = entry.relative_to(folder.parent)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if ignored and any(i.matches(entry, entry.is_dir()) for i in ignored):
            continue
        name = clean_name(rel.as_posix())
        target = real / entry.name
        if entry.is_symlink():
            target = entry.resolve()
            if not inside(target) and not follow_symlinks:
                refused.append(FileResult(name, "failed", reason=(
                    f"symlink to {target}, outside the folder {folder}: not followed "
                    "(ingest it by its own path, or use --follow-symlinks)")))
                continue
            if target.is_dir() and (not follow_symlinks or target in seen):
                continue  # inside: its files come under their real path; or a loop
        if entry.is_dir():
            seen.add(target)
            if frame := listing(entry, ignored, target):
                stack.append(frame)
        elif entry.is_file() and entry.suffix.lower() not in WEB_ASSETS and not _is_icon(entry):
            files.append((entry, name))


def missing_from(ws: Workspace, collection: str, folders: Sequence[Path], found: set[str],
                 refused: Sequence[str] = ()) -> list[dict]:
    """Documents of `collection` read from one of `folders` that an ingest of those folders no longer
    finds (`found`: the names it walked; `refused`: the names it refused, a symlink or a folder it
    could not list, whose documents and those below them never count): a file deleted, renamed or
    moved out of the folder since, or left out by an IGNORE_FILE. A document counts when it is named
    as this folder's walk would name the file it was read from (`expand`: its path below the folder,
    under the folder's own name), or, for a folder with a name of its own (not `.` or `..`, whose
    files are named without one), when that file's path ends in the document's name (the same
    folder read from another place before: a drive mounted elsewhere). [{id, name, chunks, empty}], by
    name; `empty`: the folder's walk found no file at all."""
    cid = ws.collection_id(collection)
    if cid is None:
        return []
    out: dict[int, dict] = {}
    # a name the walk refused may be a folder it could not list: nothing below it is known to be gone
    found, unknown = found | set(refused), tuple(name + "/" for name in refused)
    for folder in folders:
        named, root = folder.name not in ("", ".", ".."), folder.resolve()
        prefix = clean_name(folder.name) + "/" if named else ""
        empty = not any(name.startswith(prefix) for name in found)
        rows = ws.db.execute(
            "SELECT d.id, d.path AS name, d.source, (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id) AS chunks "
            "FROM documents d WHERE d.collection_id = ? AND substr(d.path, 1, ?) = ?",
            (cid, len(prefix), prefix)).fetchall()
        for r in rows:
            source, parts = Path(r["source"] or ""), Path(r["name"]).parts
            if r["name"] in found or r["name"].startswith(unknown) or not source.is_absolute():
                continue
            # the name this folder's walk gives the file it was read from (`expand`)
            walked = root in source.parents and clean_name(prefix + source.relative_to(root).as_posix()) == r["name"]
            if walked or (named and source.parts[-len(parts):] == parts):
                out[r["id"]] = {"id": r["id"], "name": r["name"], "chunks": r["chunks"], "empty": empty}
    return sorted(out.values(), key=lambda d: d["name"])


MAX_FILES_LISTED = 2000  # a job's result lists every file up to this many, beyond it the failed ones


def job_summary(results: list[FileResult]) -> dict:
    """An ingest job's result: counts by status, how many updated files were only re-read by a newer
    reader, and the per-file results (every file up to MAX_FILES_LISTED, beyond that the failed ones,
    so a huge batch never writes a huge row)."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    listed = results if len(results) <= MAX_FILES_LISTED else [r for r in results if r.status == "failed"][:MAX_FILES_LISTED]
    return {"counts": counts, "chunks": sum(r.chunks for r in results if r.status in ("added", "updated")),
            "reread": sum(bool(r.reread) for r in results),  # of the updated ones (`rereads`)
            "files": [asdict(r) for r in listed], "files_omitted": len(results) - len(listed)}


def plural(n: int, noun: str) -> str:
    """`noun` as it reads after the count `n`: "1 chunk", "2 chunks", "0 files" (regular nouns only). The
    CLI's summaries and a job's message are read by people, and "1 files" reads as a slip."""
    return noun if n == 1 else noun + "s"


def counts_line(results: list[FileResult]) -> str:
    """An ingest job's message: "12 files: 10 added, 2 updated (1 re-read by a newer reader)"."""
    summary = job_summary(results)
    files = len(results)
    return f"{files} {plural(files, 'file')}" + (": " + ", ".join(f"{n} {s}" + rereads(summary["reread"], s)
                                                                 for s, n in summary["counts"].items()) if summary["counts"] else "")


def rereads(count: int, status: str) -> str:
    """" (3 re-read by a newer reader)" after the count of updated files, where some were read again only
    for their reader (the CLI's summary, a job's message): after an upgrade nobody changed them."""
    return f" ({count} re-read by a newer reader)" if status == "updated" and count else ""


def reread_note(reread: str) -> str:
    """What a file read again only for its newer reader (`FileResult.reread`) says beside `updated`, in
    the CLI's summary, `archivist jobs show --files` and the Documents page's job table."""
    return f"re-read by a newer reader ({reread}); the file did not change"


def note_kept_versions(db, cid: int, results: list[FileResult]) -> None:
    """A file that failed to read while a version of it is stored (a changed file its reader now
    refuses, or an unchanged one a newer reader re-reads after an upgrade and refuses) keeps that
    version, still searchable; its reason says so, with that version's chunks and reader, else
    "failed ... 0 chunks" reads as if the document were gone."""
    for r in results:
        if r.status != "failed" or not r.reason or "stored document is kept" in r.reason:  # a twin says so already
            continue
        row = db.execute("SELECT d.kind, d.reader, (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id) FROM documents d "
                         "WHERE d.collection_id = ? AND d.path = ? AND d.status IN ('ready', 'queued')",
                         (cid, r.name)).fetchone()
        if row is not None:
            r.reason += (f"; the version stored before ({row[2]} chunks, read by the {row[0]} reader {row[1]}) is kept "
                         "and still searchable")


def note_same_content(ws: Workspace, collection_ids: list[int], results: list[FileResult]) -> None:
    """A file added under a new name whose content is already stored as another document (in the
    collections `collection_ids`: those the job's owner may read, so no other text is confirmed) gets
    a reason naming that document: a copy renamed or uploaded twice is otherwise added with no hint."""
    added = {r.document_id: r for r in results if r.status == "added" and r.document_id and not r.reason}
    if not added or not collection_ids:
        return
    marks = ",".join("?" * len(collection_ids))
    for doc_id, r in added.items():
        same = ws.db.execute(
            f"SELECT d.path, k.name FROM documents d JOIN collections k ON k.id = d.collection_id "
            f"WHERE d.content_hash = (SELECT content_hash FROM documents WHERE id = ?) AND d.id != ? "
            f"AND d.status = 'ready' AND d.collection_id IN ({marks}) ORDER BY d.id", (doc_id, doc_id, *collection_ids)).fetchall()
        if same:
            more = f" (and {len(same) - 1} more)" if len(same) > 1 else ""
            r.reason = (f"the same content is already stored as {same[0][0]} in {same[0][1]}{more}: "
                        "now it is there twice (delete one copy to keep one)")
