"""Files of the workspace written so that a crash or a power cut leaves the old version or the new
one whole, never a mix or an empty file; and the scan an erase makes of them.

    publish(tmp, target)        a folder built aside (an adapter, an adapted embedder, a converted
                                model, a merged export), or a big file (an assembled model),
                                made to exist under its name
    set_aside(folder)           a deleted model's folder made hidden at once, to remove after the commit
    replace(path, data)         one small file (a pointer, a manifest) replaced
    read_manifest(path, what)   a registered model's manifest, or ValueError naming the file
    sync_tree(folder)           everything under `folder` on disk (a fine-tune checkpoint)
    files_holding(home, texts)  which files still hold a text an erase removed

A rename is atomic, but what was written before it may still sit in the page cache when the power
goes: a renamed folder can then hold empty files, and what it replaced is already gone. So the
bytes are fsynced before the rename, and the folder holding the name after it. A filesystem that
cannot fsync a folder is let be. The index files (FAISS, the lexical index) are not synced: they
cache SQLite, and are rebuilt from it on open when they disagree with it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from archivist.needles import Needles

log = logging.getLogger(__name__)


def sync_tree(folder: Path) -> None:
    """fsync every file below `folder`, then each folder, deepest first (their names)."""
    folders = [folder]
    for root, dirs, names in os.walk(folder):
        folders += [Path(root) / d for d in dirs]
        for name in names:
            _fsync(Path(root) / name)
    for d in reversed(folders):
        _fsync(d)


def publish(tmp: Path, target: Path, replace_existing: bool = False, synced: bool = False) -> None:
    """Make the folder (or file) `tmp`, built beside `target`, exist as `target`: its files on disk first,
    then one rename, then the parent folder's entry. With `replace_existing`, a folder already at
    `target` is removed first (between the two, neither exists: callers that must never lose the
    old one keep it until this returns). `synced`: the caller ran `sync_tree(tmp)` already, before
    taking a lock it holds only for the rename."""
    if not synced:
        sync_tree(tmp)
    if replace_existing:
        shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    _fsync(target.parent)


def replace(path: Path, data: str | bytes, sync: bool = True) -> None:
    """Write `data` to `path`: a file beside it, fsynced, renamed over it, and the folder synced.
    Readers see the old content or the new, whole. The file beside it is this writer's own (two
    processes replacing one file at once must not write into, or rename away, each other's), locked
    until renamed, and removed when writing it fails (a full disk); one that a killed writer left
    is removed by the next replace of `path` (`_remove_abandoned`). `sync=False` for a file that
    caches SQLite (an index's sidecar): whole for readers, not flushed to disk (rebuilt on open when
    lost)."""
    _remove_abandoned(path)
    name, fd = _own_temp(path)
    try:
        with open(fd, "wb", closefd=False) as f:  # the fd, and its lock, held until the rename
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            if sync:
                f.flush()
                os.fsync(fd)
        os.replace(name, path)
    except BaseException:
        name.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    if sync:
        _fsync(path.parent)


def read_manifest(path: Path, what: str) -> dict:
    """The JSON object at `path`: the manifest of a registered `what` (an adapted embedder, a learned
    reranker). Raises ValueError naming the file when it does not parse (edited by hand, damaged), so
    the caller can skip it in a listing, or refuse it by name, rather than fail on a bare JSON error."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:  # UnicodeDecodeError too
        raise ValueError(f"{path}: not a readable {what} manifest ({e}); repair or remove that folder") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: not a readable {what} manifest (a JSON {type(manifest).__name__}, not an object); "
                         "repair or remove that folder")
    return manifest


def set_aside(folder: Path) -> Path:
    """Rename `folder` (a deleted embedder's or reranker's) to a hidden name beside it and return that:
    its name is free and unlisted at once, inside the caller's transaction, and its files are removed
    (`shutil.rmtree`) after the commit. A kill between the two leaves a hidden folder holding no lock:
    never listed, and removed by the next `remove_abandoned_folders` of its root (an embedder's save)."""
    gone = _hidden(folder)
    os.rename(folder, gone)
    return gone


