"""Adapters: the one module that touches the `adapters` table and the adapters/<name>/ folders (and
reads `deleted_adapters`, where a trigger keeps a deleted row's lineage: `registrations`).

    adapters/<name>/adapter_model.safetensors   LoRA weights (PEFT layout: the chat loads it with PeftModel)
    adapters/<name>/adapter_config.json         rank, alpha, targets, base path
    adapters/<name>/metrics.json                base vs adapter on the held-out split (finetune.evaluate.compare)
    adapters/<name>/lineage.json                base model and its hash, dataset manifest, documents,
                                                settings, code version, time

Who may use an adapter: a user who may read every collection it was trained on, because model
weights can repeat their training text. Everything a user is shown or answered with goes through
`list_for`, `may_use`, `active` and `resolve`, which take the user; an adapter the user may not
use looks exactly like one that does not exist.

One adapter at most is active (`adapters.active`): the one the chat uses by default. A user who
may not use it gets the base model instead. Generation takes the adapter it should use as an
argument (`Adapter`, from `resolve`), never "whatever was last active" on the shared model.

    resolve(ws, user, "active" | None | name) -> Adapter | None   # what an answer will use
    register(ws, name, folder, base, metrics, lineage)             # a finished fine-tune
    activate(ws, name) / deactivate(ws)                            # what the chat uses by default
    delete(ws, name, force=False)                                  # row and folder gone, lineage kept
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from archivist import access, audit, files, jobs
from archivist.workspace import Workspace, transaction

log = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")


@dataclass(frozen=True)
class Adapter:
    """An adapter to generate with: its registered name, the folder holding its weights, and when that
    registration was made. A name deleted and registered again holds other weights in the same
    folder, so what loads adapters once (retrieval/llm.py's PeftModel in a long-lived process, a
    vLLM server) keys them on all three, or it would answer with the deleted adapter's weights."""

    name: str
    path: str
    registered_at: float | None = field(default=None, compare=False)  # None: no registered adapter (the null one)

    @property
    def key(self) -> tuple[str, str, float | None]:
        """What tells this adapter's weights from others' of its name (the loaders' cache key)."""
        return self.name, str(self.path), self.registered_at


def _missing(name: str) -> LookupError:
    """The one error for an adapter that does not exist and for one the user may not use, so a
    user cannot learn which adapter names exist by guessing."""
    return LookupError(f"no adapter named {name!r} (see `archivist adapters`)")


# -- registering and reading -----------------------------------------------------------------------


def register(ws: Workspace, name: str, adapter_dir: str | Path, base: str, metrics: dict, lineage: dict,
             run_id: str | None = None, activate: bool = True, user: str | None = None) -> dict:
    """Copy a saved PEFT adapter into adapters/<name>/ with metrics.json and lineage.json, and add its row.

    It is activated when `activate` and the evaluation found it at least as good as the base
    (`metrics["better"]`), it was trained on the workspace's chat model, and `user` (who trained it;
    None: the acting user) has the admin role, since the active adapter answers every user's chat;
    otherwise its note says why not. `lineage["dataset"]` is a dict with the dataset's "name";
    `lineage["documents"]` lists what it learned ({"collection", ...} each). Returns the adapter's record (see `get`).
    Raises ValueError for a bad or taken name, FileNotFoundError when adapter_dir holds no adapter.
    """
    if not _NAME.match(name) or name.lower() == "none":
        raise ValueError(f"adapter name {name!r}: use letters, digits, '.', '_' and '-' (and not 'none')")
    src = Path(adapter_dir)
    if not (src / "adapter_config.json").exists():
        raise FileNotFoundError(f"{src}: no adapter_config.json (not a saved adapter)")
    _taken(ws, name)
    root = ws.home / "adapters"
    files.remove_abandoned_folders(root)  # what a registration killed mid-copy left
    for folder, e in remove_orphans(ws):  # and what a delete killed after its commit left
        log.warning("could not remove %s, the folder of a deleted adapter (%s); remove it by hand", folder, e)
    # copied whole into a folder of this registration's own, then renamed: a crash never leaves half an
    # adapter, and two registrations of one name at once never write into (or remove) each other's copy
    with files.building(root, name) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False, default=str))
        (tmp / "lineage.json").write_text(json.dumps(lineage, indent=2, ensure_ascii=False, default=str))
        files.sync_tree(tmp)
        return _publish(ws, name, tmp, base, metrics, lineage, run_id, activate, user)


