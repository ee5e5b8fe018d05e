"""Saved fine-tuning datasets: the records (`Example`, `Dataset`) and `datasets/<name>/` on disk.

A dataset that datasets.py builds is saved here (`save_dataset`) as train.jsonl, eval.jsonl (one
`Example` per line) and manifest.json, atomically and with an audit record. Loading, listing and
previewing take the user (`check_access`); erasure (`archivist erase`, `archivist users erase`) and
deleting a user (`disown`) edit the saved datasets here.

A saved dataset belongs to the user who built it: listing, previewing and loading take the user,
and only its owner or an admin sees it, and only while they may read every collection it draws on
(its text, and a model trained on it, repeat those collections). This module is the only one that
reads or writes `datasets/` (datasets.py only asks whether a new dataset's name is free).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from archivist import access, audit, files
from archivist.workspace import Workspace, WorkspaceError, transaction

log = logging.getLogger(__name__)

# a dataset's name is its folder under datasets/ (datasets.build_dataset checks a new one against it)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")


# -- the records ------------------------------------------------------------------------------


class DatasetError(ValueError):
    """Bad input for a dataset (a broken JSONL line, no examples, an unknown source), named precisely."""


@dataclass
class Example:
    """One training chat. `messages[-1]` is the assistant's target; everything before it is the prompt."""

    messages: list[dict]
    source: str  # docs:extractive | docs:llm | feedback | file
    group: str  # the split key: "doc:<id>", "feedback:<id>" or "file:<name>:<line>"; groups tied (`datasets._tied`) share the least
    question: str
    answer: str  # the gold answer: a span of the source chunk, or the whole target for feedback and files
    cite: int | None = None  # the passage number [n] holding the answer
    document_id: int | None = None
    chunk_id: int | None = None
    span: list[int] | None = None  # [start, end] of `answer` in the source chunk's text
    passages: list[int] = field(default_factory=list)  # chunk ids in prompt order
    collections: list[str] = field(default_factory=list)  # each passage's collection, in prompt order


@dataclass
class Dataset:
    name: str
    path: Path
    train: list[Example]
    eval: list[Example]
    manifest: dict


# -- save, load, list: a saved dataset and who may see it -------------------------------------


def save_dataset(ws: Workspace, name: str, train: list[Example], evals: list[Example], manifest: dict) -> Dataset:
    """Write datasets/<name>/{train,eval}.jsonl and manifest.json (with the files' hashes), atomically.

    The files are written and synced in a folder of this saver's own (`files.building`) outside the
    workspace's write lock, which is held only to record the build and rename the folder into place:
    a big dataset's fsyncs never stall other writers, and of two savers of one name the second is
    refused. Folders that killed savers left are removed first. Raises DatasetError when a dataset
    named `name` exists, WorkspaceError when the files cannot be written (a full disk): nothing is
    left of the save then."""
    root = ws.home / "datasets"
    try:
        files.remove_abandoned_folders(root)
        return _save(ws, root, name, train, evals, manifest)
    except OSError as e:
        why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise WorkspaceError(f"cannot save dataset {name!r} under {root}: {why}; nothing of it was kept, and "
                             "what was stored before is intact") from e


def _save(ws: Workspace, root: Path, name: str, train: list[Example], evals: list[Example], manifest: dict) -> Dataset:
    """`save_dataset`'s work, its OSErrors (a full disk) left to it to word."""
    target = root / name
    with files.building(root, name) as tmp:
        for split, rows in (("train", train), ("eval", evals)):
            data = "".join(json.dumps(asdict(e), ensure_ascii=False) + "\n" for e in rows).encode()
            (tmp / f"{split}.jsonl").write_bytes(data)
            manifest[f"{split}_sha256"] = hashlib.sha256(data).hexdigest()
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        files.sync_tree(tmp)  # on disk before its name: a power cut leaves no empty train.jsonl
        # a dataset copies users' questions, corrections and passages into files: who built it, from
        # which collections and feedback, is recorded with the rename that makes it exist (a failed
        # rename rolls the record back)
        used = (manifest.get("feedback") or {}).get("used") or []
        with transaction(ws.db):
            if target.exists():  # another saver of this name got here first
                raise DatasetError(f"dataset {name!r} already exists at {target}")
            # an erase that finished while this was built edited the datasets there were then, not this one
            erased = audit.erased_documents(ws, [d.get("id") for d in manifest.get("documents") or []])
            if erased:
                raise DatasetError(f"dataset {name!r} not saved: {', '.join(sorted(erased.values()))} was erased "
                                   "while it was built; build it again")
            audit.record(ws, "dataset.built", user=manifest.get("owner"), target=name, detail={
                "collections": manifest.get("collections", []), "sources": manifest.get("sources", []),
                "counts": manifest.get("counts"), "documents": len(manifest.get("documents") or []),
                "feedback": list(used), "files": [f["sha256"] for f in manifest.get("files") or []],
                "train_sha256": manifest.get("train_sha256"), "eval_sha256": manifest.get("eval_sha256")})
            files.publish(tmp, target, synced=True)
    return Dataset(name=name, path=target, train=train, eval=evals, manifest=manifest)