def _hidden(path: Path) -> Path:
    """A new name beside `path` for a temp file or folder of this process, `.<name>.<pid>-<hex>.tmp`:
    hidden (never listed), no reader's suffix, and the pid and random hex keep two writers' apart."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _own_temp(path: Path) -> tuple[Path, int]:
    """A new file beside `path`, `.<name>.<pid>-<hex>.tmp` (hidden, and no reader's suffix), with the
    mode a plain open gives, and its descriptor holding an flock: the lock dies with the process, so
    a file a killed writer left is found unlocked, and a live writer's never is."""
    while True:
        name = _hidden(path)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        if _claimed(fd):
            return name, fd
        os.close(fd)


def _claimed(fd: int) -> bool:
    """Lock `fd`, a temp file or folder just made (`_own_temp`, `building`), for as long as it is open;
    False when it was removed as abandoned between its creation and the lock (make another). The lock
    dies with the process: that is how `_remove_if_abandoned` tells a killed writer's from a live one's."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # a file system without locks: nothing removes it as abandoned either
        pass
    return os.fstat(fd).st_nlink > 0


def _remove_if_abandoned(path: str | os.PathLike, remove, flags: int = 0) -> bool:
    """`remove(path)` when no process holds the lock `_claimed` took on it (its writer was killed);
    returns whether it did. A live writer's is let be, and so is everything on a file system without
    locks (it cannot tell)."""
    try:
        fd = os.open(path, os.O_RDONLY | flags)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        remove(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _remove_abandoned(path: Path) -> None:
    """Remove the temp files (`_own_temp`) that writers of `path` killed midway left beside it. Left,
    each would hold an old version (the text an erase removed, too)."""
    own = re.compile(rf"\.{re.escape(path.name)}\.\d+-[0-9a-f]{{8}}\.tmp")
    try:
        entries = [e for e in os.scandir(path.parent) if own.fullmatch(e.name)]
    except OSError:  # no folder yet: the write names it
        return
    for entry in entries:
        _remove_if_abandoned(entry.path, os.unlink)


@contextmanager
def building(root: Path, name: str) -> Iterator[Path]:
    """A new folder under `root` (`.<name>.<pid>-<hex>.tmp`, hidden: never listed) that
    this process holds an flock on while it builds what it saves (a dataset, an adapted embedder) in it; removed on the way out unless it
    was renamed into place. The lock dies with the process, so a folder a killed saver left is found
    unlocked (`remove_abandoned_folders`) and a live saver's never is (`_claimed`)."""
    while True:
        tmp = _hidden(root / name)
        tmp.mkdir(parents=True)
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:  # removed as abandoned between the mkdir and the lock
            continue
        if _claimed(fd):
            break
        os.close(fd)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(fd)


def remove_abandoned_folders(root: Path) -> None:
    """Remove the folders (`building`) of saves whose process is gone (killed mid-save): each one's flock
    (`building`) is free. Another process's save in progress holds its lock and is let be."""
    for tmp in root.glob(".*.tmp"):
        if _remove_if_abandoned(tmp, lambda p: shutil.rmtree(p, ignore_errors=True), os.O_DIRECTORY):
            log.info("removed %s, left by a save that did not finish", tmp)


SCAN_BLOCK = 16 << 20  # bytes `files_holding` holds of a file at once: a workspace's FAISS index or database can be GBs


def files_holding(home: Path, needles: list[bytes]) -> dict[str, set[bytes]]:
    """The files under `home` (relative paths, sorted) whose bytes hold any of `needles`, each with
    the needles it holds: what an erase looks for once the text is deleted. Each file is read once,
    SCAN_BLOCK bytes at a time (a needle across two blocks is found: each block is searched with the
    end of the one before). Unreadable files are skipped."""
    found: dict[str, set[bytes]] = {}
    overlap = max(map(len, needles), default=1) - 1
    search = Needles(needles)  # one pass per block for all of them (thousands for a long document)
    for f in sorted(p for p in home.rglob("*") if p.is_file()):
        held: set[bytes] = set()
        try:
            with f.open("rb") as stream:
                tail = b""
                while block := stream.read(SCAN_BLOCK):
                    data = tail + block
                    del block  # one block (and the end of the one before) held at a time
                    held |= search.found(data)
                    if len(held) == len(needles):
                        break
                    tail = data[len(data) - overlap:] if overlap else b""
                    del data
        except OSError:
            continue
        if held:
            found[str(f.relative_to(home))] = held
    return found


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # a folder on a filesystem that cannot sync one
    finally:
        os.close(fd)