def _taken(ws: Workspace, name: str) -> None:
    """Raise ValueError when an adapter has `name`: checked before the copy (a clear refusal at once) and
    again where the row is added (another registration may have taken it while this one copied)."""
    if ws.db.execute("SELECT 1 FROM adapters WHERE name = ?", (name,)).fetchone():
        raise ValueError(f"an adapter named {name!r} already exists (choose another --name)")


def _publish(ws: Workspace, name: str, tmp: Path, base: str, metrics: dict, lineage: dict, run_id: str | None,
             activate: bool, user: str | None) -> dict:
    """`register`'s second half: the copy `tmp` renamed into adapters/<name>/ and its row added in one
    transaction, in which the name is checked again, so of two registrations of one name the second is
    refused before it touches the first one's folder. (A folder there without a row was left by a
    registration killed before its commit: it is replaced.)"""
    dest = ws.home / "adapters" / name
    better = bool(metrics.get("better"))
    note = metrics.get("reason", "")
    other_base = base != ws.settings.llm
    actor = access.current_user(ws, user)
    admin = access.is_admin(ws, actor)
    if not better:
        note = f"not activated: {note}"
    elif not activate:
        note = f"not activated (--no-activate): {note}"
    elif other_base:
        note = f"not activated: trained on {base!r} but the chat model is {ws.settings.llm!r}; {note}"
    elif not admin:
        note = f"not activated: choosing the adapter the chat uses needs the admin role; {note}"
    summary = {k: metrics.get(k) for k in ("n", "base", "adapter", "better", "reason")}
    row_lineage = {k: v for k, v in lineage.items() if k != "dataset"} | {"dataset": lineage["dataset"]["name"]}
    with transaction(ws.db):
        _taken(ws, name)
        files.publish(tmp, dest, replace_existing=True, synced=True)
        # a document erased while the run trained (after its dataset was built) was erased before this
        # row existed, so the erase marked other adapters, not this one: stale from the start
        erased = audit.erased_documents(ws, [d.get("id") for d in lineage.get("documents") or [] if isinstance(d, dict)])
        stale = f"trained on a deleted document: {', '.join(sorted(erased.values()))}" if erased else None
        # likewise feedback its dataset used that is gone now (`users erase`, or an erase of the
        # document it cited, deleted it after the dataset was built): `users erase` marked the
        # adapters there were, not this one
        if not stale and _feedback_gone(ws, lineage):
            stale = "trained on feedback deleted since (an erased user's, or citing an erased document)"
        if stale and better and activate and not other_base and admin:
            note = f"not activated: {stale}; {note}"
        ws.db.execute("INSERT INTO adapters(name, path, base_model, run_id, metrics, lineage, active, note, stale) "
                      "VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
                      (name, str(dest), base, run_id, json.dumps(summary, default=str), json.dumps(row_lineage, default=str),
                       note, stale))
        audit.record(ws, "adapter.registered", user=actor, target=name, detail={"run_id": run_id, "base": base})
    if better and activate and not other_base and admin and not stale:
        _set_active(ws, name, actor)
    return get(ws, name)


def _feedback_gone(ws: Workspace, lineage: dict) -> bool:
    """Whether a feedback row the adapter's dataset was built from (its manifest's feedback "used")
    no longer exists: feedback rows are deleted only by an erasure."""
    dataset = lineage.get("dataset") if isinstance(lineage.get("dataset"), dict) else {}
    used = [i for i in (((dataset.get("manifest") or {}).get("feedback") or {}).get("used") or []) if isinstance(i, int)]
    for at in range(0, len(used), 500):
        part = used[at:at + 500]
        if ws.db.execute(f"SELECT COUNT(*) FROM feedback WHERE id IN ({','.join('?' * len(part))})", part).fetchone()[0] < len(part):
            return True
    return False