def _folder(ws: Workspace, name: str) -> Path:
    """datasets/<name>, or `name` itself when it is the path of a dataset folder."""
    saved = ws.home / "datasets" / name
    if _NAME.match(name) and (saved / "manifest.json").exists():
        return saved
    return Path(name) if Path(name).is_dir() else saved


def _manifest(path: Path) -> dict:
    """The manifest.json of dataset folder `path`. Raises DatasetError when it is not a JSON object."""
    file = path / "manifest.json"
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise DatasetError(f"{file}: expected a JSON object")
    return manifest


def _owner(manifest: dict) -> str | None:
    """Who built the dataset ("user": datasets saved before "owner")."""
    return manifest.get("owner", manifest.get("user"))


def check_access(ws: Workspace, name: str, manifest: dict, user: str | None) -> None:
    """Let `user` (None: the acting user) see and use the dataset, or raise.

    Its owner and admins may, the owner only while they may read every collection it draws on.
    Raises LookupError for anyone else, worded as for a dataset that does not exist (a name is not
    confirmed by guessing); AccessDenied, naming the collections, for the owner who may no longer read
    one, or for a dataset saved before datasets recorded the collections they draw on.
    """
    who = access.current_user(ws, user)
    if access.is_admin(ws, who):
        return
    if _owner(manifest) != who:
        raise LookupError(f"no dataset named {name!r} (under {ws.home / 'datasets'})")
    if "collections" not in manifest:
        raise access.AccessDenied(f"dataset {name!r} was saved before datasets recorded every collection they draw on: "
                                  "build it again (an admin may still use it)")
    lost = sorted(set(manifest["collections"]) - set(access.readable_collections(ws, who)))
    if lost:
        raise access.AccessDenied(f"dataset {name!r} draws on collections {who!r} may no longer read: {', '.join(lost)}")


def check_reviewed(ws: Workspace, ds: Dataset) -> Dataset:
    """`ds`, or raise DatasetError when saved dataset `ds` learned feedback whose correction no admin has approved
    now (archivist/feedback.py `review_correction`): one saved before reviews existed (schema 17), or whose
    correction was rejected or changed since. A training run checks it; a preview does not."""
    used = (ds.manifest.get("feedback") or {}).get("used") or []
    bad = [r[0] for r in ws.db.execute(
        "SELECT f.id FROM feedback f LEFT JOIN feedback_reviews r ON r.feedback_id = f.id WHERE f.id IN "
        "(SELECT value FROM json_each(?)) AND trim(COALESCE(f.correction, '')) != '' AND r.review IS NOT 'approved' "
        "ORDER BY f.id", (json.dumps(used),))] if used else []
    if bad:
        raise DatasetError(f"dataset {ds.name!r} learned corrections no admin has approved (feedback "
                           f"{', '.join(map(str, bad[:10]))}{' ...' if len(bad) > 10 else ''}): build the dataset again, "
                           "which leaves them out, or approve them first (`archivist feedback review`)")
    return ds


