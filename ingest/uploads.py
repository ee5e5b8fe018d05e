"""Saving files that arrive from a browser or an HTTP client, before they are ingested.

    path, name = save_upload(ws, "Q3 report.pdf", data, max_mb=50)
    ingest_paths(ws, [path], collection="finance", user=user, names=[name])

Nothing about an upload is trusted: its name is cleaned (no directories, no absolute paths, no
control or bidi characters, no Windows reserved names, bounded length), its size is counted while
it streams in, and its type is decided from its bytes (`readers.detect_kind`), not its extension.
Office files are checked for zip bombs here already, so a hostile upload never reaches the
ingest queue. Every upload is stored as uploads/<first 16 hex of its sha256>/<clean name>, so two
different files with the same name never overwrite each other, and the same file uploaded twice
lands on the same path. The file appears under its final name atomically (written to a hidden
part file first), so a crash or a full disk leaves no half file behind.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import shutil
import unicodedata
import uuid
from pathlib import Path
from typing import BinaryIO

from archivist.workspace import Workspace, WorkspaceError

MB = 1024 * 1024
BLOCK = 1 << 20  # bytes copied at a time from a stream
MAX_NAME_BYTES = 200  # file systems allow 255; room for the part-file prefix
MAX_EXT_CHARS = 16
_HASH_FOLDER = re.compile(r"[0-9a-f]{16}")  # uploads/<first 16 hex of the sha256>/<name>
DISK_RESERVE = 16 * MB  # refuse an upload that would leave less than this free (SQLite needs room too)
# Names Windows reserves whatever the extension; refused so a copied workspace still opens there.
RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
_FORBIDDEN = set('<>:"|?*')  # not allowed in Windows file names


class UploadError(ValueError):
    """An upload was refused: the message names the file and the reason (too large, empty,
    unsupported type, zip bomb). Nothing of it was kept."""


def clean_filename(name: str, fallback: str = "upload") -> str:
    """The display-and-storage name for an uploaded file's claimed name.

    Keeps only the last path component (so "../../etc/passwd", "/abs/x" and "C:\\fakepath\\x"
    become "passwd", "x" and "x"), drops control, format (bidi override, zero-width) and
    unassigned characters, replaces characters Windows forbids with "_", folds whitespace runs
    into one space, strips leading and trailing dots and spaces (no hidden files, no "..",
    no Windows trailing-dot names), prefixes Windows reserved names ("CON.txt" -> "_CON.txt"),
    and shortens it to MAX_NAME_BYTES of UTF-8 keeping the extension. A name with nothing left
    ("", ".", blanks) becomes `fallback`; one blank before an extension that decides how the file is
    read (readers.KIND_EXTENSIONS: " .csv", ".md") becomes `fallback` with it ("upload.csv"; "" for
    an empty `fallback`).
    """
    from archivist.ingest.readers import KIND_EXTENSIONS

    name = unicodedata.normalize("NFC", str(name)).replace("\\", "/")
    name = name.rsplit("/", 1)[-1]
    name = "".join(" " if ch.isspace() else ch for ch in name)  # tabs and newlines separate words
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = "".join("_" if ch in _FORBIDDEN else ch for ch in name)
    name = " ".join(name.split())
    stem, dot, ext = name.rpartition(".")
    if dot and not stem.strip(" .") and f".{ext.lower()}" in KIND_EXTENSIONS:
        # " .csv" or ".md" stripped to "csv" would be read as another kind (plain text): the
        # extension stays, after `fallback`
        return f"{fallback}.{ext}" if fallback else ""
    name = name.strip(" .")
    if not name:
        return fallback
    if name.split(".", 1)[0].rstrip(" ").upper() in RESERVED:
        name = "_" + name
    return _shorten(name)


def _shorten(name: str) -> str:
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > MAX_EXT_CHARS:
        stem, ext = name, ""
    tail = f".{ext}" if ext else ""
    room = MAX_NAME_BYTES - len(tail.encode("utf-8"))
    stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(" .")
    return (stem or "upload") + tail


def _blocks(data: bytes | bytearray | memoryview | BinaryIO):
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = io.BytesIO(bytes(data))
    while True:
        block = data.read(BLOCK)
        if not block:
            return
        if not isinstance(block, (bytes, bytearray)):
            raise TypeError(f"upload data must be bytes or a binary file, got a stream of {type(block).__name__}")
        yield block


def _disk_error(e: OSError, name: str) -> WorkspaceError | None:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return WorkspaceError(f"{name}: the disk is full; the upload was not saved and nothing stored before was touched")
    if e.errno == errno.EFBIG:
        return WorkspaceError(f"{name}: larger than the file size limit of this system; the upload was not saved")
    return None


def check_content(path: Path, name: str, max_unzipped_mb: int) -> str:
    """The reader kind of the saved file at `path` (extension taken from `name`), from its bytes.

    Raises UploadError for what `readers.check_kind` refuses (a type no reader handles, an encrypted
    or legacy Office file, binary data posing as text, DOCX/XLSX/PPTX that are corrupt, encrypted or
    expand past `max_unzipped_mb`), with the reason a folder's ingest gives for the same file.
    """
    from archivist.ingest.readers import HEAD_BYTES, ReadError, check_kind

    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    try:
        return check_kind(path, head, max_unzipped_mb)[0]
    except ReadError as e:
        raise UploadError(f"{name}: {e}") from None


def save_upload(ws: Workspace, filename: str, data: bytes | BinaryIO, max_mb: int | None = None) -> tuple[Path, str]:
    """Store one uploaded file safely in the workspace; returns (stored path, clean display name).

    filename: the name the client claimed (cleaned by `clean_filename`; the display name keeps it).
    data: the bytes, or a binary file object read in 1 MB blocks (so a huge upload is refused at
    the limit without being held in memory). max_mb: size limit (default settings.max_file_mb).
    Raises UploadError (a ValueError) for an empty, too large or unsupported file, WorkspaceError
    when the disk is full. Nothing is left behind when it raises.
    """
    name = clean_filename(filename)
    max_mb = ws.settings.max_file_mb if max_mb is None else max_mb
    limit = int(max_mb * MB)
    folder = ws.path("uploads")
    if isinstance(data, (bytes, bytearray, memoryview)):
        if len(data) > limit:
            raise UploadError(f"{name}: file too large: {len(data) / MB:.1f} MB (limit {max_mb:g} MB)")
        if shutil.disk_usage(folder).free < len(data) + DISK_RESERVE:
            raise WorkspaceError(f"{name}: not enough free disk space for {len(data) / MB:.1f} MB; the upload was not saved")
    # Keep the extension on the part file: detect_kind falls back on it for text formats.
    tmp = folder / f".part-{uuid.uuid4().hex}{Path(name).suffix[:MAX_EXT_CHARS + 1]}"
    digest, size = hashlib.sha256(), 0
    try:
        try:
            with open(tmp, "xb") as out:
                for block in _blocks(data):
                    size += len(block)
                    if size > limit:
                        raise UploadError(f"{name}: file too large: more than {max_mb:g} MB")
                    digest.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())  # the bytes are on disk before the name points at them
        except OSError as e:
            raise (_disk_error(e, name) or e) from e
        if size == 0:
            raise UploadError(f"{name}: empty file (0 bytes)")
        check_content(tmp, name, ws.settings.max_unzipped_mb)
        target = folder / digest.hexdigest()[:16] / name
        try:
            target.parent.mkdir(exist_ok=True)
            os.replace(tmp, target)  # atomic; the same bytes under the same name land on the same path
        except OSError as e:
            raise (_disk_error(e, name) or e) from e
        return target, name
    finally:
        tmp.unlink(missing_ok=True)


def stored_upload(ws: Workspace, source: str | os.PathLike) -> Path:
    """Where the file a document was read from is in this workspace. `documents.source` (and an
    upload job's files) hold the absolute path at ingest time, so in a workspace moved or copied to
    another folder an upload's path still names the old folder's uploads/; it is mapped to this
    workspace's uploads/<hash>/<name> when that file is there (the hash folder names its bytes).
    Any other path comes back as it is."""
    path = Path(source)
    uploads = ws.home / "uploads"
    if path.parent.parent.name == "uploads" and _HASH_FOLDER.fullmatch(path.parent.name):
        here = uploads / path.parent.name / path.name
        if here != path and here.is_file():
            return here
    return path


def workspace_copy(ws: Workspace, source: str | os.PathLike | None) -> Path | None:
    """The copy under this workspace's uploads/ that `source` names (mapped in a workspace moved
    since: `stored_upload`), resolved; None for any other file, the user's own, which the workspace
    never removes."""
    if not source:
        return None
    path = stored_upload(ws, source).resolve()
    return path if (ws.home / "uploads").resolve() in path.parents else None


def remove_upload(ws: Workspace, path: str | os.PathLike) -> bool:
    """Delete a stored upload (and its hash folder when it empties); returns whether it existed.
    Refuses (ValueError) a path outside the workspace's uploads/ folder."""
    uploads = (ws.home / "uploads").resolve()
    p = Path(path).resolve()
    if uploads not in p.parents:
        raise ValueError(f"{path}: not an upload of this workspace")
    try:
        p.unlink()
    except FileNotFoundError:
        return False
    if p.parent != uploads:
        try:
            p.parent.rmdir()
        except OSError:
            pass  # other files share the folder
    return True


def remove_unused_upload(ws: Workspace, path: str | os.PathLike, but: int | None = None) -> bool:
    """`remove_upload`, unless a document other than document `but` was read from that file (the same
    bytes uploaded under the same name to another collection share one file: it goes with the last
    document read from it). Returns whether it was removed."""
    path = stored_upload(ws, path).resolve()
    tail = os.sep + os.path.join(path.parent.name, path.name)  # documents read from it, here or before a move
    for (source,) in ws.db.execute("SELECT source FROM documents WHERE substr(source, -length(?)) = ? AND id IS NOT ?",
                                   (tail, tail, but)):
        if stored_upload(ws, source).resolve() == path:
            return False
    return remove_upload(ws, path)