def get(ws: Workspace, name: str) -> dict:
    """One adapter's record, whoever asks (for the finetune stage and admins' tools; answer users
    through `list_for` / `resolve`): name, path, base_model, run_id, metrics, lineage, active, note,
    created_at. Raises LookupError for an unknown adapter."""
    row = ws.db.execute("SELECT * FROM adapters WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise _missing(name)
    rec = dict(row)
    rec["metrics"] = json.loads(rec["metrics"]) if rec["metrics"] else None
    rec["lineage"] = json.loads(rec["lineage"]) if rec["lineage"] else None
    rec["active"] = bool(rec["active"])
    rec["stale"] = rec.get("stale") or None  # why it should be retrained (trained on a document erased since)
    return rec


def path(ws: Workspace, name: str) -> Path:
    """The folder of adapter `name`'s weights: adapters/<name>/ in this workspace. (The row holds the
    absolute path it was registered at, which in a workspace moved or copied since names the old
    folder: loading or scrubbing that one would use, or change, another workspace's adapter.)
    Raises LookupError for an unknown adapter."""
    row = ws.db.execute("SELECT path FROM adapters WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise _missing(name)
    here = ws.home / "adapters" / name
    return here if here.is_dir() else Path(row[0])


# -- who may use what ------------------------------------------------------------------------------


def trained_on(ws: Workspace, name: str) -> set[str] | None:
    """The collections adapter `name` was trained on (its lineage's `collections`, which names every
    passage's collection, and its documents' collections), or None when there is no such adapter.
    Examples from a user's JSONL file belong to no collection."""
    row = ws.db.execute("SELECT lineage FROM adapters WHERE name = ?", (name,)).fetchone()
    return None if row is None else _collections(row[0])


def registrations(ws: Workspace, name: str) -> list[tuple[float | None, float | None, set[str]]]:
    """Every registration adapter `name` has had, as (registered at, deleted at or None while it is
    registered, the collections it was trained on): the registered row and those schema migrations 15
    and 16 keep in `deleted_adapters` when a row is deleted, however (its lineage's `registered_at`; a
    row deleted under schema 15 kept none: None, as if it had always been there)."""
    rows = ws.db.execute("SELECT created_at, NULL, lineage FROM adapters WHERE name = ? UNION ALL "
                         "SELECT CASE WHEN json_valid(lineage) THEN json_extract(lineage, '$.registered_at') END, "
                         "deleted_at, lineage FROM deleted_adapters WHERE name = ?", (name, name))
    return [(start, end, _collections(lineage)) for start, end, lineage in rows]


def answered_from(registered: list[tuple[float | None, float | None, set[str]]], at: float | None) -> set[str] | None:
    """The collections an answer written by an adapter drew on through it, from that name's
    `registrations`: what the registration live at `at` (when the answer was written; None: now) was
    trained on. An answer, a feedback row and a stored evaluation name their adapter by name alone, and a
    name deleted and registered again names other weights: counting every adapter that had the name
    refused the new one's answers to members for a collection only the deleted one learned from. When
    no registration was live then (clocks), every one of the name counts. None when none is known
    (deleted before schema 15 kept lineages): what it learned is unknown."""
    live = [learned for start, end, learned in registered
            if (end is None if at is None else (start is None or start <= at) and (end is None or at < end))]
    chosen = live or [learned for _, _, learned in registered]
    return set().union(*chosen) if chosen else None


def _collections(stored: str | None) -> set[str]:
    """The collections a lineage (as the adapters row stores it, JSON) names: its `collections` and its
    documents' collections."""
    try:
        lineage = json.loads(stored) if stored else {}
    except ValueError:
        lineage = {}
    if not isinstance(lineage, dict):
        lineage = {}
    docs = lineage.get("documents") or []
    named = lineage.get("collections") or []
    return ({d["collection"] for d in docs if isinstance(d, dict) and d.get("collection")}
            | {c for c in named if isinstance(c, str) and c})


def may_use(ws: Workspace, user: str | None, name: str) -> bool:
    """Whether `user` (None: the acting user) may get answers from adapter `name`: only when every
    collection it was trained on is one the user may read. False for an unknown adapter.
    Raises AccessDenied for an unknown user."""
    collections = trained_on(ws, name)
    if collections is None:
        return False
    return access.may_read_all(ws, user, collections)


def list_for(ws: Workspace, user: str | None = None) -> list[dict]:
    """The records (see `get`) of the adapters `user` (None: the acting user) may use, newest first.
    One the user may not use is not listed at all: its name and metrics are about documents the
    user cannot see."""
    names = [r[0] for r in ws.db.execute("SELECT name FROM adapters ORDER BY created_at DESC, name")]
    return [get(ws, n) for n in names if may_use(ws, user, n)]


# -- the active adapter ----------------------------------------------------------------------------


def _active_name(ws: Workspace) -> str | None:
    row = ws.db.execute("SELECT name FROM adapters WHERE active = 1").fetchone()
    return row[0] if row else None


def active(ws: Workspace, user: str | None = None) -> str | None:
    """The workspace's active adapter when `user` may use it, else None (the base model answers)."""
    name = _active_name(ws)
    return name if name and may_use(ws, user, name) and not _blocked(ws, name) else None


def activate(ws: Workspace, name: str, force: bool = False, user: str | None = None) -> dict:
    """Make `name` the adapter the chat uses by default; returns its record. `user` (None: the acting
    user) must have the admin role: the active adapter answers every user's chat.

    Raises AccessDenied for a member (before the name is looked up, so it confirms no name),
    LookupError for an unknown adapter, ValueError when it was trained on another base than the
    workspace's chat model (unless force).
    """
    actor = access.require_admin(ws, user, "choose the adapter the chat uses")
    rec = get(ws, name)
    if rec["base_model"] != ws.settings.llm and not force:
        raise ValueError(f"adapter {name!r} was trained on {rec['base_model']!r} but the chat model is {ws.settings.llm!r}; "
                         f"set ARCHIVIST_LLM={rec['base_model']} (or --llm), or pass --force")
    _set_active(ws, name, actor)
    return get(ws, name)


def deactivate(ws: Workspace, user: str | None = None) -> None:
    """Let the chat use the base model alone by default. Raises AccessDenied unless `user` (None:
    the acting user) has the admin role."""
    _set_active(ws, None, access.require_admin(ws, user, "choose the adapter the chat uses"))


def _set_active(ws: Workspace, name: str | None, actor: str) -> None:
    with transaction(ws.db):
        ws.db.execute("UPDATE adapters SET active = 0 WHERE active = 1")
        # an adapter no longer active no longer says it was switched on by hand: its note goes back to
        # the one it was registered with (the audit log keeps who activated it, and when)
        ws.db.execute("UPDATE adapters SET note = substr(note, instr(note, '; at registration ') + 18) "
                      "WHERE active = 0 AND note LIKE 'activated by % by hand; at registration %'")
        if name is not None:
            # a note that said why it was not activated would contradict it: it keeps the reason
            ws.db.execute("UPDATE adapters SET active = 1, note = CASE WHEN note LIKE 'not activated%' "
                          "THEN 'activated by ' || ? || ' by hand; at registration ' || note ELSE note END "
                          "WHERE name = ?", (actor, name))
        audit.record(ws, "adapter.activated", user=actor, target=name)


# -- deleting --------------------------------------------------------------------------------------


def delete(ws: Workspace, name: str, force: bool = False, user: str | None = None) -> dict:
    """Delete adapter `name` (a bad fine-tune, one trained on a collection that must go): its row, in
    one transaction with its `adapter.delete` audit record, then its folder adapters/<name>/. What it
    learned outlives it: schema 15's trigger keeps the row's lineage in `deleted_adapters`, so the
    answers, feedback, dataset rows and evaluations it wrote stay withheld as while it was registered
    (`answered_from`). `user` (None: the acting user) must have the admin role.

    The active adapter is refused unless `force`; with it the chat falls back to the base model, not
    to the adapter active before: which adapter answers everyone is an admin's choice (`activate`),
    made on its evaluation, never a guess; that switch is recorded as every switch is (`adapter.activated`,
    no target), so an auditor filtering on it finds it. Returns the deleted record (see `get`) with `notes`: what the
    admin must still do, in words (the LLM server, settings.llm_url, could not be asked to unload it;
    its folder could not be removed), empty when nothing. Its weights are unloaded from this process's
    chat model and the LLM server (other processes drop them at their next answer). A name whose row
    an earlier delete removed but whose folder it left (killed in between: `orphans`) has the folder
    removed, as the finish of that delete.

    Raises AccessDenied for a member (before the name is looked up, so it confirms no name),
    LookupError for an unknown adapter, ValueError for the active one without `force` and while a
    queued or running run retrains it (its lineage would name an adapter that is gone).
    """
    actor = access.require_admin(ws, user, "delete an adapter")
    jobs.reconcile(ws)  # a retrain whose process died is no longer under way
    with transaction(ws.db):
        if ws.home / "adapters" / name in orphans(ws.home, ws.db):
            # its row went in a delete killed before it removed this folder: this call finishes that delete
            return {"name": name, "active": False, "notes": _not_removed(name, remove_orphans(ws))}
        rec = get(ws, name)
        if rec["active"] and not force:
            raise ValueError(f"adapter {name!r} is the active adapter: everyone's chat uses it. Choose another first "
                             f"(`archivist activate NAME`, or `none` for the base model), or delete it with force (--force, "
                             f"?force=true; the app asks) and the chat uses the base model")
        for job in jobs.every(ws, ("train",), states=jobs.LIVE):
            if (job.spec or {}).get("replaces") == name:
                raise ValueError(f"adapter {name!r} is being retrained by run {job.id} ({job.state}, as {job.owner}); "
                                 f"wait for it to finish, or cancel it (`archivist runs --cancel {job.id}`), then delete it")
        gone = _adapter(ws, name)  # what a process or an LLM server loaded it as, to unload
        ws.db.execute("DELETE FROM adapters WHERE name = ?", (name,))
        audit.record(ws, "adapter.delete", user=actor, target=name,
                     detail={"was_active": rec["active"], "run_id": rec["run_id"], "base": rec["base_model"]})
        if rec["active"]:  # the chat switched to the base model: on the log as every switch is (`_set_active`)
            audit.record(ws, "adapter.activated", user=actor, target=None, detail={"deleted": name})
    # its weights let go of before its folder goes: this process's chat model unloads it now (another
    # process's does at its next answer, seeing the folder gone: retrieval/llm.py), and the LLM server
    # is asked to; one that cannot be reached is the admin's to unload, and the note says how
    from archivist.retrieval.llm import release

    release(gone)
    unloaded = []
    if ws.settings.llm_url:
        from archivist.retrieval.llm_remote import lora_name, unload_from_server

        why = unload_from_server(ws.settings.llm_url, gone)
        if why:
            unloaded.append(f"the LLM server at {ws.settings.llm_url} may still hold {name!r} loaded: asking it to "
                            f"unload it failed ({why}); restart it, or unload it there (POST /v1/unload_lora_adapter "
                            f"with lora_name {lora_name(gone)!r})")
    # its folder is an orphan now, removed with any an earlier delete killed at this point left: only folders
    # of this workspace (the row's path may name another workspace's copy, see `path`), and not one a
    # registration of the same name has put there since the commit
    rec["notes"] = _not_removed(name, remove_orphans(ws)) + unloaded
    return rec


def _not_removed(name: str, left: list[tuple[Path, OSError]]) -> list[str]:
    """`delete`'s notes on the folders `remove_orphans` left (its own, `name`'s, among them)."""
    return [f"{'its folder' if folder.name == name else 'the folder of a deleted adapter'} {folder} could not be removed "
            f"({e}); remove it by hand" for folder, e in left]


def orphans(home: Path, db: sqlite3.Connection | None = None) -> list[Path]:
    """The folders under home/adapters/ that no registered adapter has: the weights of a deleted adapter,
    which still hold what it learned, left by a delete killed between its commit and the folder's
    removal (or whose removal failed). A registration's folder in the making (hidden, `files.building`)
    is not one. `db`: the workspace's connection; None opens archivist.db read-only (`archivist doctor`
    must not migrate it), and an unreadable one gives [] (the doctor names it with the schema)."""
    root = home / "adapters"
    if not root.is_dir():
        return []
    try:
        conn = db if db is not None else sqlite3.connect(f"{(home / 'archivist.db').resolve().as_uri()}?mode=ro", uri=True)
        try:
            held = {r[0] for r in conn.execute("SELECT name FROM adapters")}
        finally:
            if db is None:
                conn.close()
    except sqlite3.Error:
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in held)


def remove_orphans(ws: Workspace) -> list[tuple[Path, OSError]]:
    """Remove the `orphans` folders (by `delete` and `register`). Listed and removed under the write lock:
    a registration renames its folder into place and adds its row in one transaction (`_publish`), so
    its folder is never taken for an orphan between the two. Returns those that could not be removed (a
    link to weights on another disk), with why: left, for the caller to tell and `archivist doctor` to name."""
    left = []
    with transaction(ws.db):
        for folder in orphans(ws.home, ws.db):
            try:
                shutil.rmtree(folder)
            except OSError as e:
                left.append((folder, e))
    return left


# -- what an answer uses ---------------------------------------------------------------------------


def resolve(ws: Workspace, user: str | None, requested: str | None) -> Adapter | None:
    """The adapter `user`'s answer will be generated with, or None for the base model.

    requested: "active" (the workspace's active adapter; the base model when there is none or the
    user may not use it), None (the base model) or an adapter's name.
    Raises LookupError, with the same text, for an adapter that does not exist and for one the user
    may not use; StaleAdapter for a stale one while the stale_adapters setting is 'block' (the
    active one then gives way to the base model); AccessDenied for an unknown user.
    """
    if requested is None:
        return None
    if requested == "active":
        name = active(ws, user)
        return _adapter(ws, name) if name else None
    if not may_use(ws, user, requested):
        raise _missing(requested)
    if _blocked(ws, requested):
        raise StaleAdapter(f"adapter {requested!r} is stale ({_stale(ws, requested)}) and stale adapters are blocked "
                           f"(stale_adapters=block); retrain it with `archivist finetune --retrain {requested}`")
    return _adapter(ws, requested)


def _adapter(ws: Workspace, name: str) -> Adapter:
    """The registered adapter `name` to generate with (see `Adapter`). Raises LookupError when there is none."""
    folder = str(path(ws, name))
    return Adapter(name, folder, ws.db.execute("SELECT created_at FROM adapters WHERE name = ?", (name,)).fetchone()[0])


# -- stale adapters: trained on a document erased since ---------------------------------------------


class StaleAdapter(ValueError):
    """The adapter learned from a document that was erased, and the workspace blocks such adapters."""


def _stale(ws: Workspace, name: str) -> str | None:
    row = ws.db.execute("SELECT stale FROM adapters WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None


def _blocked(ws: Workspace, name: str) -> bool:
    return ws.settings.stale_adapters == "block" and bool(_stale(ws, name))


def learned_from(ws: Workspace, document_id: int) -> list[str]:
    """The adapters whose lineage lists document `document_id` among the documents they learned, by name."""
    out = []
    for name, lineage in ws.db.execute("SELECT name, lineage FROM adapters ORDER BY name").fetchall():
        try:
            docs = (json.loads(lineage) or {}).get("documents") or []
        except (ValueError, AttributeError):
            docs = []
        if any(isinstance(d, dict) and d.get("id") == document_id for d in docs):
            out.append(name)
    return out


def mark_stale(ws: Workspace, names: list[str], why: str) -> None:
    """Mark adapters stale (`why` is shown with them), in the caller's transaction. A stale adapter
    keeps answering unless the stale_adapters setting is 'block'; retraining registers a fresh one."""
    for name in names:
        ws.db.execute("UPDATE adapters SET stale = ? WHERE name = ?", (why, name))


def scrub_metrics(ws: Workspace, name: str, erased) -> int:
    """Drop from adapters/<name>/metrics.json the evaluation examples `erased(text) -> bool` says
    came from an erased document; returns how many were dropped. (The weights keep what they
    learned until the adapter is retrained.)"""
    f = path(ws, name) / "metrics.json"
    if not f.exists():
        return 0
    metrics = json.loads(f.read_text())
    examples = metrics.get("examples") or []
    keep = [e for e in examples if not any(erased(v) for v in e.values() if isinstance(v, str))]
    if len(keep) != len(examples):
        metrics["examples"] = keep
        files.replace(f, json.dumps(metrics, indent=2, ensure_ascii=False, default=str))  # never a torn metrics.json
    return len(examples) - len(keep)