def load_dataset(ws: Workspace, name: str, user: str | None) -> Dataset:
    """The saved dataset `name` (or a dataset folder's path), if `user` may use it (`check_access`).

    Raises LookupError when there is none (or it is not the user's to see), AccessDenied (see
    check_access), DatasetError for a file that does not parse, named with its line.
    """
    path = _folder(ws, name)
    if not (path / "manifest.json").exists():
        raise LookupError(f"no dataset named {name!r} (under {ws.home / 'datasets'})")
    manifest = _manifest(path)
    check_access(ws, name, manifest, user)

    def read(split):
        p = path / f"{split}.jsonl"
        out = []
        for lineno, row in _rows(p):
            try:
                out.append(Example(**row))
            except TypeError as e:
                raise DatasetError(f"{p}:{lineno}: not a saved example ({e})") from None
        return out

    return Dataset(name=manifest.get("name", path.name), path=path, train=read("train"), eval=read("eval"), manifest=manifest)


def list_datasets(ws: Workspace, user: str | None) -> list[dict]:
    """The saved datasets `user` (None: the acting user) may see (`check_access`), newest first:
    [{name, created_at, owner, collections, sources, generator, train, eval}]. A folder whose
    manifest does not parse is logged and left out."""
    out = []
    for p in sorted(_manifests(ws), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            m = _manifest(p.parent)
            check_access(ws, p.parent.name, m, user)
        except DatasetError as e:
            log.warning("skipping dataset %s: %s", p.parent.name, e)
            continue
        except (LookupError, access.AccessDenied):
            continue
        out.append({"name": m.get("name", p.parent.name), "created_at": m.get("created_at"),
                    "owner": _owner(m), "collections": m.get("collections"), "sources": m.get("sources"),
                    "generator": m.get("generator"), **m.get("counts", {})})
    return out


# -- erasure and deleted users: edits to the saved datasets -----------------------------------


def _manifests(ws: Workspace) -> list[Path]:
    """The manifest.json of each saved dataset: a folder being saved, or left by a save that was
    killed (`files.building`, hidden), is none, whatever it holds."""
    return [p for p in (ws.home / "datasets").glob("*/manifest.json") if not p.parent.name.startswith(".")]


def _folders(ws: Workspace) -> list[Path]:
    """The saved datasets' folders (those with a manifest), by name."""
    return sorted(p.parent for p in _manifests(ws))


def _readable(ws: Workspace) -> Iterator[tuple[Path, dict]]:
    """(folder, manifest) of each saved dataset whose manifest parses, by name: a deleted user's
    datasets and a person's feedback are looked for in those (one that does not parse nobody can use)."""
    for folder in _folders(ws):
        try:
            yield folder, _manifest(folder)
        except DatasetError:
            continue


def disown(ws: Workspace, owner: str, former: str) -> int:
    """Record `former` as the owner of every saved dataset `owner` built (the user was deleted: a
    user created later under the same name must not inherit them); returns how many."""
    n = 0
    for folder, manifest in _readable(ws):
        if _owner(manifest) == owner:
            manifest["owner"] = former
            manifest.pop("user", None)
            _write_manifest(folder, manifest)
            n += 1
    return n


def erase_feedback(ws: Workspace, feedback_ids: set[int], questions: set[str], owners: Sequence[str],
                   erased_owner: str) -> tuple[dict[str, int], set[str], list[str]]:
    """For `archivist users erase`: drop from every saved dataset that used feedback rows
    `feedback_ids` the examples made from them (source "feedback", one of `questions`), take the ids
    out of its manifest, and make `erased_owner` the owner of the datasets one of `owners` (the
    person's name, and what `users delete` left) built. Returns ({dataset: examples dropped},
    the datasets that used their feedback (an adapter trained on one learned from it), the
    datasets disowned). Safe to repeat."""
    dropped_by, touched, disowned = {}, set(), []
    for folder, manifest in _readable(ws):
        fb = manifest.get("feedback") or {}
        used = set(fb.get("used") or [])
        changed = False
        if used & feedback_ids:
            touched.add(folder.name)
            kept, dropped = _without(folder, lambda r: r.get("source") == "feedback" and r.get("question") in questions)
            _write_splits(folder, manifest, kept)
            fb["used"] = sorted(used - feedback_ids)
            fb["erased"] = int(fb.get("erased") or 0) + len(used & feedback_ids)
            manifest["feedback"] = fb
            dropped_by[folder.name] = dropped
            changed = True
        if _owner(manifest) in owners:
            manifest["owner"] = erased_owner
            manifest.pop("user", None)
            disowned.append(folder.name)
            changed = True
        if changed:
            _write_manifest(folder, manifest)
    return dropped_by, touched, disowned


def erase_document(ws: Workspace, document_id: int, chunk_ids: set[int], erased: Callable[[str], bool],
                   owner: str | None = None, left: dict[str, int] | None = None) -> dict[str, int]:
    """Drop from every saved dataset the examples built from document `document_id` or showing one of
    its chunks (`chunk_ids`, as source or distractor) or its text (`erased(text) -> bool`), and the
    document from the manifest (listed under "erased" instead). Returns {dataset: examples dropped}
    for the datasets that had any. (`archivist erase`; its other copies are the other modules' business.)
    `owner`: text is looked for only in that user's datasets (a member's erase), None in all (an
    admin's); examples built from the document go from anyone's. An example built from another
    document whose text holds the document's only where another document holds it too
    (`erased.shared(text)`, see ingest/erase.py `matcher`: the same file in another collection)
    is that document's and stays; `left` gets {dataset: such examples}."""
    out = {}
    shared = getattr(erased, "shared", None)
    for folder in _folders(ws):
        manifest = _manifest(folder)
        text = erased if owner in (None, _owner(manifest)) else (lambda s: False)
        kept, dropped = _without(folder, lambda r: _from_erased(r, document_id, chunk_ids, text))
        if left is not None and shared is not None and text is erased:
            n = sum(any(map(shared, _texts(r))) for rows in kept.values() for r in rows)
            if n:
                left[folder.name] = n
        listed = any(d.get("id") == document_id for d in manifest.get("documents", []))
        if not dropped and not listed:
            continue
        manifest["documents"] = [d for d in manifest.get("documents", []) if d.get("id") != document_id]
        manifest["erased"] = sorted(set(manifest.get("erased", [])) | {document_id})
        _write_splits(folder, manifest, kept)
        _write_manifest(folder, manifest)
        out[folder.name] = dropped
    return out


def _without(folder: Path, drop: Callable[[dict], bool]) -> tuple[dict[str, list[dict]], int]:
    """A saved dataset's rows of each split without those `drop` picks, and how many it picked."""
    kept, dropped = {}, 0
    for split in ("train", "eval"):
        f = folder / f"{split}.jsonl"
        rows = [row for _, row in _rows(f)] if f.exists() else []
        kept[split] = [r for r in rows if not drop(r)]
        dropped += len(rows) - len(kept[split])
    return kept, dropped


def _rows(file: Path) -> list[tuple[int, dict]]:
    """(line number, row) for each example of a saved split (a JSON object a line). Raises
    DatasetError naming the file and the line that does not parse: loading it, or an erase, which
    must not pass over a copy it cannot read. Lines end at "\n" alone: a row's strings hold U+2028,
    U+0085 and the like as they are (json.dumps with ensure_ascii=False), where splitlines() breaks."""
    try:
        lines = file.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{file}: not UTF-8 text ({e})") from None
    out = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise DatasetError(f"{file}:{lineno}: not a saved example ({e})") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{file}:{lineno}: not a saved example (a JSON {type(row).__name__}, not an object)")
        out.append((lineno, row))
    return out


def _write_splits(folder: Path, manifest: dict, kept: dict[str, list[dict]]) -> None:
    """Write each split's rows, and their hashes and counts into `manifest` (the caller writes it)."""
    for split, rows in kept.items():
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
        files.replace(folder / f"{split}.jsonl", data)  # the old rows or the new, never a torn file
        manifest[f"{split}_sha256"] = hashlib.sha256(data).hexdigest()
    manifest["counts"] = {split: len(rows) for split, rows in kept.items()}


def _write_manifest(folder: Path, manifest: dict) -> None:
    """Replace a saved dataset's manifest.json (`files.replace`): a crash or power cut mid-write leaves
    the old manifest or the new one, never a torn one that hides the dataset from its owner."""
    files.replace(folder / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))


def _from_erased(row: dict, document_id: int, chunk_ids: set[int], erased: Callable[[str], bool]) -> bool:
    if row.get("document_id") == document_id or chunk_ids & set(row.get("passages") or []):
        return True
    return any(erased(t) for t in _texts(row))


def _texts(row: dict) -> list[str]:
    """The texts of a saved example: its question, answer and messages."""
    return [row.get("question") or "", row.get("answer") or ""] + [m.get("content") or "" for m in row.get("messages") or []]
